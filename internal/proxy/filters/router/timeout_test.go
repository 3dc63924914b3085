package router

import (
	"net/http"
	"testing"
	"time"

	"trellis.dev/trellis/internal/proxy/model"
)

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
		if got := RequestTimeout(tc.route, req(tc.ct, tc.timeout)); got != tc.want {
			t.Errorf("%s grpc-timeout %q on %+v: %s, want %s", tc.ct, tc.timeout, tc.route, got, tc.want)
		}
	}
}

func TestParseGRPCTimeout(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"1H": time.Hour, "2M": 2 * time.Minute, "3S": 3 * time.Second, "150m": 150 * time.Millisecond,
		"7u": 7 * time.Microsecond, "9n": 9, "0n": 1, "99999999H": MaxGRPCTimeout, "00000001S": time.Second,
	} {
		if got, ok := ParseGRPCTimeout(in); !ok || got != want {
			t.Errorf("%q: %s %v, want %s", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "S", "1", "1s", "-1S", "+1S", "123456789S", "1.5S", " 1S"} {
		if got, ok := ParseGRPCTimeout(in); ok {
			t.Errorf("%q: %s, want refused", in, got)
		}
	}
}
