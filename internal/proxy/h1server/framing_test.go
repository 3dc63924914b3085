package h1server

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
)

// framingCases are requests whose framing is ambiguous or invalid (RFC
// 9112 §6), each refused 400 bad_request with the connection closed.
var framingCases = []struct{ name, req string }{
	{"Content-Length and chunked (smuggling)", "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: svc\r\n\r\n"},
	{"chunked and Content-Length", "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n0\r\n\r\n"},
	{"HTTP/1.0 with both", "POST / HTTP/1.0\r\nHost: svc\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	{"HTTP/1.0 with chunked", "POST / HTTP/1.0\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	{"differing Content-Length", "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"},
	{"Content-Length list", "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 3, 4\r\n\r\nabcd"},
	{"non-numeric Content-Length", "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 0x10\r\n\r\n"},
	{"signed Content-Length", "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: +3\r\n\r\nabc"},
	{"gzip alone", "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: gzip\r\n\r\n"},
	{"chunked, gzip", "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"},
	{"identity", "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: identity\r\n\r\n"},
	{"chunked twice", "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	{"obs-fold", "GET / HTTP/1.1\r\nHost: svc\r\nX-A: a\r\n b\r\n\r\n"},
	{"obs-fold hiding Transfer-Encoding", "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nX-A: a\r\n\tTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	{"space before colon", "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"},
	{"tab before colon", "GET / HTTP/1.1\r\nHost: svc\r\nX-A\t: a\r\n\r\n"},
	{"bare CR in a value", "GET / HTTP/1.1\r\nHost: svc\r\nX-A: a\rb\r\n\r\n"},
	{"bare CR in the request line", "GET /\r HTTP/1.1\r\nHost: svc\r\n\r\n"},
}

// TestFramingRefused sends each badly framed request on a new connection
// (the own loop refuses it) and after a request that was handed off to
// net/http on the same connection (the framer refuses it): 400
// bad_request, Connection: close, the connection closed, and the handler
// never called for it.
func TestFramingRefused(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	var refused int
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method+" "+r.RequestURI)
		mu.Unlock()
		echo(w, r)
	}), func(s *Server) { s.BadRequest = func() { mu.Lock(); refused++; mu.Unlock() } })
	before := map[string]string{
		"first":                 "",
		"after HTTP/1.0":        "GET /first HTTP/1.0\r\nHost: svc\r\nConnection: keep-alive\r\n\r\n",
		"after a chunked body":  "POST /first HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n",
		"after a large head":    "GET /first HTTP/1.1\r\nHost: svc\r\nX-Big: " + strings.Repeat("b", readBufferSize) + "\r\n\r\n",
		"pipelined after chunk": "POST /first HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
	}
	for _, tt := range framingCases {
		for bname, first := range before {
			t.Run(tt.name+"/"+bname, func(t *testing.T) {
				mu.Lock()
				seen, refused = nil, 0
				mu.Unlock()
				c := dial(t, ts.addr)
				if first != "" {
					c.send(first)
					if bname != "pipelined after chunk" {
						if r := c.read("GET"); r.StatusCode != 200 || r.servedBy() != "fallback" {
							t.Fatalf("first request: %d %q by %q", r.StatusCode, r.body, r.servedBy())
						}
					}
				}
				c.send(tt.req)
				if bname == "pipelined after chunk" {
					if r := c.read("POST"); r.StatusCode != 200 {
						t.Fatalf("first request: %d %q", r.StatusCode, r.body)
					}
				}
				r := c.read("POST")
				if r.StatusCode != 400 || r.Header.Get("X-Trellis-Error") != "bad_request" || !r.Close ||
					!strings.HasPrefix(r.body, "bad_request: malformed request framing: ") {
					t.Fatalf("%d %q %q close %v", r.StatusCode, r.Header.Get("X-Trellis-Error"), r.body, r.Close)
				}
				c.expectClosed()
				mu.Lock()
				defer mu.Unlock()
				want := 0
				if first != "" {
					want = 1
				}
				if len(seen) != want || refused != 1 {
					t.Fatalf("handler saw %q, %d refusals counted", seen, refused)
				}
			})
		}
	}
}

// TestFramingAccepted: what is well framed passes the framer unchanged and
// the connection goes on, several requests deep.
func TestFramingAccepted(t *testing.T) {
	ts := startServer(t, echo)
	c := dial(t, ts.addr)
	c.send("POST /a HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: Chunked\r\n\r\n" +
		"5;name=\"v\"\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\n" +
		"POST /b HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\nabc" +
		"GET /c HTTP/1.1\nHost: svc\n\n" +
		"POST /d HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat("a", 0) + "10\r\n0123456789abcdef\r\n0\r\n\r\n")
	for _, want := range []string{"POST /a hello world", "POST /b abc", "GET /c ", "POST /d 0123456789abcdef"} {
		if r := c.read("POST"); r.StatusCode != 200 || r.body != want {
			t.Fatalf("%d %q, want %q", r.StatusCode, r.body, want)
		}
	}
}

// TestFramingMalformedChunk: a chunked body that turns out malformed is
// passed to net/http up to the byte that shows it and nothing after: the
// handler's read fails, and nothing behind it is read as a request.
func TestFramingMalformedChunk(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	var readErr error
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := io.ReadAll(r.Body)
		mu.Lock()
		seen = append(seen, r.RequestURI)
		readErr = err
		mu.Unlock()
		if err != nil {
			w.Header().Set("Connection", "close")
			http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
			return
		}
		echo(w, r)
	}))
	for _, body := range []string{
		"5\r\nhello\r\nzz\r\n0\r\n\r\n",       // not hex
		"5\r\nhelloXX0\r\n\r\n",               // no CRLF after the data
		"5\r\nhello\r\n\r\n",                  // an empty size line
		"5x\r\nhello\r\n0\r\n\r\n",            // junk after the size
		"ffffffffffffffffff\r\nhello\r\n",     // too large
		"5\r\nhello\r\n0\r\nX-T: 1\r\x01\r\n", // trailer then garbage after a CR
	} {
		mu.Lock()
		seen, readErr = nil, nil
		mu.Unlock()
		c := dial(t, ts.addr)
		c.send("POST /up HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n" + body + get("/smuggled"))
		r := c.read("POST")
		if r.StatusCode != 400 {
			t.Fatalf("%q: %d %q", body, r.StatusCode, r.body)
		}
		c.expectClosed()
		mu.Lock()
		if len(seen) != 1 || readErr == nil {
			t.Fatalf("%q: handler saw %q, read error %v", body, seen, readErr)
		}
		mu.Unlock()
	}
}

// TestNetHTTPMultipleContentLength: net/http refuses differing lengths
// itself; a head net/http reads (over the own loop's buffer, so not
// checked there) still gets our answer from the framer.
func TestFramingLargeHead(t *testing.T) {
	ts := startServer(t, echo)
	c := dial(t, ts.addr)
	c.send("POST / HTTP/1.1\r\nHost: svc\r\nX-Big: " + strings.Repeat("b", 2*readBufferSize) +
		"\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + get("/smuggled"))
	r := c.read("POST")
	if r.StatusCode != 400 || r.Header.Get("X-Trellis-Error") != "bad_request" {
		t.Fatalf("%d %q", r.StatusCode, r.body)
	}
	c.expectClosed()
}

// TestCheckHeadLikeNetHTTP: for the heads checkHead accepts, its framing
// is net/http's.
func TestCheckHeadLikeNetHTTP(t *testing.T) {
	for _, s := range fuzzSeeds {
		checkHeadLikeNetHTTP(t, []byte(s))
	}
	for _, tt := range framingCases {
		if h := checkHead([]byte(tt.req)); h.reason == "" {
			t.Errorf("%s: accepted", tt.name)
		}
	}
}

func checkHeadLikeNetHTTP(t *testing.T, in []byte) {
	h := checkHead(in)
	if h.end == 0 || h.reason != "" || h.framing == bodyOpaque {
		return
	}
	if h.end > len(in) {
		t.Fatalf("%q: end %d", in, h.end)
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(in[:h.end])))
	if err != nil {
		return // net/http refuses it (and so answers it) itself
	}
	switch h.framing {
	case bodyNone:
		if req.ContentLength != 0 || req.TransferEncoding != nil {
			t.Fatalf("%q: no body for checkHead, length %d coding %q for net/http", in, req.ContentLength, req.TransferEncoding)
		}
	case bodyLength:
		if req.ContentLength != h.length || req.TransferEncoding != nil {
			t.Fatalf("%q: length %d for checkHead, %d %q for net/http", in, h.length, req.ContentLength, req.TransferEncoding)
		}
	case bodyChunked:
		if req.ContentLength != -1 || len(req.TransferEncoding) != 1 || req.TransferEncoding[0] != "chunked" {
			t.Fatalf("%q: chunked for checkHead, %d %q for net/http", in, req.ContentLength, req.TransferEncoding)
		}
		for _, line := range bytes.Split(in[:h.end], []byte("\n")) {
			if name, _, ok := bytes.Cut(line, []byte(":")); ok && strings.EqualFold(string(name), "content-length") {
				t.Fatalf("%q: chunked with a Content-Length", in)
			}
		}
	}
}

// FuzzCheckHead holds checkHead to net/http's framing for what it accepts,
// and the framer to the same output however its input is split.
func FuzzCheckHead(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	for _, tt := range framingCases {
		f.Add([]byte(tt.req))
	}
	f.Add([]byte("POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\nHost: svc\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		checkHeadLikeNetHTTP(t, in)
		whole, err1 := io.ReadAll(newFramer(bytes.NewReader(in), 1<<20, "X-Marker"))
		bytewise, err2 := io.ReadAll(newFramer(iotest.OneByteReader(bytes.NewReader(in)), 1<<20, "X-Marker"))
		if err1 != nil || err2 != nil || !bytes.Equal(whole, bytewise) {
			t.Fatalf("%q: framer gives %q (%v) read whole, %q (%v) byte by byte", in, whole, err1, bytewise, err2)
		}
		if !bytes.Contains(whole, []byte("X-Marker")) && !bytes.HasPrefix(in, whole) {
			t.Fatalf("%q: framer passed %q, not a prefix", in, whole)
		}
	})
}
