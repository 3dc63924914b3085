package proxy

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/balancer"
	"trellis.dev/trellis/internal/proxy/breaker"
	"trellis.dev/trellis/internal/proxy/forward"
	"trellis.dev/trellis/internal/proxy/mesherr"
	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/proxy/outlier"
	"trellis.dev/trellis/internal/proxy/router"
	"trellis.dev/trellis/internal/proxy/tunnel"
)

// maxFallbacks is how many other instances a failed connect tries.
const maxFallbacks = 2

// routeHandler serves the outbound and the gateway listener: route by the
// listener's route table, pick an instance, forward.
type routeHandler struct {
	p         *Proxy
	listener  string         // model listener name: meshxds.ListenerOutbound or ListenerGateway
	direction string         // metrics label
	tunnels   *tunnel.Server // CONNECT is served only when set
}

func (h *routeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		// connect.go: routed (the requests inside come back to ServeHTTP
		// one by one) or relayed as TCP; refused without tunnels.
		h.serveConnect(w, r)
		return
	}
	start := time.Now()
	req := &routedRequest{rec: recorder{ResponseWriter: w}}
	err := h.pick(r, req)
	if err != nil {
		h.p.log.Debug("request refused", "direction", h.direction, "code", err.Code, "error", err.Msg,
			"host", r.Host, "path", r.URL.Path)
		mesherr.Write(&req.rec, r, err)
	} else {
		defer req.inflight.Done() // a least-request cluster's count; also when Forward aborts with a panic
		defer req.breaker.Release()
		if d := req.target.Timeout; d > 0 {
			// The route's timeout (or a shorter grpc-timeout), from the
			// request's arrival: forward answers 504 upstream_timeout
			// when it passes.
			ctx, cancel := context.WithDeadline(r.Context(), start.Add(d))
			defer cancel()
			r = r.WithContext(ctx)
		}
		h.p.toMesh.Forward(&req.rec, r, &req.target)
		if req.cluster.Outlier != nil && !req.connectFailed {
			// After a failed connect the answer may come from a fallback
			// instance: only the failed connects (ConnectFailed) count.
			h.p.outliers.Report(req.cluster, req.target.Addr, outlier.Outcome{Status: req.rec.status()})
		}
	}
	// Unrouted requests count with empty service and version.
	var service, version string
	if err == nil {
		service, version = req.target.Service, req.target.Version
	} else if err.Code == mesherr.NoHealthyUpstream || err.Code == mesherr.Overloaded {
		service, version = err.Service, err.Version
	}
	h.p.metrics.ObserveRequest(h.direction, service, version, req.rec.status(), time.Since(start))
}

// routedRequest is what one request needs on its way, in one allocation:
// the status recorder, where it goes, and the cluster to find other
// instances in when connecting there fails (it is the target's Fallbacks,
// so no closure is allocated per request for them).
type routedRequest struct {
	rec      recorder
	target   forward.Target
	cluster  *model.Cluster
	inflight *balancer.Inflight // nil unless the cluster counts requests in flight
	breaker  *breaker.Counter   // nil unless the cluster has max_requests
	// outliers and connectFailed: the cluster's outlier detection (nil
	// without) and whether a connect failed on the way.
	outliers      *outlier.Detector
	connectFailed bool
}

// ConnectFailed counts a failed connect against the instance at addr (the
// target's Outcomes, set only for clusters with outlier detection).
func (q *routedRequest) ConnectFailed(addr string) {
	q.connectFailed = true
	q.outliers.Report(q.cluster, addr, outlier.Outcome{ConnectFailed: true})
}

// Instances are the fallbacks of the chosen instance: up to maxFallbacks
// other healthy instances of its cluster.
func (q *routedRequest) Instances() []string {
	return balancer.Others(q.cluster, q.target.Addr, maxFallbacks)
}

// pick chooses where r goes, using one snapshot throughout: the route, the
// cluster, the instance; it fills in q's target and cluster.
func (h *routeHandler) pick(r *http.Request, q *routedRequest) *mesherr.Error {
	snap := h.p.snapshot.Load()
	table, merr := h.table(snap)
	if merr != nil {
		return merr
	}
	_, rt, err := router.Find(table, router.FromHTTP(r))
	if err != nil {
		e, ok := mesherr.As(err)
		if !ok {
			e = mesherr.Wrap(err, mesherr.NoRoute, "%v", err)
		}
		return e
	}
	name, ok := router.Pick(rt)
	if !ok {
		return mesherr.New(mesherr.NoRoute, "route %q for host %q has no destination", rt.Name, router.NormalizeHost(r.Host))
	}
	service, version := meshxds.SplitClusterName(name)
	// Ejected endpoints are not healthy in the view the balancer sees
	// (the cluster itself when none is, or without outlier detection).
	cluster := h.p.clusterView(snap.Clusters[name])
	if cluster == nil {
		e := mesherr.New(mesherr.NoHealthyUpstream, "%s is not known to this proxy", mesherr.Dest(service, version))
		e.Service, e.Version = service, version
		return e
	}
	ep, inflight, ok := h.p.balancer.Pick(cluster, balancer.KeyOf(rt.HashPolicies, r))
	if !ok {
		e := mesherr.New(mesherr.NoHealthyUpstream, "%s has no healthy instance", mesherr.Dest(service, version))
		e.Service, e.Version = service, version
		return e
	}
	// The circuit breaker: over the cluster's max_requests the request is
	// answered at once, never queued.
	cb, n, ok := h.p.breakers.Acquire(cluster.Name, cluster.MaxRequests)
	if !ok {
		inflight.Done()
		h.p.metrics.CircuitBreakerOverflow(cluster.Name)
		e := mesherr.New(mesherr.Overloaded, "%s: %d requests in flight, the limit (TrafficPolicy connectionPool.maxRequests)",
			mesherr.Dest(service, version), n)
		e.Service, e.Version = service, version
		return e
	}
	q.breaker = cb
	q.target = forward.Target{Addr: ep.Address, Service: service, Version: version, Fallbacks: q,
		Timeout: requestTimeout(rt, r)}
	q.cluster, q.inflight = cluster, inflight
	if cluster.Outlier != nil {
		q.outliers, q.target.Outcomes = h.p.outliers, q
	}
	return nil
}

// table is the route table of this handler's listener in snap.
func (h *routeHandler) table(snap *model.Snapshot) (*model.RouteTable, *mesherr.Error) {
	if snap == nil {
		return nil, mesherr.New(mesherr.NoRoute, "no configuration from the control plane at %s yet", h.p.cfg.ControlAddr)
	}
	l := snap.Listeners[h.listener]
	if l == nil {
		return nil, mesherr.New(mesherr.NoRoute, "the configuration has no %q listener", h.listener)
	}
	t := snap.RouteTables[l.RouteTable]
	if t == nil {
		return nil, mesherr.New(mesherr.NoRoute, "the configuration has no route table %q", l.RouteTable)
	}
	return t, nil
}

// requestTimeout is how long r may take on rt: the route's timeout, or a
// gRPC request's grpc-timeout when the route honours it
// (max_stream_duration.grpc_timeout_header_max) and it is shorter — capped
// by that maximum unless 0. Zero is no limit.
func requestTimeout(rt *model.Route, r *http.Request) time.Duration {
	d := rt.Timeout
	if !rt.GRPCTimeout || !mesherr.IsGRPC(r) {
		return d
	}
	v := r.Header["Grpc-Timeout"]
	if len(v) == 0 {
		return d
	}
	g, ok := parseGRPCTimeout(v[0])
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

// parseGRPCTimeout reads a grpc-timeout value: at most 8 digits and a unit
// (H, M, S, m, u, n), as the gRPC over HTTP/2 spec says. A zero timeout
// is taken as 1 ns (already expired), not as no limit.
func parseGRPCTimeout(s string) (time.Duration, bool) {
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
	if n > uint64(maxGRPCTimeout/unit) {
		d = maxGRPCTimeout
	}
	return max(d, 1), true
}

// maxGRPCTimeout caps a grpc-timeout (99999999 hours would overflow a
// Duration).
const maxGRPCTimeout = 100 * 365 * 24 * time.Hour
