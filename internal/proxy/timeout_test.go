package proxy

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/model"
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
				t.Fatal("the app's request was not cancelled")
			}
		})
	}
	if r := do(t, h1, newRequest(t, "GET", "http://reviews/fast", "", nil)); r.code != 200 {
		t.Fatalf("fast request after the timeouts: %d %q", r.code, r.body)
	}
}

// Without a route timeout, grpc-timeout still bounds a gRPC request when
// the route honours it (grpc_timeout_header_max 0: uncapped); a request
// without one, or not gRPC, has no limit.
func TestGRPCTimeoutAlone(t *testing.T) {
	rt := &model.Route{GRPCTimeout: true}
	req := func(ct, timeout string) *http.Request {
		r, _ := http.NewRequest("POST", "http://reviews/", nil)
		r.Header.Set("Content-Type", ct)
		if timeout != "" {
			r.Header.Set("Grpc-Timeout", timeout)
		}
		return r
	}
	for _, tc := range []struct {
		ct, timeout string
		route       *model.Route
		want        time.Duration
	}{
		{"application/grpc", "100m", rt, 100 * time.Millisecond},
		{"application/grpc+proto", "2S", rt, 2 * time.Second},
		{"application/grpc", "", rt, 0},
		{"application/grpc", "bad", rt, 0},
		{"application/json", "100m", rt, 0},
		{"application/grpc", "100m", &model.Route{}, 0}, // the route does not honour it
		{"application/grpc", "5S", &model.Route{GRPCTimeout: true, GRPCTimeoutMax: time.Second}, time.Second},
		{"application/grpc", "5S", &model.Route{Timeout: 3 * time.Second, GRPCTimeout: true}, 3 * time.Second},
	} {
		if got := requestTimeout(tc.route, req(tc.ct, tc.timeout)); got != tc.want {
			t.Errorf("%s grpc-timeout %q on %+v: %s, want %s", tc.ct, tc.timeout, tc.route, got, tc.want)
		}
	}
}

func TestParseGRPCTimeout(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"1H": time.Hour, "2M": 2 * time.Minute, "3S": 3 * time.Second, "150m": 150 * time.Millisecond,
		"7u": 7 * time.Microsecond, "9n": 9, "0n": 1, "99999999H": maxGRPCTimeout, "00000001S": time.Second,
	} {
		if got, ok := parseGRPCTimeout(in); !ok || got != want {
			t.Errorf("%q: %s %v, want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "S", "1", "1s", "-1S", "+1S", "123456789S", "1.5S", " 1S"} {
		if got, ok := parseGRPCTimeout(in); ok {
			t.Errorf("%q: %s, want refused", in, got)
		}
	}
}
