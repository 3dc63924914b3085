package h1server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"trellis.dev/trellis/internal/testutil"
)

// safety bounds every wait of these tests: reached, it fails a test that
// would otherwise hang; no test relies on it passing.
const safety = 10 * time.Second

// testServer is a Server on a loopback listener, closed when the test ends.
// Its handler marks answers "X-Served-By: h1server", its Fallback's
// "X-Served-By: fallback", so that tests tell who served a request.
type testServer struct {
	*Server
	addr     string
	done     chan struct{} // closed when Serve returned
	serveErr error
}

type serverOption func(*Server)

func startServer(t *testing.T, h http.Handler, opts ...serverOption) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startServerOn(t, ln, h, opts...)
}

func startServerOn(t *testing.T, ln net.Listener, h http.Handler, opts ...serverOption) *testServer {
	t.Helper()
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	s := &Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Served-By", "h1server")
			h.ServeHTTP(w, r)
		}),
		Fallback: &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("X-Served-By", "fallback")
				h.ServeHTTP(w, r)
			}),
			Protocols: &protos,
			ErrorLog:  log.New(io.Discard, "", 0),
		},
		Log: slog.New(slog.DiscardHandler),
	}
	for _, o := range opts {
		o(s)
	}
	ts := &testServer{Server: s, addr: ln.Addr().String(), done: make(chan struct{})}
	go func() {
		ts.serveErr = s.Serve(ln)
		close(ts.done)
	}()
	t.Cleanup(func() {
		s.Close()
		if err := ts.wait(t); !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return ts
}

// wait returns what Serve returned.
func (ts *testServer) wait(t testing.TB) error {
	t.Helper()
	select {
	case <-ts.done:
		return ts.serveErr
	case <-time.After(safety):
		t.Fatal("Serve did not return")
		return nil
	}
}

// rawClient speaks HTTP/1.1 over one connection byte by byte, so that tests
// see the framing exactly as it is on the wire.
type rawClient struct {
	t  testing.TB
	nc net.Conn
	br *bufio.Reader
}

func dial(t testing.TB, addr string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(safety))
	t.Cleanup(func() { nc.Close() })
	return &rawClient{t: t, nc: nc, br: bufio.NewReaderSize(nc, 64<<10)}
}

func (c *rawClient) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// reply is a response as read by a client, its body read whole.
type reply struct {
	*http.Response
	head string // the status line and header fields as sent
	body string
}

// read reads one response (a 1xx one included) to a request of method.
func (c *rawClient) read(method string) reply {
	c.t.Helper()
	r, err := c.tryRead(method)
	if err != nil {
		c.t.Fatalf("reading a response: %v", err)
	}
	return r
}

func (c *rawClient) tryRead(method string) (reply, error) {
	head, err := c.peekHead()
	if err != nil {
		return reply{}, err
	}
	res, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		return reply{}, err
	}
	body, err := io.ReadAll(res.Body)
	if err != nil {
		return reply{}, fmt.Errorf("body: %w", err)
	}
	return reply{Response: res, head: head, body: string(body)}, nil
}

// peekHead returns the next response head without consuming it.
func (c *rawClient) peekHead() (string, error) {
	for {
		n := c.br.Buffered()
		buf, _ := c.br.Peek(n)
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			return string(buf[:i+4]), nil
		}
		if _, err := c.br.Peek(n + 1); err != nil {
			return "", err
		}
	}
}

// expectClosed checks that the server closed the connection without
// sending anything more.
func (c *rawClient) expectClosed() {
	c.t.Helper()
	b, err := c.br.ReadByte()
	if err == nil {
		rest, _ := c.br.Peek(c.br.Buffered())
		c.t.Fatalf("connection open, read %q", append([]byte{b}, rest...))
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		c.t.Fatal("connection still open")
	}
}

// hasField reports whether the raw head holds the line "name: value".
func (r reply) hasField(name, value string) bool {
	return strings.Contains(r.head, "\r\n"+name+": "+value+"\r\n")
}

func (r reply) servedBy() string { return r.Header.Get("X-Served-By") }

// get is a request for path with nothing but a Host field.
func get(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: svc\r\n\r\n" }

func post(path, body string) string {
	return "POST " + path + " HTTP/1.1\r\nHost: svc\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
}

// echo answers with the method, target and body it received.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if r.Method == http.MethodConnect {
		http.Error(w, "no tunnels here", http.StatusForbidden)
		return
	}
	w.Header().Set("X-Remote", r.RemoteAddr)
	w.Header().Set("X-Host", r.Host)
	fmt.Fprintf(w, "%s %s %s", r.Method, r.RequestURI, body)
})

func TestKeepAlive(t *testing.T) {
	ts := startServer(t, echo)
	c := dial(t, ts.addr)
	for i := range 200 {
		path := "/req/" + strconv.Itoa(i)
		c.send(get(path))
		r := c.read("GET")
		if r.StatusCode != 200 || r.body != "GET "+path+" " || r.servedBy() != "h1server" {
			t.Fatalf("request %d: %d %q by %q", i, r.StatusCode, r.body, r.servedBy())
		}
		if r.Close || r.Header.Get("X-Remote") != c.nc.LocalAddr().String() || r.Header.Get("X-Host") != "svc" {
			t.Fatalf("request %d: close %v remote %q host %q", i, r.Close, r.Header.Get("X-Remote"), r.Header.Get("X-Host"))
		}
	}
}

func TestPipelining(t *testing.T) {
	ts := startServer(t, echo)
	c := dial(t, ts.addr)
	var all strings.Builder
	var want []string
	for i := range 30 {
		switch i % 3 {
		case 0:
			all.WriteString(get("/g" + strconv.Itoa(i)))
			want = append(want, "GET /g"+strconv.Itoa(i)+" ")
		case 1:
			all.WriteString(post("/p"+strconv.Itoa(i), strings.Repeat("b", i*100)))
			want = append(want, "POST /p"+strconv.Itoa(i)+" "+strings.Repeat("b", i*100))
		case 2:
			all.WriteString("HEAD /h" + strconv.Itoa(i) + " HTTP/1.1\r\nHost: svc\r\n\r\n")
			want = append(want, "")
		}
	}
	c.send(all.String()) // one write
	for i, w := range want {
		method := "GET"
		if i%3 == 2 {
			method = "HEAD"
		}
		r := c.read(method)
		if r.StatusCode != 200 || r.body != w || r.servedBy() != "h1server" {
			t.Fatalf("answer %d: %d %q by %q, want %q", i, r.StatusCode, r.body, r.servedBy(), w)
		}
	}
}

func TestRequestBody(t *testing.T) {
	ts := startServer(t, echo)
	c := dial(t, ts.addr)
	for _, n := range []int{1, 100, readBufferSize - 1, readBufferSize + 1, 3 * readBufferSize, maxBody} {
		body := strings.Repeat(string(rune('a'+n%26)), n)
		req := post("/n", body)
		head := len(req) - n
		// The head first, the body in two more writes: the handler waits.
		c.send(req[:head])
		c.send(req[head : head+n/2])
		c.send(req[head+n/2:])
		r := c.read("POST")
		if r.body != "POST /n "+body || r.servedBy() != "h1server" {
			t.Fatalf("%d bytes: %d %.40q by %s", n, r.StatusCode, r.body, r.servedBy())
		}
	}
	// The connection is still in sync.
	c.send(get("/after"))
	if r := c.read("GET"); r.body != "GET /after " {
		t.Fatalf("after the bodies: %q", r.body)
	}
}

func TestRequestBodyUnread(t *testing.T) {
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/half":
			buf := make([]byte, r.ContentLength/2)
			io.ReadFull(r.Body, buf)
		case "/none":
		default:
			io.Copy(io.Discard, r.Body)
		}
		io.WriteString(w, r.URL.Path)
	}))
	c := dial(t, ts.addr)
	// Pipelined: the next request right behind the unread bodies.
	c.send(post("/none", strings.Repeat("x", 20000)) + get("/next") + post("/half", strings.Repeat("y", maxBody)) + get("/last"))
	for _, want := range []string{"/none", "/next", "/half", "/last"} {
		if r := c.read("GET"); r.body != want {
			t.Fatalf("got %q, want %q", r.body, want)
		}
	}
	// Unread, and the rest of the body not sent yet.
	req := post("/none", strings.Repeat("z", 1000))
	c.send(req[:len(req)-500])
	c.send(req[len(req)-500:] + get("/end"))
	for _, want := range []string{"/none", "/end"} {
		if r := c.read("GET"); r.body != want {
			t.Fatalf("got %q, want %q", r.body, want)
		}
	}
}

func TestConnectionClose(t *testing.T) {
	ts := startServer(t, echo)
	c := dial(t, ts.addr)
	c.send(get("/first"))
	c.read("GET")
	// A request after the one asking to close is not answered.
	c.send("GET /bye HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n" + get("/ignored"))
	r := c.read("GET")
	if r.body != "GET /bye " || !r.Close || !r.hasField("Connection", "close") {
		t.Fatalf("%q close %v head %q", r.body, r.Close, r.head)
	}
	c.expectClosed()
}

func TestIdleTimeout(t *testing.T) {
	ts := startServer(t, echo, func(s *Server) { s.IdleTimeout = 50 * time.Millisecond })
	c := dial(t, ts.addr)
	c.send(get("/"))
	c.read("GET")
	c.expectClosed() // within the safety deadline, long after 50ms
	// A head that started and stalls is cut too.
	c = dial(t, ts.addr)
	c.send("GET / HTTP/1.1\r\nHost")
	c.expectClosed()
}

func TestHandOff(t *testing.T) {
	bigHeader := strings.Repeat("h", readBufferSize+100)
	bigBody := strings.Repeat("0123456789", 4000) // 40,000 bytes
	tests := []struct {
		name   string
		req    string
		method string
		status int
		body   string
		closed bool // the fallback closes the connection after
	}{
		{name: "HTTP/1.0", req: "GET /ten HTTP/1.0\r\nHost: svc\r\n\r\n",
			status: 200, body: "GET /ten ", closed: true},
		{name: "HTTP/1.0 without Host", req: "GET /ten HTTP/1.0\r\n\r\n",
			status: 200, body: "GET /ten ", closed: true},
		{name: "chunked body", req: "POST /chunked HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
			status: 200, body: "POST /chunked hello world"},
		{name: "body over 32 KiB", req: post("/big", bigBody),
			status: 200, body: "POST /big " + bigBody},
		{name: "head over 8 KiB", req: "GET /bighead HTTP/1.1\r\nHost: svc\r\nX-Big: " + bigHeader + "\r\n\r\n",
			status: 200, body: "GET /bighead "},
		// A refused CONNECT or Upgrade closes: the framer (framing.go)
		// stopped following the connection.
		{name: "CONNECT", req: "CONNECT svc:443 HTTP/1.1\r\nHost: svc:443\r\n\r\n",
			method: "CONNECT", status: 403, body: "no tunnels here\n", closed: true},
		{name: "Upgrade", req: "GET /ws HTTP/1.1\r\nHost: svc\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
			status: 200, body: "GET /ws ", closed: true},
		{name: "absolute form with an IDN host", req: "GET http://b\xc3\xbccher/x HTTP/1.1\r\nHost: svc\r\n\r\n",
			status: 200, body: "GET http://b\xc3\xbccher/x "},
		{name: "bare LF line ends", req: "GET /lf HTTP/1.1\nHost: svc\n\n",
			status: 200, body: "GET /lf "},
		{name: "bare LF ending the head only", req: "GET /lf2 HTTP/1.1\r\nHost: svc\r\n\n",
			status: 200, body: "GET /lf2 "},
		// What is malformed: refused by the framing checks (framing.go), or
		// by net/http, whose plain 400s are replaced by ours.
		{name: "obs-fold", req: "GET /fold HTTP/1.1\r\nHost: svc\r\nX-A: a\r\n b\r\n\r\n",
			status: 400, body: "bad_request: malformed request framing: obs-fold (a field line starting with whitespace)\n", closed: true},
		{name: "malformed field", req: "GET / HTTP/1.1\r\nHost: svc\r\nNo colon here\r\n\r\n",
			status: 400, body: "bad_request: malformed request framing: header field without a colon\n", closed: true},
		{name: "no Host", req: "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n",
			status: 400, body: "bad_request: malformed request: missing required Host header\n", closed: true},
		{name: "two Hosts", req: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
			status: 400, body: "bad_request: malformed request: refused by the HTTP/1.1 parser\n", closed: true},
		{name: "unknown transfer coding", req: "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: gzip\r\n\r\n",
			status: 400, body: "bad_request: malformed request framing: Transfer-Encoding \"gzip\": only chunked is accepted\n", closed: true},
		{name: "malformed request line", req: "GET /index.html\r\nHost: svc\r\n\r\n",
			status: 400, body: "bad_request: malformed request framing: malformed request line\n", closed: true},
		{name: "a request line alone", req: "GET /index.html\r\n",
			status: 400, body: "bad_request: malformed request framing: malformed request line\n", closed: true},
	}
	ts := startServer(t, echo)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, ts.addr)
			c.send(tt.req)
			method := tt.method
			if method == "" {
				method = "GET"
			}
			r := c.read(method)
			if r.StatusCode != tt.status || r.body != tt.body {
				t.Fatalf("%d %.60q, want %d %.60q", r.StatusCode, r.body, tt.status, tt.body)
			}
			if want := "fallback"; tt.status < 400 && r.servedBy() != want || tt.status >= 400 && r.servedBy() == "h1server" {
				t.Fatalf("served by %q", r.servedBy())
			}
			if tt.closed {
				c.expectClosed()
				return
			}
			// net/http goes on serving the connection.
			c.send(get("/then"))
			if r := c.read("GET"); r.body != "GET /then " || r.servedBy() != "fallback" {
				t.Fatalf("next request: %q by %q", r.body, r.servedBy())
			}
		})
	}
}

func TestHandOffExpectContinue(t *testing.T) {
	ts := startServer(t, echo)
	c := dial(t, ts.addr)
	c.send("PUT /e HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	if r := c.read("PUT"); r.StatusCode != 100 {
		t.Fatalf("got %d before the body, want 100", r.StatusCode)
	}
	c.send("hello")
	if r := c.read("PUT"); r.StatusCode != 200 || r.body != "PUT /e hello" || r.servedBy() != "fallback" {
		t.Fatalf("%d %q by %q", r.StatusCode, r.body, r.servedBy())
	}
}

func TestHandOffH2C(t *testing.T) {
	ts := startServer(t, echo)
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: safety}
	for i := range 3 {
		res, err := client.Post("http://"+ts.addr+"/h2/"+strconv.Itoa(i), "text/plain", strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.ProtoMajor != 2 || string(body) != "POST /h2/"+strconv.Itoa(i)+" body" || res.Header.Get("X-Served-By") != "fallback" {
			t.Fatalf("%s %q by %q", res.Proto, body, res.Header.Get("X-Served-By"))
		}
	}
}

// TestHandOffHalfCloses: net/http answers a request whose large body it
// will not read with Connection: close, then half-closes the connection
// (if the conn it was given has CloseWrite, as a *net.TCPConn has) and
// waits before closing it, so that the client reads the answer and a clean
// end instead of a reset. The connections handed off keep that.
func TestHandOffHalfCloses(t *testing.T) {
	conns := make(chan net.Conn, 1)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "not reading that")
	}), func(s *Server) {
		s.Fallback.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
			conns <- c
			return ctx
		}
	})
	c := dial(t, ts.addr)
	const size = 4 << 20 // well over what net/http reads of an unread body (256 KiB)
	c.send("POST /upload HTTP/1.1\r\nHost: svc\r\nContent-Length: " + strconv.Itoa(size) + "\r\n\r\n")
	go c.nc.Write(make([]byte, size)) // fails when the server closes; it need not end
	handed := <-conns
	if _, ok := handed.(interface{ CloseWrite() error }); !ok {
		t.Fatalf("the fallback got a %T without CloseWrite", handed)
	}
	r := c.read("POST")
	if r.body != "not reading that" || !r.Close || r.servedBy() != "fallback" {
		t.Fatalf("%q close %v by %q", r.body, r.Close, r.servedBy())
	}
	if _, err := c.br.ReadByte(); err != io.EOF {
		t.Fatalf("after the answer: %v, want EOF", err)
	}
}

func TestHandOffAfterServed(t *testing.T) {
	ts := startServer(t, echo)
	c := dial(t, ts.addr)
	for i := range 3 {
		c.send(get("/" + strconv.Itoa(i)))
		if r := c.read("GET"); r.servedBy() != "h1server" {
			t.Fatalf("request %d by %q", i, r.servedBy())
		}
	}
	chunked := "POST /c HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
	c.send(chunked)
	if r := c.read("POST"); r.body != "POST /c abc" || r.servedBy() != "fallback" {
		t.Fatalf("%q by %q", r.body, r.servedBy())
	}

	// The same in one write: the answers of the requests served here go
	// out, in order, before the fallback's.
	c = dial(t, ts.addr)
	c.send(get("/a") + post("/b", "xy") + chunked + get("/d") + "GET /e HTTP/1.0\r\n\r\n")
	for _, want := range []struct{ body, by string }{
		{"GET /a ", "h1server"}, {"POST /b xy", "h1server"}, {"POST /c abc", "fallback"},
		{"GET /d ", "fallback"}, {"GET /e ", "fallback"},
	} {
		if r := c.read("GET"); r.body != want.body || r.servedBy() != want.by {
			t.Fatalf("%q by %q, want %q by %q", r.body, r.servedBy(), want.body, want.by)
		}
	}
	c.expectClosed() // after the HTTP/1.0 request
}

// framingHandler answers by path.
var framingHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	switch r.URL.Path {
	case "/length":
		h.Set("Content-Length", "5")
		io.WriteString(w, "hello")
	case "/short":
		io.WriteString(w, "short body")
	case "/empty":
	case "/2048":
		w.Write(bytes.Repeat([]byte("a"), 2048))
	case "/2049":
		w.Write(bytes.Repeat([]byte("b"), 2049))
	case "/long":
		for i := range 100 {
			fmt.Fprintf(w, "%04d:%s\n", i, strings.Repeat("x", 45))
		}
	case "/204":
		h.Set("Content-Length", "0")
		w.WriteHeader(http.StatusNoContent)
	case "/304":
		h.Set("Content-Type", "text/html")
		h.Set("Content-Length", "123")
		h.Set("Etag", `"v1"`)
		w.WriteHeader(http.StatusNotModified)
	case "/trailer":
		h.Set("Trailer", "X-Sum, X-Count")
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		sum := sha256.New()
		for i := range n {
			line := fmt.Sprintf("line %d\n", i)
			io.WriteString(w, line)
			io.WriteString(sum, line)
		}
		h.Set("X-Sum", fmt.Sprintf("%x", sum.Sum(nil)))
		h.Set("X-Count", strconv.Itoa(n))
	case "/trailer-prefix":
		w.Write(bytes.Repeat([]byte("p"), 3000))
		h.Set(http.TrailerPrefix+"X-Late", "late value")
		h.Set(http.TrailerPrefix+"x-lower", "lower")
	case "/early-hints":
		h.Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		h.Set("Link", "</script.js>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		io.WriteString(w, "final")
	case "/date":
		h.Set("Date", "Mon, 02 Jan 2006 15:04:05 GMT")
		io.WriteString(w, "dated")
	case "/crlf":
		h.Set("X-Evil", "a\r\nInjected: yes")
		h.Set("X-Evil-Lf", "b\nInjected-Too: yes")
		h.Set("Trailer", "X-Evil-Trailer")
		w.Write(bytes.Repeat([]byte("c"), 3000))
		h.Set("X-Evil-Trailer", "t\r\nInjected-Trailer: yes")
	case "/bad-names":
		h["Bad Name"] = []string{"x"}
		h["Bad:Name"] = []string{"y"}
		h["X-Good"] = []string{"z"}
	case "/conn-close":
		h.Set("Connection", "close")
		io.WriteString(w, "bye")
	case "/huge-length":
		h.Set("Content-Length", "12345678901")
		w.WriteHeader(200)
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler)
	case "/after-header":
		h.Set("X-Before", "1")
		w.WriteHeader(http.StatusAccepted)
		h.Set("X-After", "1")
		io.WriteString(w, "late header")
		h.Set("X-After-Write", "1")
	default:
		http.NotFound(w, r)
	}
})

func TestResponseFraming(t *testing.T) {
	ts := startServer(t, framingHandler)
	c := dial(t, ts.addr)
	do := func(method, path string) reply {
		t.Helper()
		c.send(method + " " + path + " HTTP/1.1\r\nHost: svc\r\n\r\n")
		r := c.read(method)
		if r.servedBy() != "h1server" {
			t.Fatalf("%s %s served by %q", method, path, r.servedBy())
		}
		if r.Close {
			t.Fatalf("%s %s: Connection: close", method, path)
		}
		return r
	}
	chunked := func(r reply) bool { return slices.Equal(r.TransferEncoding, []string{"chunked"}) }

	t.Run("Content-Length passed", func(t *testing.T) {
		r := do("GET", "/length")
		if !r.hasField("Content-Length", "5") || chunked(r) || r.body != "hello" {
			t.Fatalf("head %q body %q", r.head, r.body)
		}
	})
	t.Run("short body gets a length", func(t *testing.T) {
		for path, n := range map[string]int{"/short": 10, "/empty": 0, "/2048": 2048} {
			r := do("GET", path)
			if !r.hasField("Content-Length", strconv.Itoa(n)) || chunked(r) || len(r.body) != n {
				t.Fatalf("%s: head %q, %d bytes", path, r.head, len(r.body))
			}
		}
	})
	t.Run("long body is chunked", func(t *testing.T) {
		for path, n := range map[string]int{"/2049": 2049, "/long": 5100} {
			r := do("GET", path)
			if !chunked(r) || strings.Contains(r.head, "Content-Length") || len(r.body) != n {
				t.Fatalf("%s: head %q, %d bytes", path, r.head, len(r.body))
			}
		}
		if r := do("GET", "/long"); !strings.HasPrefix(r.body, "0000:") || !strings.HasSuffix(r.body, "0099:"+strings.Repeat("x", 45)+"\n") {
			t.Fatalf("body %q…", r.body[:20])
		}
	})
	t.Run("HEAD", func(t *testing.T) {
		for _, path := range []string{"/length", "/short", "/long", "/empty"} {
			r := do("HEAD", path)
			if r.body != "" || chunked(r) {
				t.Fatalf("HEAD %s: head %q body %q", path, r.head, r.body)
			}
		}
		// The next answer is read right: nothing was sent after the heads.
		if r := do("GET", "/short"); r.body != "short body" {
			t.Fatalf("after HEAD: %q", r.body)
		}
	})
	t.Run("204 and 304", func(t *testing.T) {
		r := do("GET", "/204")
		if r.StatusCode != 204 || r.body != "" || strings.Contains(r.head, "Content-Length") || chunked(r) {
			t.Fatalf("head %q body %q", r.head, r.body)
		}
		r = do("GET", "/304")
		if r.StatusCode != 304 || r.body != "" || chunked(r) || !r.hasField("Etag", `"v1"`) {
			t.Fatalf("head %q body %q", r.head, r.body)
		}
		if r := do("GET", "/short"); r.body != "short body" {
			t.Fatalf("after 204 and 304: %q", r.body)
		}
	})
	t.Run("trailers announced", func(t *testing.T) {
		for _, n := range []int{1, 500} { // a short body and a chunked one
			r := do("GET", "/trailer?n="+strconv.Itoa(n))
			sum := sha256.Sum256([]byte(r.body))
			if !chunked(r) || r.Trailer.Get("X-Sum") != fmt.Sprintf("%x", sum) || r.Trailer.Get("X-Count") != strconv.Itoa(n) {
				t.Fatalf("n=%d: head %q trailer %q", n, r.head, r.Trailer)
			}
		}
	})
	t.Run("trailers by prefix", func(t *testing.T) {
		r := do("GET", "/trailer-prefix")
		if !chunked(r) || len(r.body) != 3000 || r.Trailer.Get("X-Late") != "late value" || r.Trailer.Get("X-Lower") != "lower" {
			t.Fatalf("head %q trailer %q", r.head, r.Trailer)
		}
		if strings.Contains(r.head, http.TrailerPrefix) {
			t.Fatalf("prefixed key in the head: %q", r.head)
		}
	})
	t.Run("1xx before the final answer", func(t *testing.T) {
		c.send(get("/early-hints"))
		for _, link := range []string{"</style.css>; rel=preload", "</script.js>; rel=preload"} {
			r := c.read("GET")
			if r.StatusCode != 103 || r.Header.Get("Link") != link || r.body != "" {
				t.Fatalf("head %q", r.head)
			}
		}
		r := c.read("GET")
		if r.StatusCode != 200 || r.body != "final" || r.Header.Get("Link") != "</script.js>; rel=preload" {
			t.Fatalf("final: head %q body %q", r.head, r.body)
		}
	})
	t.Run("Date", func(t *testing.T) {
		r := do("GET", "/short")
		if d, err := http.ParseTime(r.Header.Get("Date")); err != nil || len(r.Header["Date"]) != 1 {
			t.Fatalf("Date %q: %v", r.Header["Date"], err)
		} else if age := time.Since(d); age < -time.Hour || age > time.Hour {
			t.Fatalf("Date %q is off", r.Header.Get("Date"))
		}
		if r := do("GET", "/date"); !slices.Equal(r.Header["Date"], []string{"Mon, 02 Jan 2006 15:04:05 GMT"}) {
			t.Fatalf("handler's Date replaced: %q", r.Header["Date"])
		}
	})
	t.Run("CR and LF in values", func(t *testing.T) {
		r := do("GET", "/crlf")
		if strings.Contains(r.head, "\r\nInjected") || strings.Contains(r.head, "\nInjected") || r.Header.Get("Injected") != "" {
			t.Fatalf("head split: %q", r.head)
		}
		if r.Header.Get("X-Evil") != "a  Injected: yes" || r.Header.Get("X-Evil-Lf") != "b Injected-Too: yes" {
			t.Fatalf("values %q %q", r.Header.Get("X-Evil"), r.Header.Get("X-Evil-Lf"))
		}
		if r.Trailer.Get("X-Evil-Trailer") != "t  Injected-Trailer: yes" || len(r.Trailer) != 1 {
			t.Fatalf("trailer %q", r.Trailer)
		}
	})
	t.Run("invalid names left out", func(t *testing.T) {
		r := do("GET", "/bad-names")
		if strings.Contains(r.head, "Bad") || r.Header.Get("X-Good") != "z" {
			t.Fatalf("head %q", r.head)
		}
	})
	t.Run("header changed after WriteHeader", func(t *testing.T) {
		r := do("GET", "/after-header")
		if r.StatusCode != 202 || r.Header.Get("X-Before") != "1" || r.body != "late header" {
			t.Fatalf("head %q body %q", r.head, r.body)
		}
		if r.Header.Get("X-After") != "" || r.Header.Get("X-After-Write") != "" {
			t.Fatalf("fields set after WriteHeader were sent: %q", r.head)
		}
	})
	t.Run("handler asks to close", func(t *testing.T) {
		c := dial(t, ts.addr)
		c.send(get("/conn-close"))
		r := c.read("GET")
		if r.body != "bye" || !r.Close || !r.hasField("Connection", "close") {
			t.Fatalf("head %q", r.head)
		}
		c.expectClosed()
	})
	t.Run("Content-Length over 10 digits", func(t *testing.T) {
		c := dial(t, ts.addr)
		c.send(get("/huge-length"))
		head, err := c.peekHead()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(head, "\r\nContent-Length: 12345678901\r\n") || strings.Contains(head, "chunked") {
			t.Fatalf("head %q", head)
		}
	})
}

func TestFlushStreams(t *testing.T) {
	proceed := make(chan struct{})
	handlerErr := make(chan error, 1)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first")
		if err := http.NewResponseController(w).Flush(); err != nil {
			handlerErr <- err
			return
		}
		select {
		case <-proceed:
		case <-time.After(safety):
		}
		io.WriteString(w, " second")
		handlerErr <- nil
	}))
	c := dial(t, ts.addr)
	c.send(get("/stream"))
	res, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The head and the first part come while the handler still waits.
	first := make([]byte, 5)
	if _, err := io.ReadFull(res.Body, first); err != nil || string(first) != "first" {
		t.Fatalf("%q %v", first, err)
	}
	if !slices.Equal(res.TransferEncoding, []string{"chunked"}) {
		t.Fatalf("framing %q", res.TransferEncoding)
	}
	close(proceed)
	rest, err := io.ReadAll(res.Body)
	if err != nil || string(rest) != " second" {
		t.Fatalf("%q %v", rest, err)
	}
	if err := <-handlerErr; err != nil {
		t.Fatal(err)
	}
	c.send(get("/again")) // proceed is closed: the handler does not wait
	if r := c.read("GET"); r.body != "first second" {
		t.Fatalf("next answer %q", r.body)
	}
	<-handlerErr
}

func TestHandlerAbort(t *testing.T) {
	var logged atomic.Int32
	logHandler := slog.NewTextHandler(io.Discard, nil)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/abort":
			io.WriteString(w, "partial")
			panic(http.ErrAbortHandler)
		case "/abort-streaming":
			w.Header().Set("Content-Length", "100")
			io.WriteString(w, "partial")
			http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler)
		case "/panic":
			panic("boom")
		}
		io.WriteString(w, "ok "+r.URL.Path)
	}), func(s *Server) { s.Log = slog.New(countingHandler{logHandler, &logged}) })

	c := dial(t, ts.addr)
	c.send(get("/fine"))
	c.read("GET")
	c.send(get("/abort"))
	c.expectClosed()

	c = dial(t, ts.addr)
	c.send(get("/abort-streaming"))
	if _, err := c.tryRead("GET"); err == nil {
		t.Fatal("a whole answer read from an aborted handler")
	}

	// Answers to the requests before, pipelined, are not lost.
	c = dial(t, ts.addr)
	c.send(get("/one") + get("/two") + get("/abort") + get("/never"))
	for _, want := range []string{"ok /one", "ok /two"} {
		if r := c.read("GET"); r.body != want {
			t.Fatalf("%q, want %q", r.body, want)
		}
	}
	c.expectClosed()

	if n := logged.Load(); n != 0 {
		t.Fatalf("ErrAbortHandler logged %d times", n)
	}
	c = dial(t, ts.addr)
	c.send(get("/panic"))
	c.expectClosed()
	if n := logged.Load(); n != 1 {
		t.Fatalf("a panic logged %d times, want 1", n)
	}
}

type countingHandler struct {
	slog.Handler
	n *atomic.Int32
}

func (h countingHandler) Handle(ctx context.Context, r slog.Record) error {
	h.n.Add(1)
	return h.Handler.Handle(ctx, r)
}

func TestResponseWriterErrors(t *testing.T) {
	errs := make(chan error, 1)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/too-long":
			w.Header().Set("Content-Length", "3")
			_, err := io.WriteString(w, "four")
			errs <- err
		case "/too-short":
			w.Header().Set("Content-Length", "10")
			io.WriteString(w, "short")
		case "/no-body":
			w.WriteHeader(http.StatusNoContent)
			_, err := io.WriteString(w, "body")
			errs <- err
		case "/head":
			_, err := io.WriteString(w, "for HEAD")
			errs <- err
		}
	}))
	c := dial(t, ts.addr)
	c.send(get("/no-body"))
	if err := <-errs; !errors.Is(err, http.ErrBodyNotAllowed) {
		t.Fatalf("Write after 204: %v", err)
	}
	c.read("GET")
	c.send("HEAD /head HTTP/1.1\r\nHost: svc\r\n\r\n")
	if err := <-errs; err != nil {
		t.Fatalf("Write for a HEAD request: %v (net/http accepts and drops it)", err)
	}
	if r := c.read("HEAD"); !r.hasField("Content-Length", "8") {
		t.Fatalf("HEAD answer %q", r.head)
	}
	c.send(get("/too-long"))
	if err := <-errs; !errors.Is(err, http.ErrContentLength) {
		t.Fatalf("Write past Content-Length: %v", err)
	}
	// The client waits for 3 bytes that never come: only closing ends it.
	if _, err := c.tryRead("GET"); err == nil {
		t.Fatal("answer complete")
	}

	c = dial(t, ts.addr)
	c.send(get("/too-short"))
	if _, err := c.tryRead("GET"); err == nil {
		t.Fatal("answer complete")
	}
}

func TestClientGone(t *testing.T) {
	type watcher interface{ ClientGone() bool }
	seen := make(chan bool, 2)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw, ok := w.(watcher)
		if !ok {
			seen <- true
			return
		}
		if r.URL.Path == "/past-deadline" {
			// The connection's read deadline (the idle timeout) passed
			// while the handler ran, as it does for a long poll.
			w.(*response).c.rwc.SetReadDeadline(aLongTimeAgo)
			seen <- cw.ClientGone()
			return
		}
		seen <- cw.ClientGone()
		deadline := time.Now().Add(safety)
		for !cw.ClientGone() && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		seen <- cw.ClientGone()
	}))
	c := dial(t, ts.addr)
	c.send(get("/past-deadline"))
	if <-seen {
		t.Fatal("client reported gone after the read deadline passed")
	}
	c.read("GET")

	c = dial(t, ts.addr)
	c.send(get("/watch"))
	if <-seen {
		t.Fatal("client reported gone while connected")
	}
	c.nc.Close()
	if !<-seen {
		t.Fatal("client not reported gone after it closed")
	}
}

func TestShutdown(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "done "+r.URL.Path)
	}))
	idle := dial(t, ts.addr)
	idle.send(get("/quick"))
	idle.read("GET")
	busy := dial(t, ts.addr)
	busy.send(get("/slow"))
	<-entered
	handed := dial(t, ts.addr) // an idle connection of the fallback server
	handed.send("GET /x HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
	handed.read("GET")

	shutdown := make(chan error, 1)
	ctx, cancel := context.WithTimeout(context.Background(), safety)
	defer cancel()
	go func() { shutdown <- ts.Shutdown(ctx) }()

	idle.expectClosed()
	handed.expectClosed()
	testutil.Eventually(t, safety, "no new connections", func() bool {
		c, err := net.Dial("tcp", ts.addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	select {
	case err := <-shutdown:
		t.Fatalf("Shutdown returned %v with a request in flight", err)
	default:
	}
	close(release)
	r := busy.read("GET")
	if r.body != "done /slow" || !r.Close || !r.hasField("Connection", "close") {
		t.Fatalf("in-flight answer: head %q body %q", r.head, r.body)
	}
	busy.expectClosed()
	if err := <-shutdown; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := ts.wait(t); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := ts.Serve(ln); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
	if _, err := ln.Accept(); err == nil {
		t.Fatal("Serve after Shutdown left its listener open")
	}
}

func TestShutdownContextEnds(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	}))
	defer close(release)
	c := dial(t, ts.addr)
	c.send(get("/slow"))
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := ts.Shutdown(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	c.expectClosed()
}

func TestClose(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "ok")
	}))
	defer close(release)
	idle := dial(t, ts.addr)
	idle.send(get("/"))
	idle.read("GET")
	busy := dial(t, ts.addr)
	busy.send(get("/slow"))
	<-entered
	handed := dial(t, ts.addr)
	handed.send("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
	if r := handed.read("GET"); r.servedBy() != "fallback" || r.Close {
		t.Fatalf("by %q close %v", r.servedBy(), r.Close)
	}
	partial := dial(t, ts.addr)
	partial.send("GET / HTTP/1.1\r\n")

	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*rawClient{idle, busy, handed, partial} {
		c.expectClosed()
	}
	if err := ts.wait(t); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
}

// flakyListener fails its first Accept as accept(2) does when the process
// is out of file descriptors.
type flakyListener struct {
	net.Listener
	calls   atomic.Int32
	retried chan struct{}
}

func (l *flakyListener) Accept() (net.Conn, error) {
	switch l.calls.Add(1) {
	case 1:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept", syscall.EMFILE)}
	case 2:
		close(l.retried)
	}
	return l.Listener.Accept()
}

func TestServeRetriesTemporaryAcceptErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &flakyListener{Listener: ln, retried: make(chan struct{})}
	ts := startServerOn(t, fl, echo)
	select {
	case <-ts.done:
		t.Fatalf("Serve returned %v on EMFILE", ts.serveErr)
	case <-fl.retried:
	case <-time.After(safety):
		t.Fatal("Accept not called again")
	}
	c := dial(t, ts.addr)
	c.send(get("/after-emfile"))
	if r := c.read("GET"); r.body != "GET /after-emfile " {
		t.Fatalf("%q", r.body)
	}
}

func TestServeClosesListenerOnError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fail := errors.New("listener broke")
	s := &Server{Handler: echo, Fallback: &http.Server{}}
	defer s.Close()
	if err := s.Serve(failingListener{ln, fail}); !errors.Is(err, fail) {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		t.Fatal("listener left open")
	}
}

type failingListener struct {
	net.Listener
	err error
}

func (l failingListener) Accept() (net.Conn, error) { return nil, l.err }

// TestLikeNetHTTP serves the same handler with net/http and with h1server
// and compares what a client reads: status, body, header fields (Date
// aside, and Content-Type, which net/http sniffs and h1server does not),
// trailers and framing.
func TestLikeNetHTTP(t *testing.T) {
	plain := &http.Server{Handler: framingHandler, ErrorLog: log.New(io.Discard, "", 0)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go plain.Serve(ln)
	t.Cleanup(func() { plain.Close() })

	h1ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h1 := &Server{Handler: framingHandler, Fallback: &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			http.Error(w, "handed off", http.StatusTeapot)
		}),
		ErrorLog: log.New(io.Discard, "", 0),
	}}
	go h1.Serve(h1ln)
	t.Cleanup(func() { h1.Close() })

	requests := []string{
		get("/length"), get("/short"), get("/empty"), get("/2048"), get("/2049"), get("/long"),
		get("/204"), get("/304"), get("/trailer?n=1"), get("/trailer?n=500"), get("/trailer-prefix"),
		get("/early-hints"), get("/date"), get("/crlf"), get("/bad-names"), get("/conn-close"),
		get("/after-header"), get("/nowhere"),
		"HEAD /length HTTP/1.1\r\nHost: svc\r\n\r\n", "HEAD /short HTTP/1.1\r\nHost: svc\r\n\r\n",
		"HEAD /2048 HTTP/1.1\r\nHost: svc\r\n\r\n", "HEAD /long HTTP/1.1\r\nHost: svc\r\n\r\n",
		"HEAD /empty HTTP/1.1\r\nHost: svc\r\n\r\n", "HEAD /trailer?n=1 HTTP/1.1\r\nHost: svc\r\n\r\n",
		"HEAD /304 HTTP/1.1\r\nHost: svc\r\n\r\n",
		"GET /short HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n",
		post("/length", "ignored body"), post("/long", strings.Repeat("b", 10000)),
	}
	for _, req := range requests {
		method, _, _ := strings.Cut(req, " ")
		want := exchange(t, ln.Addr().String(), req, method)
		got := exchange(t, h1ln.Addr().String(), req, method)
		if len(got) != len(want) {
			t.Errorf("%.40q: %d answers, net/http %d", req, len(got), len(want))
			continue
		}
		for i := range got {
			g, w := got[i], want[i]
			if _, ok := g.Header["Content-Type"]; !ok {
				delete(w.Header, "Content-Type")
			}
			delete(g.Header, "Date")
			delete(w.Header, "Date")
			if g.StatusCode != w.StatusCode || g.body != w.body || !reflect.DeepEqual(g.Header, w.Header) ||
				!reflect.DeepEqual(g.Trailer, w.Trailer) || g.ContentLength != w.ContentLength ||
				!slices.Equal(g.TransferEncoding, w.TransferEncoding) || g.Close != w.Close {
				t.Errorf("%.40q answer %d:\nh1server %d %q %q trailer %q length %d %q close %v\nnet/http %d %q %q trailer %q length %d %q close %v",
					req, i, g.StatusCode, g.Header, trim(g.body), g.Trailer, g.ContentLength, g.TransferEncoding, g.Close,
					w.StatusCode, w.Header, trim(w.body), w.Trailer, w.ContentLength, w.TransferEncoding, w.Close)
			}
		}
	}
}

// exchange sends req on a new connection and reads the answers to it, 1xx
// included.
func exchange(t *testing.T, addr, req, method string) []reply {
	t.Helper()
	c := dial(t, addr)
	c.send(req)
	var rs []reply
	for {
		r := c.read(method)
		rs = append(rs, r)
		if r.StatusCode >= 200 {
			return rs
		}
	}
}

func trim(s string) string {
	if len(s) > 30 {
		return s[:30] + "…"
	}
	return s
}

// TestConcurrentConnections runs many clients at once (for the race
// detector: pooled buffers, the connection set).
func TestConcurrentConnections(t *testing.T) {
	ts := startServer(t, echo)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Go(func() {
			nc, err := net.Dial("tcp", ts.addr)
			if err != nil {
				errs <- err
				return
			}
			defer nc.Close()
			nc.SetDeadline(time.Now().Add(safety))
			br := bufio.NewReader(nc)
			for j := range 20 {
				path := fmt.Sprintf("/%d/%d", i, j)
				req := get(path)
				if j%4 == 3 {
					req = "POST " + path + " HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
				}
				if _, err := io.WriteString(nc, req); err != nil {
					errs <- err
					return
				}
				res, err := http.ReadResponse(br, nil)
				if err != nil {
					errs <- err
					return
				}
				body, _ := io.ReadAll(res.Body)
				if !strings.HasSuffix(strings.TrimSpace(string(body)), path) {
					errs <- fmt.Errorf("%s: %q", path, body)
					return
				}
				if j%4 == 3 { // handed off: net/http has the connection now
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A client that stops reading fails the response's writes after
// WriteTimeout: the handler's Write returns an error and the connection
// is closed, instead of the handler blocking for as long as the client
// holds the connection.
func TestWriteTimeout(t *testing.T) {
	failed := make(chan error, 1)
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 64<<10)
		for range 1 << 14 { // 1 GiB, far more than the socket buffers hold
			if _, err := w.Write(chunk); err != nil {
				failed <- err
				return
			}
		}
		failed <- nil
	}), func(s *Server) { s.WriteTimeout = 100 * time.Millisecond })
	c := dial(t, ts.addr)
	c.send(get("/big")) // and never read the answer
	select {
	case err := <-failed:
		if err == nil {
			t.Fatal("1 GiB written to a client that reads nothing")
		}
	case <-time.After(10 * time.Second): // bounds a failing test; not a measure
		t.Fatal("the handler is still writing to a client that reads nothing")
	}
}
