package proxy

import (
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/model"
)

// With max_requests 2, two requests in flight make the third (HTTP/1.1 and
// gRPC alike) answered 503 overloaded at once, counted; once they are done,
// requests pass again.
func TestCircuitBreakerMaxRequests(t *testing.T) {
	app := startApp(t, "reviews")
	snap := snapshot([]*model.VirtualHost{vhost("reviews", to("reviews", 100))},
		map[string][]string{"reviews": {app.addr}})
	snap.Clusters["reviews"].MaxRequests = 2
	p, _ := startProxy(t, Config{Role: meshxds.RoleSidecar, Service: "productpage", Version: "v1"}, snap)
	c := h1ProxyClient(t, p.OutboundAddr())
	c.Timeout = 10 * time.Second // bounds a failing test

	done := make(chan result, 2)
	for range 2 {
		go func() {
			resp, err := c.Get("http://reviews/slow")
			if err != nil {
				done <- result{body: err.Error()}
				return
			}
			resp.Body.Close()
			done <- result{code: resp.StatusCode}
		}()
	}
	for i := range 2 {
		select {
		case <-app.arrived:
		case <-time.After(10 * time.Second):
			t.Fatalf("only %d requests reached the app", i)
		}
	}
	if n := p.breakers.InFlight("reviews"); n != 2 {
		t.Fatalf("in flight %d, want 2", n)
	}

	start := time.Now()
	r := do(t, c, newRequest(t, "GET", "http://reviews/fast", "", nil))
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("the refusal took %s, want at once", took)
	}
	if r.code != 503 || r.header.Get(meshxds.HeaderError) != "overloaded" {
		t.Fatalf("third request: %d %q %q, want 503 overloaded", r.code, r.header.Get(meshxds.HeaderError), r.body)
	}
	if want := `overloaded: service "reviews": 2 requests in flight, the limit (TrafficPolicy connectionPool.maxRequests)`; !strings.Contains(r.body, want) {
		t.Errorf("body %q, want %q", r.body, want)
	}

	// gRPC: UNAVAILABLE, trailers-only.
	h2 := h2cClient(t, nil)
	h2.Timeout = 10 * time.Second
	req := newRequest(t, "POST", "http://"+p.OutboundAddr()+"/pkg.Svc/Call", "reviews", strings.NewReader("\x00\x00\x00\x00\x00"))
	req.Header.Set("Content-Type", "application/grpc")
	g := do(t, h2, req)
	if g.code != 503 || g.header.Get("Grpc-Status") != "14" || g.header.Get(meshxds.HeaderError) != "overloaded" {
		t.Fatalf("gRPC over the limit: %d grpc-status %q %q, want 503, 14, overloaded", g.code, g.header.Get("Grpc-Status"), g.header.Get(meshxds.HeaderError))
	}
	if n := counterValue(t, p.metrics.Registry, "trellis_proxy_circuit_breaker_overflows_total", map[string]string{"cluster": "reviews"}); n != 2 {
		t.Fatalf("overflows counted: %v, want 2", n)
	}
	if last := app.lastRequest(); last == nil || last.URL.Path != "/slow" {
		t.Fatalf("a refused request reached the app: %v", last)
	}

	app.release <- struct{}{}
	app.release <- struct{}{}
	for range 2 {
		if r := <-done; r.code != 200 {
			t.Fatalf("a request in flight ended %d %q", r.code, r.body)
		}
	}
	deadline := time.Now().Add(10 * time.Second)
	for p.breakers.InFlight("reviews") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("in flight %d after the requests ended", p.breakers.InFlight("reviews"))
		}
		time.Sleep(time.Millisecond)
	}
	for i := range 3 {
		if r := do(t, c, newRequest(t, "GET", "http://reviews/fast", "", nil)); r.code != 200 {
			t.Fatalf("request %d after the release: %d %q", i, r.code, r.body)
		}
	}
	if n := counterValue(t, p.metrics.Registry, "trellis_proxy_circuit_breaker_overflows_total", map[string]string{"cluster": "reviews"}); n != 2 {
		t.Fatalf("overflows counted: %v, want still 2", n)
	}
}
