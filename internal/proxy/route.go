package proxy

import (
	"net/http"
	"sync/atomic"
	"time"

	"trellis.dev/trellis/internal/proxy/filter"
	_ "trellis.dev/trellis/internal/proxy/filters" // registers every http filter
	"trellis.dev/trellis/internal/proxy/mesherr"
	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/proxy/router"
	"trellis.dev/trellis/internal/proxy/tunnel"
)

// routeHandler serves the outbound and the gateway listener, as Envoy's
// HTTP connection manager does: it finds the request's route in the
// listener's route table and runs the listener's http filter chain, whose
// last filter, the router, picks an instance and forwards.
type routeHandler struct {
	p         *Proxy
	listener  string         // model listener name: meshxds.ListenerOutbound or ListenerGateway
	direction string         // metrics label
	tunnels   *tunnel.Server // CONNECT is served only when set
	chain     atomic.Pointer[builtChain]
}

// builtChain is the filter chain built for one model.Listener; a new
// configuration's listener gets a new chain, built on its first request.
type builtChain struct {
	listener *model.Listener
	head     filter.Handler
}

func (h *routeHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodConnect {
		// connect.go: routed (the requests inside come back to ServeHTTP
		// one by one) or relayed as TCP; refused without tunnels.
		h.serveConnect(w, r)
		return
	}
	req := &filter.Request{HTTP: r, Response: filter.Recorder{ResponseWriter: w}, Start: time.Now()}
	req.Snapshot = h.p.snapshot.Load()
	l, err := h.listenerOf(req.Snapshot)
	if err == nil {
		req.Route, req.RouteErr = h.route(req.Snapshot, l, r)
		var head filter.Handler
		if head, err = h.chainOf(l); err == nil {
			head.Serve(req)
		}
	}
	if err != nil {
		req.Fail(err)
	}
	if e := req.Err; e != nil {
		h.p.log.Debug("request refused", "direction", h.direction, "code", e.Code, "error", e.Msg,
			"host", r.Host, "path", r.URL.Path)
	}
	// Unrouted requests count with empty service and version.
	h.p.metrics.ObserveRequest(h.direction, req.Service, req.Version, req.Response.Status(), time.Since(req.Start))
}

// chainOf is l's filter chain, built once per listener configuration.
func (h *routeHandler) chainOf(l *model.Listener) (filter.Handler, *mesherr.Error) {
	if c := h.chain.Load(); c != nil && c.listener == l {
		return c.head, nil
	}
	head, err := filter.Build(l, filter.Deps{Log: h.p.log, Listener: h.listener,
		Upstreams: upstreams{h.p}, Forwarder: h.p.toMesh})
	if err != nil {
		return nil, mesherr.Wrap(err, mesherr.NoRoute, "%v", err)
	}
	h.chain.Store(&builtChain{listener: l, head: head})
	return head, nil
}

// route finds r's route in l's route table.
func (h *routeHandler) route(snap *model.Snapshot, l *model.Listener, r *http.Request) (*model.Route, *mesherr.Error) {
	table, merr := tableOf(snap, l)
	if merr != nil {
		return nil, merr
	}
	_, rt, err := router.Find(table, router.FromHTTP(r))
	if err != nil {
		e, ok := mesherr.As(err)
		if !ok {
			e = mesherr.Wrap(err, mesherr.NoRoute, "%v", err)
		}
		return nil, e
	}
	return rt, nil
}

// listenerOf is this handler's listener in snap.
func (h *routeHandler) listenerOf(snap *model.Snapshot) (*model.Listener, *mesherr.Error) {
	if snap == nil {
		return nil, mesherr.New(mesherr.NoRoute, "no configuration from the control plane at %s yet", h.p.cfg.ControlAddr)
	}
	l := snap.Listeners[h.listener]
	if l == nil {
		return nil, mesherr.New(mesherr.NoRoute, "the configuration has no %q listener", h.listener)
	}
	return l, nil
}

// table is the route table of this handler's listener in snap.
func (h *routeHandler) table(snap *model.Snapshot) (*model.RouteTable, *mesherr.Error) {
	l, err := h.listenerOf(snap)
	if err != nil {
		return nil, err
	}
	return tableOf(snap, l)
}

// tableOf is l's route table in snap.
func tableOf(snap *model.Snapshot, l *model.Listener) (*model.RouteTable, *mesherr.Error) {
	t := snap.RouteTables[l.RouteTable]
	if t == nil {
		return nil, mesherr.New(mesherr.NoRoute, "the configuration has no route table %q", l.RouteTable)
	}
	return t, nil
}
