package router

import (
	"net/http"
	"strconv"
	"time"

	"trellis.dev/trellis/internal/proxy/mesherr"
	"trellis.dev/trellis/internal/proxy/model"
)

// RequestTimeout is how long r may take on rt: the route's timeout, or a
// gRPC request's grpc-timeout when the route honours it
// (max_stream_duration.grpc_timeout_header_max) and it is shorter — capped
// by that maximum unless 0. Zero is no limit.
func RequestTimeout(rt *model.Route, r *http.Request) time.Duration {
	d := rt.Timeout
	if !rt.GRPCTimeout || !mesherr.IsGRPC(r) {
		return d
	}
	v := r.Header["Grpc-Timeout"]
	if len(v) == 0 {
		return d
	}
	g, ok := ParseGRPCTimeout(v[0])
	if !ok {
		return d
	}
	if rt.GRPCTimeoutMax > 0 && g > rt.GRPCTimeoutMax {
		g = rt.GRPCTimeoutMax
	}
	if d == 0 || g < d {
		d = g
	}
	return d
}

// ParseGRPCTimeout reads a grpc-timeout value: at most 8 digits and a unit
// (H, M, S, m, u, n), as the gRPC over HTTP/2 spec says. A zero timeout
// is taken as 1 ns (already expired), not as no limit.
func ParseGRPCTimeout(s string) (time.Duration, bool) {
	if len(s) < 2 || len(s) > 9 {
		return 0, false
	}
	n, err := strconv.ParseUint(s[:len(s)-1], 10, 64)
	if err != nil {
		return 0, false
	}
	var unit time.Duration
	switch s[len(s)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, false
	}
	d := time.Duration(n) * unit
	if n > uint64(MaxGRPCTimeout/unit) {
		d = MaxGRPCTimeout
	}
	return max(d, 1), true
}

// MaxGRPCTimeout caps a grpc-timeout (99999999 hours would overflow a
// Duration).
const MaxGRPCTimeout = 100 * 365 * 24 * time.Hour
