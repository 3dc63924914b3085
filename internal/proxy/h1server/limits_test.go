package h1server

import (
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"trellis.dev/trellis/internal/meshxds"
)

// headOf is a request head: the request line, Host, the fields given and
// one X-Pad field of pad bytes when pad > 0, then extra (more fields,
// CRLF-ended) and the empty line.
func headOf(line string, fields, pad int, extra string) string {
	var b strings.Builder
	b.WriteString(line + "\r\nHost: svc\r\n")
	for i := range fields {
		fmt.Fprintf(&b, "X-F-%03d: v\r\n", i)
	}
	if pad > 0 {
		b.WriteString("X-Pad: " + strings.Repeat("p", pad) + "\r\n")
	}
	b.WriteString(extra + "\r\n")
	return b.String()
}

// headOfSize is a GET head of exactly size bytes (size > 100).
func headOfSize(size int) string {
	base := len(headOf("GET /sized HTTP/1.1", 0, 1, ""))
	return headOf("GET /sized HTTP/1.1", 0, 1+size-base, "")
}

// is431 checks that r is our header_too_large answer.
func is431(t *testing.T, r reply) {
	t.Helper()
	if r.StatusCode != http.StatusRequestHeaderFieldsTooLarge || r.Header.Get(meshxds.HeaderError) != "header_too_large" ||
		!strings.HasPrefix(r.body, "header_too_large: ") || r.servedBy() != "" {
		t.Fatalf("got %d %q %q, want 431 with x-trellis-error: header_too_large", r.StatusCode, r.head, r.body)
	}
}

func TestHeaderLimits(t *testing.T) {
	chunked := "Transfer-Encoding: chunked\r\n"
	tests := []struct {
		name     string
		maxBytes int    // Server.MaxHeaderBytes; 0: the default
		req      string // the head (and body) sent
		want     int    // 200 or 431
		servedBy string // for a 200
		msg      string // for a 431: the body
	}{
		{name: "fast path: 100 fields, Host included", req: headOf("GET /f HTTP/1.1", 99, 0, ""), want: 200, servedBy: "h1server"},
		{name: "fast path: 101 fields", req: headOf("GET /f HTTP/1.1", 100, 0, ""), want: 431,
			msg: "header_too_large: request with more than 100 header fields\n"},
		{name: "fast path: 200 fields", req: headOf("GET /f HTTP/1.1", 200, 0, ""), want: 431},
		{name: "fallback (HTTP/1.0): 200 fields", req: headOf("GET /f HTTP/1.0", 200, 0, ""), want: 431,
			msg: "header_too_large: request with more than 100 header fields\n"},
		{name: "fallback (chunked): 200 fields", req: headOf("POST /f HTTP/1.1", 200, 0, chunked) + "0\r\n\r\n", want: 431},
		{name: "fallback (HTTP/1.0): 100 fields", req: headOf("GET /f HTTP/1.0", 99, 0, ""), want: 200, servedBy: "fallback"},
		{name: "100 KiB header", req: headOf("GET /big HTTP/1.1", 0, 100<<10, ""), want: 431,
			msg: "header_too_large: request head larger than 61440 bytes\n"},
		{name: "100 KiB header, HTTP/1.0", req: headOf("GET /big HTTP/1.0", 0, 100<<10, ""), want: 431},
		{name: "100 KiB header, chunked", req: headOf("POST /big HTTP/1.1", 0, 100<<10, chunked) + "0\r\n\r\n", want: 431},
		{name: "head of exactly the limit", req: headOfSize(DefaultMaxHeaderBytes), want: 200, servedBy: "fallback"},
		{name: "head one byte over the limit", req: headOfSize(DefaultMaxHeaderBytes + 1), want: 431},
		{name: "small limit, fast path: at the limit", maxBytes: 1024, req: headOfSize(1024), want: 200, servedBy: "h1server"},
		{name: "small limit, fast path: over it", maxBytes: 1024, req: headOfSize(1025), want: 431,
			msg: "header_too_large: request head larger than 1024 bytes\n"},
		{name: "small limit, fast path: over the buffer", maxBytes: 1024, req: headOfSize(4000), want: 431},
		{name: "small limit: net/http's backstop answers, rewritten", maxBytes: 10 << 10,
			req: headOfSize(64 << 10), want: 431, msg: "header_too_large: request head larger than 10240 bytes\n"},
		{name: "small limit: net/http's backstop, HTTP/1.0", maxBytes: 10 << 10,
			req: headOf("GET /big HTTP/1.0", 0, 64<<10, ""), want: 431},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var refused atomic.Int32
			ts := startServer(t, echo, func(s *Server) {
				s.MaxHeaderBytes = tt.maxBytes
				s.HeaderTooLarge = func() { refused.Add(1) }
			})
			c := dial(t, ts.addr)
			// The server may answer before it reads the whole request.
			go io.WriteString(c.nc, tt.req)
			method, _, _ := strings.Cut(tt.req, " ")
			r := c.read(method)
			if tt.want == 200 {
				if r.StatusCode != 200 || r.servedBy() != tt.servedBy {
					t.Fatalf("got %d by %q (%q), want 200 by %s", r.StatusCode, r.servedBy(), r.body, tt.servedBy)
				}
				if n := refused.Load(); n != 0 {
					t.Errorf("HeaderTooLarge called %d times", n)
				}
				return
			}
			is431(t, r)
			if tt.msg != "" && r.body != tt.msg {
				t.Errorf("body %q, want %q", r.body, tt.msg)
			}
			if !r.hasField("Connection", "close") {
				t.Errorf("no Connection: close in %q", r.head)
			}
			c.expectClosed()
			if n := refused.Load(); n != 1 {
				t.Errorf("HeaderTooLarge called %d times, want 1", n)
			}
		})
	}
}

// TestHeaderLimitsLaterRequests: the limits hold for every request of a
// connection, the answers before a refused one are sent whole, on the
// fast path and on a connection handed off.
func TestHeaderLimitsLaterRequests(t *testing.T) {
	for _, first := range []struct{ name, req, servedBy string }{
		{"fast path", get("/first"), "h1server"},
		{"handed off", "POST /first HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "fallback"},
	} {
		for _, second := range []struct{ name, req string }{
			{"101 fields", headOf("GET /second HTTP/1.1", 100, 0, "")},
			{"100 KiB", headOf("GET /second HTTP/1.1", 0, 100<<10, "")},
		} {
			t.Run(first.name+", then "+second.name, func(t *testing.T) {
				ts := startServer(t, echo)
				c := dial(t, ts.addr)
				go io.WriteString(c.nc, first.req+second.req)
				method, _, _ := strings.Cut(first.req, " ")
				if r := c.read(method); r.StatusCode != 200 || r.servedBy() != first.servedBy {
					t.Fatalf("first: %d by %q", r.StatusCode, r.servedBy())
				}
				is431(t, c.read("GET"))
				c.expectClosed()
			})
		}
	}
}

// TestHeaderLimitsH2C: an h2c request over the limits gets our 431 on its
// stream; the connection goes on serving.
func TestHeaderLimitsH2C(t *testing.T) {
	var refused atomic.Int32
	ts := startServer(t, echo, func(s *Server) { s.HeaderTooLarge = func() { refused.Add(1) } })
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}
	do := func(h http.Header) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest("GET", "http://"+ts.addr+"/h2", nil)
		if err != nil {
			t.Fatal(err)
		}
		maps.Copy(req.Header, h)
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		body, _ := io.ReadAll(res.Body)
		return res, string(body)
	}
	tooMany := http.Header{}
	for i := range 200 {
		tooMany.Set(fmt.Sprintf("X-F-%03d", i), "v")
	}
	for _, tt := range []struct {
		name string
		h    http.Header
		msg  string
	}{
		{"100 KiB header", http.Header{"X-Pad": {strings.Repeat("p", 100<<10)}},
			"header_too_large: request head larger than 61440 bytes\n"},
		{"200 fields", tooMany, "header_too_large: request with more than 100 header fields\n"},
	} {
		res, body := do(tt.h)
		if res.ProtoMajor != 2 || res.StatusCode != 431 || res.Header.Get(meshxds.HeaderError) != "header_too_large" || body != tt.msg {
			t.Errorf("%s: got %s %d %q %q, want HTTP/2 431 header_too_large", tt.name, res.Proto, res.StatusCode, res.Header, body)
		}
	}
	// Past net/http's backstop (twice the limit, advertised as
	// SETTINGS_MAX_HEADER_LIST_SIZE) a Go client does not send the
	// request at all.
	req, _ := http.NewRequest("GET", "http://"+ts.addr+"/h2", nil)
	req.Header.Set("X-Pad", strings.Repeat("p", 200<<10))
	if res, err := client.Do(req); err == nil {
		res.Body.Close()
		t.Errorf("200 KiB header over h2c: %s %d, want the client to refuse it", res.Proto, res.StatusCode)
	} else if !strings.Contains(err.Error(), "header list larger than peer's advertised limit") {
		t.Logf("200 KiB header over h2c: %v", err)
	}
	if res, body := do(nil); res.StatusCode != 200 || body != "GET /h2 " {
		t.Errorf("after the refusals: %d %q", res.StatusCode, body)
	}
	if n := refused.Load(); n != 2 {
		t.Errorf("HeaderTooLarge called %d times, want 2", n)
	}
}

// TestNetHTTP431 checks that net/http still writes the answer handedConn
// replaces, byte for byte, in one Write.
func TestNetHTTP431(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rec := &recordingListener{Listener: ln, writes: make(chan string, 16)}
	srv := &http.Server{Handler: echo, MaxHeaderBytes: 1024}
	go srv.Serve(rec)
	defer srv.Close()
	c := dial(t, ln.Addr().String())
	go io.WriteString(c.nc, headOfSize(16<<10))
	io.ReadAll(c.br)
	select {
	case w := <-rec.writes:
		if w != netHTTP431 {
			t.Fatalf("net/http wrote %q, handedConn replaces %q", w, netHTTP431)
		}
	default:
		t.Fatal("net/http wrote nothing")
	}
}

type recordingListener struct {
	net.Listener
	writes chan string
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &recordingConn{Conn: c, writes: l.writes}, nil
}

type recordingConn struct {
	net.Conn
	writes chan string
}

func (c *recordingConn) Write(p []byte) (int, error) {
	select {
	case c.writes <- string(p):
	default:
	}
	return c.Conn.Write(p)
}
