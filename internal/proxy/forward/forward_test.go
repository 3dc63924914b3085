package forward

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"

	"trellis.dev/trellis/internal/meshxds"
)

// serve starts an h1+h2c server with h on 127.0.0.1:0.
func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: h, Protocols: &p}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set(meshxds.HeaderService, "app-says")
	fmt.Fprintf(w, "%s %s body=%s", r.Proto, r.Host, b)
})

// proxyWith runs a Forwarder to target as a server; clients reach it in
// HTTP/1.1 or h2c and it forwards in the same protocol.
func proxyWith(t *testing.T, f *Forwarder, target *Target) string {
	return serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.Forward(w, r, target)
	}))
}

func clients(t *testing.T) map[string]*http.Client {
	var h2c http.Protocols
	h2c.SetUnencryptedHTTP2(true)
	h1 := &http.Transport{}
	h2 := &http.Transport{Protocols: &h2c}
	t.Cleanup(func() { h1.CloseIdleConnections(); h2.CloseIdleConnections() })
	return map[string]*http.Client{"HTTP/1.1": {Transport: h1}, "HTTP/2.0": {Transport: h2}}
}

func post(t *testing.T, c *http.Client, addr, body string) (int, http.Header, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+addr+"/", strings.NewReader(body))
	req.Host = "reviews"
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestForwarder(t *testing.T) {
	live := serve(t, echo)
	reset := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler) // drop the connection (h1) / reset the stream (h2) mid-request
	}))
	dead1, dead2, dead3 := deadAddr(t), deadAddr(t), deadAddr(t)
	fallbacks := func(addrs ...string) FallbackList { return addrs }

	tests := []struct {
		name     string
		target   Target
		wantCode int
		wantBody string // prefix
	}{
		{"live", Target{Addr: live}, 200, " reviews body=hello"},
		{"dead then live, body replayed", Target{Addr: dead1, Fallbacks: fallbacks(dead2, live)}, 200, " reviews body=hello"},
		{"at most 2 fallbacks", Target{Addr: dead1, Fallbacks: fallbacks(dead2, dead3, live), Service: "reviews", Version: "v1"}, 503,
			`upstream_connect_failed: connect to service "reviews" version "v1" failed on 3 instances, last ` + dead3 + ": connection refused"},
		{"one dead, no fallbacks", Target{Addr: dead1, Service: "reviews"}, 503,
			`upstream_connect_failed: connect to service "reviews" at ` + dead1 + " failed: connection refused"},
		{"reset after sending", Target{Addr: reset, Service: "reviews", Fallbacks: fallbacks(live)}, 502,
			`upstream_reset: service "reviews" at ` + reset + " failed after the request was sent"},
	}
	f := New(Options{ResponseHeaders: http.Header{"X-Trellis-Service": {"reviews"}}})
	for _, tt := range tests {
		for proto, c := range clients(t) {
			t.Run(tt.name+"/"+proto, func(t *testing.T) {
				addr := proxyWith(t, f, &tt.target)
				code, h, body := post(t, c, addr, "hello")
				want := tt.wantBody
				if code == 200 {
					want = proto + want
				}
				if code != tt.wantCode || !strings.HasPrefix(body, want) {
					t.Fatalf("got %d %q, want %d %q", code, body, tt.wantCode, want)
				}
				if got := h.Values("X-Trellis-Service"); len(got) != 1 || got[0] != "reviews" {
					t.Fatalf("X-Trellis-Service %v, want [reviews]", got)
				}
			})
		}
	}
}

// connectLog records the failed connects a Target's Outcomes hears of.
type connectLog struct {
	mu    sync.Mutex
	addrs []string
}

func (l *connectLog) ConnectFailed(addr string) {
	l.mu.Lock()
	l.addrs = append(l.addrs, addr)
	l.mu.Unlock()
}

func TestOutcomesHearOfFailedConnects(t *testing.T) {
	live := serve(t, echo)
	dead1, dead2, dead3 := deadAddr(t), deadAddr(t), deadAddr(t)
	tests := []struct {
		name   string
		target Target
		want   []string
	}{
		{"live", Target{Addr: live}, nil},
		{"dead then live", Target{Addr: dead1, Fallbacks: FallbackList{dead2, live}}, []string{dead1, dead2}},
		{"all dead", Target{Addr: dead1, Fallbacks: FallbackList{dead2, dead3}}, []string{dead1, dead2, dead3}},
	}
	f := New(Options{})
	for _, tt := range tests {
		for proto, c := range clients(t) {
			t.Run(tt.name+"/"+proto, func(t *testing.T) {
				log := &connectLog{}
				tgt := tt.target
				tgt.Outcomes = log
				post(t, c, proxyWith(t, f, &tgt), "hello")
				log.mu.Lock()
				defer log.mu.Unlock()
				if !slices.Equal(log.addrs, tt.want) {
					t.Fatalf("failed connects %v, want %v", log.addrs, tt.want)
				}
			})
		}
	}
}

func TestIsConnectError(t *testing.T) {
	tr := NewTransport(nil)
	dead := deadAddr(t)
	for name, proto := range map[string]int{"h1": 1, "h2c": 2} {
		req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://"+dead+"/", nil)
		req.ProtoMajor = proto
		rt := tr.h1
		if proto == 2 {
			rt = tr.h2c
		}
		_, err := rt.RoundTrip(req)
		if !isConnectError(err) {
			t.Errorf("%s: %v is not seen as a connect error", name, err)
		}
	}
}
