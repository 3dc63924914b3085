// Package router is the terminal http filter, envoy.filters.http.router:
// it sends a request to an instance of the destination its route chose
// and copies the answer back. It picks the cluster by the route's weights,
// an endpoint by the cluster's balancer among those health checking and
// outlier detection left healthy, counts the request against the
// cluster's circuit breaker, sets the route's deadline, forwards, and
// tells outlier detection how the exchange went.
package router

import (
	"context"
	"fmt"
	"net/http"

	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/balancer"
	"trellis.dev/trellis/internal/proxy/breaker"
	"trellis.dev/trellis/internal/proxy/filter"
	"trellis.dev/trellis/internal/proxy/forward"
	"trellis.dev/trellis/internal/proxy/mesherr"
	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/proxy/outlier"
	routing "trellis.dev/trellis/internal/proxy/router"
)

// Name is the filter's Envoy name.
const Name = "envoy.filters.http.router"

// TypeURL is its typed_config's type.
var TypeURL = "type.googleapis.com/" + string(proto.MessageName(&routerv3.Router{}))

func init() {
	filter.Register(filter.Factory{Name: Name, TypeURL: TypeURL, Terminal: true, Convert: Convert, New: New})
}

// Config is the router's configuration. It has no settings yet: retries,
// timeouts and balancing come from routes and clusters.
type Config struct{}

// acceptedFields of envoy.extensions.filters.http.router.v3.Router: the
// ones that change nothing the proxy does (statistics and tracing knobs,
// and the x-envoy-* headers the proxy never sets). Any other is refused,
// so that a config relying on it is NACKed rather than silently ignored.
var acceptedFields = map[protoreflect.Name]bool{
	"dynamic_stats": true, "start_child_span": true, "suppress_envoy_headers": true,
}

// Convert checks a Router typed_config (nil when the filter was named
// without one).
func Convert(typed *anypb.Any) (any, error) {
	if typed == nil {
		return Config{}, nil
	}
	var m routerv3.Router
	if err := anypb.UnmarshalTo(typed, &m, proto.UnmarshalOptions{}); err != nil {
		return nil, fmt.Errorf("cannot decode: %v", err)
	}
	var bad protoreflect.Name
	m.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, _ protoreflect.Value) bool {
		if !acceptedFields[fd.Name()] {
			bad = fd.Name()
			return false
		}
		return true
	})
	if bad != "" {
		return nil, fmt.Errorf("%s: unsupported field", bad)
	}
	return Config{}, nil
}

// New returns the router of one listener.
func New(_ any, deps filter.Deps) filter.Filter {
	return &routerFilter{up: deps.Upstreams, fwd: deps.Forwarder}
}

type routerFilter struct {
	up  filter.Upstreams
	fwd *forward.Forwarder
}

// maxFallbacks is how many other instances a failed connect tries.
const maxFallbacks = 2

func (f *routerFilter) Serve(r *filter.Request, _ filter.Handler) {
	x, err := f.pick(r)
	if err != nil {
		r.Fail(err)
		return
	}
	defer x.inflight.Done() // a least-request cluster's count; also when Forward aborts with a panic
	defer x.breaker.Release()
	hr := r.HTTP
	if d := x.target.Timeout; d > 0 {
		// The route's timeout (or a shorter grpc-timeout), from the
		// request's arrival: forward answers 504 upstream_timeout when
		// it passes.
		ctx, cancel := context.WithDeadline(hr.Context(), r.Start.Add(d))
		defer cancel()
		hr = hr.WithContext(ctx)
	}
	r.Attempt = 1
	if p := r.Route.Retry; p != nil && p.NumRetries > 0 {
		// The cluster's retry budget counts the requests that may retry.
		x.req = r
		x.budget, x.retryBudget = f.up.Budget(r.Cluster), model.DefaultRetryBudget
		if b := r.Cluster.RetryBudget; b != nil {
			x.retryBudget = *b
		}
		x.budget.Begin()
		defer func() { x.budget.End(x.retries) }()
		x.target.Retry, x.target.Retries = p, x
	}
	f.fwd.Forward(&r.Response, hr, &x.target)
	if r.Cluster.Outlier != nil && !x.connectFailed {
		// After a failed connect the answer may come from a fallback
		// instance: only the failed connects (ConnectFailed) count.
		f.up.Report(r.Cluster, r.Endpoint, outlier.Outcome{Status: r.Response.Status()})
	}
}

// pick chooses where r goes, all from r's snapshot: the cluster by the
// route's weights, the endpoint by its balancer; then the circuit
// breaker. It fills in r's upstream part.
func (f *routerFilter) pick(r *filter.Request) (*exchange, *mesherr.Error) {
	if r.RouteErr != nil {
		return nil, r.RouteErr
	}
	rt := r.Route
	name, ok := routing.Pick(rt)
	if !ok {
		return nil, mesherr.New(mesherr.NoRoute, "route %q for host %q has no destination", rt.Name, routing.NormalizeHost(r.HTTP.Host))
	}
	r.Service, r.Version = meshxds.SplitClusterName(name)
	cluster := f.up.View(r.Snapshot.Clusters[name])
	if cluster == nil {
		return nil, mesherr.New(mesherr.NoHealthyUpstream, "%s is not known to this proxy", mesherr.Dest(r.Service, r.Version))
	}
	r.Cluster = cluster
	key, cookies := balancer.KeyOfCreating(rt.HashPolicies, r.HTTP)
	if cookies != nil {
		r.Response.OnHeader(func(_ int, h http.Header) {
			for _, c := range cookies {
				h.Add("Set-Cookie", c.String())
			}
		})
	}
	ep, inflight, ok := f.up.Pick(cluster, key)
	if !ok {
		return nil, mesherr.New(mesherr.NoHealthyUpstream, "%s has no healthy instance", mesherr.Dest(r.Service, r.Version))
	}
	// The circuit breaker: over the cluster's max_requests the request is
	// answered at once, never queued.
	cb, n, ok := f.up.Acquire(cluster)
	if !ok {
		inflight.Done()
		return nil, mesherr.New(mesherr.Overloaded, "%s: %d requests in flight, the limit (TrafficPolicy connectionPool.maxRequests)", mesherr.Dest(r.Service, r.Version), n)
	}
	r.Endpoint = ep.Address
	x := &exchange{up: f.up, cluster: cluster, inflight: inflight, breaker: cb, key: key}
	x.target = forward.Target{Addr: ep.Address, Service: r.Service, Version: r.Version, Fallbacks: x,
		Timeout: RequestTimeout(rt, r.HTTP)}
	if cluster.Outlier != nil {
		x.target.Outcomes = x
	}
	return x, nil
}

// exchange is the router's state for one request, in one allocation: the
// target, and the cluster to find other instances in when connecting
// fails (it is the target's Fallbacks and Outcomes, so no closure is
// allocated per request for them).
type exchange struct {
	target   forward.Target
	up       filter.Upstreams
	cluster  *model.Cluster
	inflight *balancer.Inflight // nil unless the cluster counts requests in flight
	breaker  *breaker.Counter   // nil unless the cluster has max_requests
	// connectFailed: a connect failed on the way (outlier detection has
	// been told).
	connectFailed bool

	// The request's hash key (a retry's pick uses it too).
	key balancer.HashKey
	// For a route with retries: the request, the cluster's budget, and
	// the retries it allowed.
	req         *filter.Request
	budget      *breaker.Budget
	retryBudget model.RetryBudget
	retries     int
}

// Retry allows one more retry if the cluster's retry budget has room, and
// picks its instance: by the balancer, another than the one that failed
// when the cluster has another (forward.Retrier).
func (x *exchange) Retry(addr string, status int) (string, bool) {
	if x.cluster.Outlier != nil && status != 0 {
		// A failed try counts against its instance; tries without an
		// answer are counted where they fail (ConnectFailed).
		x.up.Report(x.cluster, addr, outlier.Outcome{Status: status})
	}
	ok := x.budget.TryRetry(x.retryBudget.Percent, x.retryBudget.MinConcurrency)
	x.up.Retried(x.cluster, ok)
	if !ok {
		return "", false
	}
	x.retries++
	next := x.nextInstance(addr)
	x.req.Attempt++
	x.req.Endpoint = next
	return next, true
}

// nextInstance is the instance for a retry after one at addr failed: the
// balancer's pick, drawn again (a few times) while it is addr; then any
// other healthy instance; addr itself when it is the only one.
func (x *exchange) nextInstance(addr string) string {
	// The cluster as the request's pick saw it: ejections since are
	// not looked up again.
	view := x.cluster
	for range 3 {
		ep, inflight, ok := x.up.Pick(view, x.key)
		inflight.Done() // the try is counted by the request's own pick
		if !ok {
			break
		}
		if ep.Address != addr {
			return ep.Address
		}
	}
	if others := balancer.Others(view, addr, 1); len(others) > 0 {
		return others[0]
	}
	return addr
}

// ConnectFailed counts a failed connect against the instance at addr.
func (x *exchange) ConnectFailed(addr string) {
	x.connectFailed = true
	x.up.Report(x.cluster, addr, outlier.Outcome{ConnectFailed: true})
}

// Instances are the fallbacks of the chosen instance: up to maxFallbacks
// other healthy instances of its cluster.
func (x *exchange) Instances() []string {
	return balancer.Others(x.cluster, x.target.Addr, maxFallbacks)
}
