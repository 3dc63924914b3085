// Package filter is the proxy's HTTP filter chain. Every request on a
// listener goes through the http filters the control plane lists in the
// listener's HttpConnectionManager, in order, as in Envoy; the last one is
// terminal (the router, which sends the request on). A filter may look at
// and change the request, answer it itself (a denial, a CORS preflight, a
// rate-limit rejection), or pass it on and look at the answer.
//
// Filters live in their own packages under internal/proxy/filters, each
// with its config type, the converter from its xDS typed_config, tests and
// a README, and register themselves by their Envoy name (Register), as
// Caddy modules and CoreDNS plugins do. A filter gets what it needs
// (Deps), never the whole proxy.
//
// A chain is built once per listener configuration, not per request: a
// request costs one pointer per filter it passes through.
package filter

import (
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/anypb"

	"trellis.dev/trellis/internal/proxy/balancer"
	"trellis.dev/trellis/internal/proxy/breaker"
	"trellis.dev/trellis/internal/proxy/forward"
	"trellis.dev/trellis/internal/proxy/mesherr"
	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/proxy/outlier"
)

// Request is one HTTP request on its way through a chain, and what the
// filters learn about it. The listener fills in the first part before the
// chain runs; the router fills in the upstream part as it picks.
type Request struct {
	// HTTP is the request. Filters before the router may change its
	// headers; the router sends what they leave.
	HTTP *http.Request
	// Response is where the answer goes. It records the status.
	Response Recorder
	// Start is when the request arrived.
	Start time.Time
	// Snapshot is the configuration the request uses from start to end.
	Snapshot *model.Snapshot
	// Route is the route the request matched; nil when none did, and
	// RouteErr then says why (the router answers it, so that the filters
	// before it — a policy, CORS — still see the request).
	Route    *model.Route
	RouteErr *mesherr.Error

	// Set by the router: the destination (also when no instance could be
	// picked), the cluster as the balancer saw it, the instance, and the
	// attempt (1 for the first try).
	Service, Version string
	Cluster          *model.Cluster
	Endpoint         string
	Attempt          int

	// Err is the mesh error the request was answered with, if any.
	Err *mesherr.Error
}

// Fail answers the request with the mesh error e and remembers it.
func (r *Request) Fail(e *mesherr.Error) {
	r.Err = e
	mesherr.Write(&r.Response, r.HTTP, e)
}

// Handler serves a request: a chain, or what is left of it.
type Handler interface{ Serve(r *Request) }

// Filter is one link of a chain. It calls next.Serve(r) to pass the
// request on, or answers it itself (r.Fail, or writing to r.Response) to
// end the chain there. A terminal filter never calls next.
type Filter interface {
	Serve(r *Request, next Handler)
}

// Upstreams is the proxy's state per cluster and endpoint, which outlives
// configuration snapshots: the status that health checking and outlier
// ejection set, the balancers' state and the circuit breakers' counters.
// The router uses it; balancers only select, health and ejection only set
// status.
type Upstreams interface {
	// View is c with the endpoints that are not to get traffic now
	// marked not healthy; nil when c is nil.
	View(c *model.Cluster) *model.Cluster
	// Pick selects a healthy endpoint of c for key; inflight, when not
	// nil, must be Done when the request ends.
	Pick(c *model.Cluster, key balancer.HashKey) (ep model.Endpoint, inflight *balancer.Inflight, ok bool)
	// Acquire counts one more request to c against its circuit breaker;
	// over the limit, ok is false and n is the count in flight.
	Acquire(c *model.Cluster) (counter *breaker.Counter, n int64, ok bool)
	// Report tells outlier detection how an exchange with addr went.
	Report(c *model.Cluster, addr string, o outlier.Outcome)
	// Budget is c's retry budget.
	Budget(c *model.Cluster) *breaker.Budget
	// Retried counts a retry to c its budget allowed (ok) or refused.
	Retried(c *model.Cluster, ok bool)
}

// Deps are what a listener lends the filters of its chain.
type Deps struct {
	Log *slog.Logger
	// Listener is the model listener's name (meshxds.ListenerOutbound…).
	Listener string
	// Upstreams and Forwarder are for the router.
	Upstreams Upstreams
	Forwarder *forward.Forwarder
}

// Factory is one kind of filter: its Envoy name and typed_config type URL,
// the converter that checks a config (Convert gets nil when the filter
// was given by name only), and the constructor of a filter from a config
// Convert returned. Terminal filters must come last in a chain.
type Factory struct {
	Name     string
	TypeURL  string
	Terminal bool
	Convert  func(typed *anypb.Any) (config any, err error)
	New      func(config any, deps Deps) Filter
}

var factories sync.Map // name → Factory

// Register makes a filter kind known: the listener converter accepts it in
// http_filters (model.RegisterHTTPFilterType) and Build constructs it.
// Filter packages call it from init.
func Register(f Factory) {
	if f.Name == "" || f.TypeURL == "" || f.New == nil {
		panic(fmt.Sprintf("filter: incomplete factory %+v", f))
	}
	model.RegisterHTTPFilterType(model.HTTPFilterType{Name: f.Name, TypeURL: f.TypeURL, Terminal: f.Terminal, Convert: f.Convert})
	factories.Store(f.Name, f)
}

// Build links the http filters of l into a chain. Every filter of a
// converted listener is registered (conversion looked it up), so an
// unknown name is a programming error, reported as one.
func Build(l *model.Listener, deps Deps) (Handler, error) {
	var next Handler = unanswered{}
	for i := len(l.HTTPFilters) - 1; i >= 0; i-- {
		hf := l.HTTPFilters[i]
		v, ok := factories.Load(hf.Name)
		if !ok {
			return nil, fmt.Errorf("listener %q: http filter %q is not registered", l.Name, hf.Name)
		}
		next = &link{f: v.(Factory).New(hf.Config, deps), next: next}
	}
	return next, nil
}

// link runs one filter with the rest of the chain as its next.
type link struct {
	f    Filter
	next Handler
}

func (l *link) Serve(r *Request) { l.f.Serve(r, l.next) }

// unanswered ends every chain: a request reaches it only if the terminal
// filter passed it on, which it must not.
type unanswered struct{}

func (unanswered) Serve(r *Request) {
	r.Fail(mesherr.New(mesherr.NoRoute, "the filter chain ended without an answer"))
}
