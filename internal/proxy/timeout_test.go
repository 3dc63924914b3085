package proxy

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/meshxds"
)

// A route's timeout is the request's deadline: an instance slower than it
// is answered 504 upstream_timeout on every path (HTTP/1.1 fast path, a
// chunked upload on the ReverseProxy path, h2c, gRPC with grpc-status 4),
// and the instance's app sees its request cancelled; a fast request on
// the same route is answered as before. A gRPC request's shorter
// grpc-timeout wins over the route's.
func TestRouteTimeout(t *testing.T) {
	m := newMesh(t)
	rt := to("reviews|v1", 100)
	rt.Timeout = 200 * time.Millisecond
	rt.GRPCTimeout, rt.GRPCTimeoutMax = true, 200*time.Millisecond
	m.client.setSnapshot(m.snapshot(rt))
	out := m.client.OutboundAddr()
	h1 := h1ProxyClient(t, out)
	h1.Timeout = 10 * time.Second // bounds a failing test; nothing waits for it
	h2 := h2cClient(t, nil)
	h2.Timeout = 10 * time.Second

	if r := do(t, h1, newRequest(t, "GET", "http://reviews/fast", "", nil)); r.code != 200 {
		t.Fatalf("fast request: %d %q", r.code, r.body)
	}

	grpc := func(timeout string) *http.Request {
		req := newRequest(t, "POST", "http://"+out+"/slow", "reviews", strings.NewReader("\x00\x00\x00\x00\x00"))
		req.Header.Set("Content-Type", "application/grpc")
		if timeout != "" {
			req.Header.Set("Grpc-Timeout", timeout)
		}
		return req
	}
	chunked := newRequest(t, "POST", "http://reviews/slow", "", strings.NewReader("body"))
	chunked.ContentLength = -1
	tests := []struct {
		name    string
		client  *http.Client
		req     *http.Request
		within  string
		grpcMsg bool
	}{
		{"HTTP/1.1 fast path", h1, newRequest(t, "GET", "http://reviews/slow", "", nil), "200ms", false},
		{"HTTP/1.1 chunked upload", h1, chunked, "200ms", false},
		{"h2c", h2, newRequest(t, "GET", "http://"+out+"/slow", "reviews", nil), "200ms", false},
		{"gRPC", h2, grpc(""), "200ms", true},
		{"gRPC with a shorter grpc-timeout", h2, grpc("50m"), "50ms", true},
		{"gRPC with a longer grpc-timeout", h2, grpc("3S"), "200ms", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			drain(m.v1.arrived)
			drain(m.v1.gone)
			r := do(t, tt.client, tt.req)
			if r.code != http.StatusGatewayTimeout || r.header.Get(meshxds.HeaderError) != "upstream_timeout" {
				t.Fatalf("%d %q %q, want 504 upstream_timeout", r.code, r.header.Get(meshxds.HeaderError), r.body)
			}
			msg := r.body
			if tt.grpcMsg {
				if g := r.header.Get("Grpc-Status"); g != "4" {
					t.Errorf("grpc-status %q, want 4", g)
				}
				msg = r.header.Get("Grpc-Message")
			}
			if !strings.Contains(msg, "did not answer within "+tt.within) {
				t.Errorf("message %q, want it to say within %s", msg, tt.within)
			}
			select {
			case <-m.v1.gone:
			case <-time.After(10 * time.Second):
				// A short deadline (50 ms) can pass on a loaded machine
				// before the request reaches the app at all: then there
				// is nothing to cancel.
				select {
				case <-m.v1.arrived:
					t.Fatal("the app's request was not cancelled")
				default:
					t.Log("the deadline passed before the request reached the app")
				}
			}
		})
	}
	if r := do(t, h1, newRequest(t, "GET", "http://reviews/fast", "", nil)); r.code != 200 {
		t.Fatalf("fast request after the timeouts: %d %q", r.code, r.body)
	}
}

// drain empties a buffered channel of what earlier requests left in it.
func drain(c chan struct{}) {
	for {
		select {
		case <-c:
		default:
			return
		}
	}
}
