package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/model"
)

// countingApp records the paths of the requests it is sent; /up signals
// when its head arrived, then reads the body.
type countingApp struct {
	addr    string
	arrived chan struct{}
	mu      sync.Mutex
	paths   []string
	bodyErr error
}

func startCountingApp(t *testing.T) *countingApp {
	a := &countingApp{arrived: make(chan struct{}, 4)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a.addr = ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.mu.Lock()
		a.paths = append(a.paths, r.URL.Path)
		a.mu.Unlock()
		if r.URL.Path == "/up" {
			a.arrived <- struct{}{}
		}
		_, err := io.ReadAll(r.Body)
		a.mu.Lock()
		a.bodyErr = err
		a.mu.Unlock()
		io.WriteString(w, "ok")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return a
}

func (a *countingApp) seen() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.paths...)
}

func (a *countingApp) reset() {
	a.mu.Lock()
	a.paths = nil
	a.mu.Unlock()
}

// framingListeners starts a gateway and a sidecar whose routes and app all
// lead to app, and returns every traffic listener.
func framingListeners(t *testing.T, app *countingApp) map[string]string {
	snap := snapshot([]*model.VirtualHost{vhost("svc", to("svc|v1", 100))}, map[string][]string{"svc|v1": {app.addr}})
	gw, _ := startProxy(t, Config{Role: meshxds.RoleGateway, GatewayAddr: "127.0.0.1:0"}, snap)
	sc := sidecar(t, "svc", "v1", app.addr)
	sc.setSnapshot(snap)
	return map[string]string{"gateway": gw.GatewayAddr(), "outbound": sc.OutboundAddr(), "inbound": sc.InboundAddr()}
}

// badFraming are requests with ambiguous or invalid framing (RFC 9112 §6).
var badFraming = []struct{ name, req string }{
	{"smuggling: Content-Length and chunked", "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: svc\r\n\r\n"},
	{"HTTP/1.0 with both", "POST /ten HTTP/1.0\r\nHost: svc\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: svc\r\n\r\n"},
	{"HTTP/1.0 with chunked", "POST /ten HTTP/1.0\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
	{"differing Content-Length", "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd"},
	{"non-numeric Content-Length", "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: abc\r\n\r\n"},
	{"gzip alone", "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: gzip\r\n\r\n"},
	{"chunked, gzip", "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n"},
	{"identity", "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: identity\r\n\r\n"},
	{"obs-fold", "GET / HTTP/1.1\r\nHost: svc\r\nX-A: a\r\n b\r\n\r\n"},
	{"whitespace before colon", "POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n"},
	{"bare CR", "GET / HTTP/1.1\r\nHost: svc\r\nX-A: a\rb\r\n\r\n"},
}

// TestFramingRefusedOnEveryListener sends each badly framed request as
// raw bytes to every traffic listener, as the first request of a
// connection (h1server's own loop) and after a chunked request on it (the
// net/http fallback): 400 bad_request, Connection: close, the connection
// closed, and the app never sees it.
func TestFramingRefusedOnEveryListener(t *testing.T) {
	app := startCountingApp(t)
	listeners := framingListeners(t, app)
	for lname, addr := range listeners {
		for _, tt := range badFraming {
			for _, after := range []bool{false, true} {
				name := lname + "/" + tt.name
				if after {
					name += "/after a handed-off request"
				}
				t.Run(name, func(t *testing.T) {
					app.reset()
					nc, err := net.Dial("tcp", addr)
					if err != nil {
						t.Fatal(err)
					}
					defer nc.Close()
					nc.SetDeadline(time.Now().Add(10 * time.Second))
					br := bufio.NewReader(nc)
					want := 0
					if after {
						io.WriteString(nc, "POST /first HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n")
						res, err := http.ReadResponse(br, nil)
						if err != nil || res.StatusCode != 200 {
							t.Fatalf("first request: %v %v", res, err)
						}
						io.Copy(io.Discard, res.Body)
						want = 1
					}
					io.WriteString(nc, tt.req)
					res, err := http.ReadResponse(br, &http.Request{Method: "POST"})
					if err != nil {
						t.Fatal(err)
					}
					body, _ := io.ReadAll(res.Body)
					if res.StatusCode != 400 || res.Header.Get(meshxds.HeaderError) != "bad_request" || !res.Close {
						t.Fatalf("%d %q close %v: %q", res.StatusCode, res.Header.Get(meshxds.HeaderError), res.Close, body)
					}
					if n, err := br.ReadByte(); err != io.EOF {
						t.Fatalf("connection still open: %v %v", n, err)
					}
					if seen := app.seen(); len(seen) != want {
						t.Fatalf("the app saw %q", seen)
					}
				})
			}
		}
	}
}

// TestMalformedBodyAfterForwarding: a chunked body that turns out
// malformed, or ends with the connection, after the request went to the
// instance is the client's fault: 400 bad_request, never upstream_reset,
// and the connection closed.
func TestMalformedBodyAfterForwarding(t *testing.T) {
	app := startCountingApp(t)
	listeners := framingListeners(t, app)
	for lname, addr := range listeners {
		for _, tt := range []struct {
			name string
			rest string // sent once the app has the head
			cut  bool   // then half-close
		}{
			{"bad chunk size", "zz\r\nmore\r\n0\r\n\r\n", false},
			{"no CRLF after the data", "3\r\nabcX\r\n0\r\n\r\n", false},
			{"truncated then closed", "10\r\nabc", true},
		} {
			t.Run(lname+"/"+tt.name, func(t *testing.T) {
				nc, err := net.Dial("tcp", addr)
				if err != nil {
					t.Fatal(err)
				}
				defer nc.Close()
				nc.SetDeadline(time.Now().Add(10 * time.Second))
				io.WriteString(nc, "POST /up HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
				select {
				case <-app.arrived:
				case <-time.After(10 * time.Second):
					t.Fatal("the request did not reach the app")
				}
				io.WriteString(nc, tt.rest)
				if tt.cut {
					nc.(*net.TCPConn).CloseWrite()
				}
				br := bufio.NewReader(nc)
				res, err := http.ReadResponse(br, &http.Request{Method: "POST"})
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(res.Body)
				if res.StatusCode != 400 || res.Header.Get(meshxds.HeaderError) != "bad_request" ||
					!strings.HasPrefix(string(body), "bad_request: malformed request body") {
					t.Fatalf("%d %q: %q", res.StatusCode, res.Header.Get(meshxds.HeaderError), body)
				}
				if _, err := br.ReadByte(); err != io.EOF {
					t.Fatalf("connection still open: %v", err)
				}
			})
		}
	}
}

// A request refused for its framing is counted as a 400 of its listener.
func TestFramingRefusalCounted(t *testing.T) {
	app := startCountingApp(t)
	snap := snapshot([]*model.VirtualHost{vhost("svc", to("svc|v1", 100))}, map[string][]string{"svc|v1": {app.addr}})
	gw, _ := startProxy(t, Config{Role: meshxds.RoleGateway, GatewayAddr: "127.0.0.1:0"}, snap)
	labels := map[string]string{"direction": "gateway", "code": "400"}
	before := counterValue(t, gw.metrics.Registry, "trellis_proxy_requests_total", labels)
	c := dialRaw(t, gw.GatewayAddr())
	res, _, err := c.roundTrip(badFraming[0].req)
	if err != nil || res.StatusCode != 400 {
		t.Fatalf("%v %v", res, err)
	}
	if after := counterValue(t, gw.metrics.Registry, "trellis_proxy_requests_total", labels); after != before+1 {
		t.Errorf("requests_total{direction=gateway,code=400} went from %v to %v, want +1", before, after)
	}
}
