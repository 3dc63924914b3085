package forward

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"trellis.dev/trellis/internal/testutil"
)

func TestFastPathEligibility(t *testing.T) {
	req := func(method, body string, mod func(r *http.Request)) *http.Request {
		r, _ := http.NewRequest(method, "http://reviews/x", strings.NewReader(body))
		r.ContentLength = int64(len(body))
		r.Host = "reviews:9080"
		if mod != nil {
			mod(r)
		}
		return r
	}
	tests := []struct {
		name string
		r    *http.Request
		want bool
	}{
		{"GET", req("GET", "", nil), true},
		{"small POST", req("POST", "hello", nil), true},
		{"body of 32 KiB", req("PUT", strings.Repeat("x", maxFastBody), nil), true},
		{"larger body", req("PUT", strings.Repeat("x", maxFastBody+1), nil), false},
		{"chunked body", req("POST", "x", func(r *http.Request) { r.ContentLength = -1 }), false},
		{"h2", req("GET", "", func(r *http.Request) { r.ProtoMajor = 2 }), false},
		{"Expect", req("POST", "x", func(r *http.Request) { r.Header.Set("Expect", "100-continue") }), false},
		{"Upgrade", req("GET", "", func(r *http.Request) { r.Header.Set("Upgrade", "websocket") }), false},
		{"request trailers", req("POST", "x", func(r *http.Request) { r.Trailer = http.Header{"X-T": nil} }), false},
		{"IPv6 literal", req("GET", "", func(r *http.Request) { r.Host = "[::1]:80" }), true},
		{"IPv6 zone", req("GET", "", func(r *http.Request) { r.Host = "[fe80::1%25eth0]:80" }), false},
		{"IDN", req("GET", "", func(r *http.Request) { r.Host = "bücher.example" }), false},
		{"no host", req("GET", "", func(r *http.Request) { r.Host = "" }), false},
	}
	for _, tt := range tests {
		if got := fastPath(tt.r); got != tt.want {
			t.Errorf("%s: fastPath = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// seen is what the instance received.
type seen struct {
	Method, URI, Host, Proto string
	Header                   http.Header
	Body                     string
	ContentLength            int64
	TransferEncoding         []string
	Trailer                  http.Header
}

// mirror is an instance that records each request and answers by path.
type mirror struct {
	mu   sync.Mutex
	last seen
}

func (m *mirror) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h := r.Header.Clone()
	m.mu.Lock()
	m.last = seen{r.Method, r.RequestURI, r.Host, r.Proto, h, string(body), r.ContentLength, r.TransferEncoding, r.Trailer}
	m.mu.Unlock()

	w.Header().Set("X-Resp", "a")
	w.Header().Set("Connection", "X-Resp-Hop")
	w.Header().Set("X-Resp-Hop", "dropped")
	w.Header().Set("Keep-Alive", "timeout=5")
	switch r.URL.Path {
	case "/plain":
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "hello")
	case "/declared-trailer":
		w.Header().Set("Trailer", "X-Sum")
		io.WriteString(w, "part1 ")
		w.(http.Flusher).Flush()
		io.WriteString(w, "part2")
		w.Header().Set("X-Sum", "42")
	case "/undeclared-trailer":
		io.WriteString(w, "body")
		w.(http.Flusher).Flush() // chunked, so that the trailer can be sent
		w.Header().Set(http.TrailerPrefix+"X-Late", "late")
	case "/stream":
		io.WriteString(w, "one ")
		w.(http.Flusher).Flush()
		io.WriteString(w, "two")
	case "/sse":
		w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
		w.Header().Set("Content-Length", "12")
		io.WriteString(w, "data: 1\n\n\n\n\n")
	case "/nocontent":
		w.WriteHeader(http.StatusNoContent)
	case "/notmodified":
		w.Header().Set("Etag", `"x"`)
		w.WriteHeader(http.StatusNotModified)
	case "/early":
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		io.WriteString(w, "after hints")
	case "/close":
		w.Header().Set("Connection", "close")
		io.WriteString(w, "bye")
	case "/echo":
		w.Write(body)
	default:
		http.NotFound(w, r)
	}
}

func (m *mirror) seen() seen {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.last
}

// got is what the client received.
type got struct {
	Status   int
	Header   http.Header
	Body     string
	Trailer  http.Header
	Informal []string // 1xx codes and their Link header
}

func send(t *testing.T, c *http.Client, req *http.Request) got {
	t.Helper()
	var g got
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		g.Informal = append(g.Informal, fmt.Sprint(code, " ", h.Get("Link")))
		return nil
	}}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	g.Status, g.Header, g.Body, g.Trailer = resp.StatusCode, resp.Header, string(b), resp.Trailer
	g.Header.Del("Date")
	return g
}

// The fast path sends and answers exactly what the ReverseProxy path does,
// on the sidecar and on the gateway.
func TestFastPathMatchesReverseProxy(t *testing.T) {
	m := &mirror{}
	backend := serve(t, m)
	type request struct {
		name, method, path, body string
		header                   http.Header
		chunked                  bool
	}
	requests := []request{
		{name: "headers", method: "GET", path: "/plain?a=1&b=2", header: http.Header{
			"X-Keep": {"kept", "twice"}, "Connection": {"X-Hop, keep-alive"}, "X-Hop": {"1"}, "Keep-Alive": {"300"},
			"Proxy-Authorization": {"Basic x"}, "Proxy-Other": {"y"}, "Te": {"trailers, deflate"},
			"X-Forwarded-For": {"192.0.2.1"}, "X-Forwarded-Host": {"outside"}, "Forwarded": {"for=192.0.2.1"},
			"User-Agent": {"test-agent/1"},
		}},
		{name: "unparsable query", method: "GET", path: "/plain?a=1;b=2&c=%zz"},
		{name: "no user agent", method: "GET", path: "/plain", header: http.Header{"User-Agent": {""}}},
		{name: "HEAD", method: "HEAD", path: "/plain"},
		{name: "POST", method: "POST", path: "/echo", body: "payload"},
		{name: "empty POST", method: "POST", path: "/echo"},
		{name: "empty DELETE", method: "DELETE", path: "/echo"},
		{name: "large PUT (ReverseProxy on both)", method: "PUT", path: "/echo", body: strings.Repeat("x", maxFastBody+10)},
		{name: "chunked POST (ReverseProxy on both)", method: "POST", path: "/echo", body: "streamed", chunked: true},
		{name: "declared trailer", method: "GET", path: "/declared-trailer"},
		{name: "undeclared trailer", method: "GET", path: "/undeclared-trailer"},
		{name: "stream", method: "GET", path: "/stream"},
		{name: "event stream", method: "GET", path: "/sse"},
		{name: "204", method: "GET", path: "/nocontent"},
		{name: "304", method: "GET", path: "/notmodified"},
		{name: "103 early hints", method: "GET", path: "/early"},
		{name: "Connection: close", method: "GET", path: "/close"},
		{name: "404", method: "GET", path: "/missing"},
	}
	for _, gateway := range []bool{false, true} {
		headers := http.Header{"X-Trellis-Service": {"reviews"}}
		fast := New(Options{SetXForwarded: gateway, ResponseHeaders: headers})
		slow := New(Options{SetXForwarded: gateway, ResponseHeaders: headers, NoFastPath: true})
		target := &Target{Addr: backend, Service: "reviews"}
		fastAddr, slowAddr := proxyWith(t, fast, target), proxyWith(t, slow, target)
		client := &http.Client{Transport: &http.Transport{}}
		t.Cleanup(client.CloseIdleConnections)
		for _, rq := range requests {
			t.Run(fmt.Sprintf("gateway=%v/%s", gateway, rq.name), func(t *testing.T) {
				do := func(addr string) (got, seen) {
					var body io.Reader = strings.NewReader(rq.body)
					if rq.chunked {
						body = io.MultiReader(body) // unknown length: sent chunked
					}
					req, _ := http.NewRequest(rq.method, "http://"+addr+rq.path, body)
					req.Host = "reviews:9080"
					for k, v := range rq.header {
						req.Header[k] = v
					}
					g := send(t, client, req)
					return g, m.seen()
				}
				for range 2 { // the second time on pooled connections
					gs, ss := do(slowAddr)
					gf, sf := do(fastAddr)
					if !equal(gs, gf) {
						t.Errorf("client got\nReverseProxy %+v\nfast path    %+v", gs, gf)
					}
					if !equal(ss, sf) {
						t.Errorf("instance saw\nReverseProxy %+v\nfast path    %+v", ss, sf)
					}
					if gf.Status >= 500 {
						t.Fatalf("status %d %q", gf.Status, gf.Body)
					}
				}
			})
		}
	}
	// What the ReverseProxy path does, and so the fast path too, spelled
	// out for the headers case, so that the comparison compares something.
	c := &http.Client{}
	req, _ := http.NewRequest("GET", "http://"+proxyWith(t, New(Options{}), &Target{Addr: backend})+"/plain", nil)
	req.Host = "reviews"
	req.Header = http.Header{"Connection": {"X-Hop"}, "X-Hop": {"1"}, "Te": {"trailers"}, "X-Forwarded-For": {"192.0.2.1"}}
	g := send(t, c, req)
	s := m.seen()
	if s.Header.Get("X-Hop") != "" || s.Header.Get("Te") != "trailers" || s.Header.Get("X-Forwarded-For") != "192.0.2.1" {
		t.Errorf("instance saw %v", s.Header)
	}
	if g.Header.Get("X-Resp-Hop") != "" || g.Header.Get("Keep-Alive") != "" || g.Header.Get("X-Resp") != "a" {
		t.Errorf("client got %v", g.Header)
	}
	for path, want := range map[string]string{"/declared-trailer": "42", "/undeclared-trailer": "late"} {
		req, _ := http.NewRequest("GET", "http://"+proxyWith(t, New(Options{}), &Target{Addr: backend})+path, nil)
		g := send(t, c, req)
		if v := g.Trailer.Get("X-Sum") + g.Trailer.Get("X-Late"); v != want {
			t.Errorf("%s: trailers %v, want %s", path, g.Trailer, want)
		}
	}
}

func equal(a, b any) bool { return fmt.Sprintf("%#v", a) == fmt.Sprintf("%#v", b) }

// A response without a length reaches the client as it comes: the first
// part arrives while the instance is still holding back the rest.
func TestFastPathStreams(t *testing.T) {
	release := make(chan struct{})
	backend := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first\n")
		w.(http.Flusher).Flush()
		<-release
		io.WriteString(w, "second\n")
	}))
	addr := proxyWith(t, New(Options{}), &Target{Addr: backend})
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, err := br.ReadString('\n'); line != "first\n" {
		t.Fatalf("first line %q, %v", line, err)
	}
	close(release)
	if line, err := br.ReadString('\n'); line != "second\n" {
		t.Fatalf("second line %q, %v", line, err)
	}
}

// Requests one after the other share one connection, which
// CloseIdleConnections closes.
func TestFastPathReusesConnections(t *testing.T) {
	var opened, closed atomic.Int32
	closedCh := make(chan struct{}, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		ConnState: func(_ net.Conn, s http.ConnState) {
			switch s {
			case http.StateNew:
				opened.Add(1)
			case http.StateClosed:
				closed.Add(1)
				closedCh <- struct{}{}
			}
		}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	f := New(Options{})
	addr := proxyWith(t, f, &Target{Addr: ln.Addr().String()})
	c := &http.Client{Transport: &http.Transport{}}
	for i := range 5 {
		if _, _, body := post(t, c, addr, ""); body != "ok" {
			t.Fatalf("request %d: %q", i, body)
		}
	}
	if n := opened.Load(); n != 1 {
		t.Fatalf("%d connections to the instance, want 1", n)
	}
	f.CloseIdleConnections()
	<-closedCh
	if n := closed.Load(); n != 1 {
		t.Fatalf("%d closed, want 1", n)
	}
}

// rawInstance accepts connections and runs script on each, in order.
func rawInstance(t *testing.T, scripts ...func(c net.Conn, br *bufio.Reader)) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for _, script := range scripts {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				script(c, bufio.NewReader(c))
			}()
		}
	}()
	return ln.Addr().String()
}

func readRequest(t *testing.T, br *bufio.Reader) *http.Request {
	req, err := http.ReadRequest(br)
	if err != nil {
		t.Error(err)
		return nil
	}
	io.Copy(io.Discard, req.Body)
	return req
}

func answer(c net.Conn, body string) {
	fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

// An instance that closes a pooled connection: the next request finds out
// before sending (the probe) or when it gets no answer; either way a GET
// is answered on a new connection.
func TestFastPathInstanceClosedIdleConnection(t *testing.T) {
	closed := make(chan struct{})
	addr := rawInstance(t,
		func(c net.Conn, br *bufio.Reader) {
			readRequest(t, br)
			answer(c, "first")
			c.Close() // after a keep-alive answer, as an idle timeout does
			close(closed)
		},
		func(c net.Conn, br *bufio.Reader) {
			readRequest(t, br)
			answer(c, "second")
		})
	proxy := proxyWith(t, New(Options{}), &Target{Addr: addr})
	c := &http.Client{Transport: &http.Transport{}}
	if g := send(t, c, newGet(proxy)); g.Body != "first" {
		t.Fatalf("first: %d %q", g.Status, g.Body)
	}
	<-closed
	if g := send(t, c, newGet(proxy)); g.Body != "second" {
		t.Fatalf("second: %d %q", g.Status, g.Body)
	}
}

// The probe sees the close of a connection idle for probeAfter or more, so
// that even a request that cannot be sent twice (a POST) goes on a new
// connection instead of failing.
func TestFastPathProbeSeesClose(t *testing.T) {
	closed := make(chan struct{})
	addr := rawInstance(t,
		func(c net.Conn, br *bufio.Reader) {
			readRequest(t, br)
			answer(c, "first")
			c.Close()
			close(closed)
		},
		func(c net.Conn, br *bufio.Reader) {
			readRequest(t, br)
			answer(c, "second")
		})
	f := New(Options{})
	f.pool.probeAfter = 0 // probe every time
	proxy := proxyWith(t, f, &Target{Addr: addr})
	c := &http.Client{Transport: &http.Transport{}}
	if g := send(t, c, newGet(proxy)); g.Body != "first" {
		t.Fatalf("first: %d %q", g.Status, g.Body)
	}
	<-closed
	// The FIN has to arrive before the probe: wait until the instance's
	// side is gone for the kernel too.
	testutil.Eventually(t, 5*time.Second, "the pooled connection to look closed", func() bool {
		f.pool.mu.Lock()
		defer f.pool.mu.Unlock()
		for _, l := range f.pool.idle {
			for _, pc := range l {
				return !pc.alive(0)
			}
		}
		return false
	})
	req, _ := http.NewRequest("POST", "http://"+proxy+"/", strings.NewReader("x"))
	if g := send(t, c, req); g.Body != "second" {
		t.Fatalf("second: %d %q", g.Status, g.Body)
	}
}

// The close crosses the request: the instance reads it and closes without
// an answer. A GET goes again on a new connection; a POST is not repeated.
func TestFastPathResendsReplayableOnly(t *testing.T) {
	for _, tt := range []struct {
		method   string
		wantCode int
		wantBody string
	}{
		{"GET", 200, "again"},
		{"POST", 502, "upstream_reset: service \"reviews\" at "},
	} {
		t.Run(tt.method, func(t *testing.T) {
			addr := rawInstance(t,
				func(c net.Conn, br *bufio.Reader) {
					readRequest(t, br)
					answer(c, "first")
					readRequest(t, br) // and close without answering
				},
				func(c net.Conn, br *bufio.Reader) {
					readRequest(t, br)
					answer(c, "again")
				})
			proxy := proxyWith(t, New(Options{}), &Target{Addr: addr, Service: "reviews"})
			c := &http.Client{Transport: &http.Transport{}}
			if g := send(t, c, newGet(proxy)); g.Body != "first" {
				t.Fatalf("first: %d %q", g.Status, g.Body)
			}
			req, _ := http.NewRequest(tt.method, "http://"+proxy+"/", strings.NewReader("x"))
			g := send(t, c, req)
			if g.Status != tt.wantCode || !strings.HasPrefix(g.Body, tt.wantBody) {
				t.Fatalf("%d %q, want %d %q…", g.Status, g.Body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

// An instance that shuts down as a request goes out on a pooled
// connection: it closes the connection without an answer and no longer
// listens. The replayable request, sent again, is refused there and goes
// to a fallback instance, as a refused connect always does.
func TestFastPathResendFallsBackWhenInstanceLeft(t *testing.T) {
	for name, o := range map[string]Options{"fast path": {}, "ReverseProxy": {NoFastPath: true}} {
		t.Run(name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			go func() {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				defer c.Close()
				br := bufio.NewReader(c)
				readRequest(t, br)
				answer(c, "first")
				readRequest(t, br)
				ln.Close() // stop listening, then close without answering
			}()
			fallback := rawInstance(t, func(c net.Conn, br *bufio.Reader) {
				readRequest(t, br)
				answer(c, "fallback")
			})
			target := &Target{Addr: ln.Addr().String(), Service: "reviews", Fallbacks: FallbackList{fallback}}
			proxy := proxyWith(t, New(o), target)
			c := &http.Client{Transport: &http.Transport{}}
			if g := send(t, c, newGet(proxy)); g.Body != "first" {
				t.Fatalf("first: %d %q", g.Status, g.Body)
			}
			if g := send(t, c, newGet(proxy)); g.Status != 200 || g.Body != "fallback" {
				t.Fatalf("second: %d %q, want the fallback's answer", g.Status, g.Body)
			}
		})
	}
}

// An instance that switches protocols unasked gets the client a 502, not a
// hijacked connection.
func TestFastPathRefusesUnaskedUpgrade(t *testing.T) {
	addr := rawInstance(t, func(c net.Conn, br *bufio.Reader) {
		readRequest(t, br)
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: other\r\nConnection: Upgrade\r\n\r\nraw bytes")
	})
	proxy := proxyWith(t, New(Options{}), &Target{Addr: addr, Service: "reviews"})
	g := send(t, &http.Client{}, newGet(proxy))
	if g.Status != 502 || !strings.Contains(g.Body, "switch protocol") {
		t.Fatalf("%d %q", g.Status, g.Body)
	}
}

// A request that asks for an upgrade takes the ReverseProxy path, which
// tunnels it.
func TestUpgradeTakesReverseProxy(t *testing.T) {
	addr := rawInstance(t, func(c net.Conn, br *bufio.Reader) {
		if req := readRequest(t, br); req == nil || req.Header.Get("Upgrade") != "echo" {
			t.Errorf("instance got %v", req)
			return
		}
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
		io.Copy(c, br)
	})
	proxy := proxyWith(t, New(Options{}), &Target{Addr: addr})
	c, err := net.Dial("tcp", proxy)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: reviews\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("%v %v", resp, err)
	}
	io.WriteString(c, "ping")
	b := make([]byte, 4)
	if _, err := io.ReadFull(br, b); err != nil || string(b) != "ping" {
		t.Fatalf("echo %q %v", b, err)
	}
}

// A client that goes away ends the exchange with the instance: the
// instance sees its request cancelled, the metrics see 499.
func TestFastPathClientGoesAway(t *testing.T) {
	arrived, cancelled := make(chan struct{}), make(chan struct{})
	backend := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done() // the proxy closed the connection
		close(cancelled)
	}))
	f := New(Options{})
	status := make(chan int, 1)
	proxy := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w}
		f.Forward(rec, r, &Target{Addr: backend})
		status <- rec.code
	}))
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+proxy+"/", nil)
	errc := make(chan error, 1)
	go func() {
		_, err := (&http.Client{}).Do(req)
		errc <- err
	}()
	<-arrived
	cancel()
	<-errc
	<-cancelled
	if code := <-status; code != StatusClientClosedRequest {
		t.Fatalf("status %d, want %d", code, StatusClientClosedRequest)
	}
}

type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.code = code
	r.ResponseWriter.WriteHeader(code)
}

func newGet(addr string) *http.Request {
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	return req
}

func TestIsEventStream(t *testing.T) {
	for ct, want := range map[string]bool{
		"text/event-stream": true, "Text/Event-Stream; charset=utf-8": true, " text/event-stream ;x=y": true,
		"text/event-streams": false, "text/plain": false, "": false,
	} {
		if got := isEventStream(ct); got != want {
			t.Errorf("isEventStream(%q) = %v", ct, got)
		}
	}
}

func TestHasToken(t *testing.T) {
	vs := []string{"keep-alive, X-Hop", "Upgrade"}
	for _, tok := range []string{"x-hop", "X-Hop", "upgrade", "keep-alive"} {
		if !hasToken(vs, tok) {
			t.Errorf("%q not found", tok)
		}
	}
	if hasToken(vs, "X") || hasToken(nil, "X-Hop") {
		t.Error("found what is not there")
	}
}
