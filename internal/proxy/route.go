package proxy

import (
	"net/http"
	"time"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/balancer"
	"trellis.dev/trellis/internal/proxy/forward"
	"trellis.dev/trellis/internal/proxy/mesherr"
	"trellis.dev/trellis/internal/proxy/model"
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
		if h.tunnels == nil {
			http.Error(w, "CONNECT is not accepted on the "+h.listener+" listener", http.StatusMethodNotAllowed)
			return
		}
		// The requests inside the tunnel come back to ServeHTTP one by one.
		h.tunnels.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	rec := &recorder{ResponseWriter: w}
	target, err := h.pick(r)
	if err != nil {
		h.p.log.Debug("request refused", "direction", h.direction, "code", err.Code, "error", err.Msg,
			"host", r.Host, "path", r.URL.Path)
		mesherr.Write(rec, r, err)
	} else {
		h.p.toMesh.Forward(rec, r, target)
	}
	// Unrouted requests count with empty service and version.
	var service, version string
	if target != nil {
		service, version = target.Service, target.Version
	} else if err != nil && err.Code == mesherr.NoHealthyUpstream {
		service, version = err.Service, err.Version
	}
	h.p.metrics.ObserveRequest(h.direction, service, version, rec.status(), time.Since(start))
}

// pick chooses where r goes, using one snapshot throughout: the route, the
// cluster, the instance.
func (h *routeHandler) pick(r *http.Request) (*forward.Target, *mesherr.Error) {
	snap := h.p.snapshot.Load()
	table, merr := h.table(snap)
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
	name, ok := router.Pick(rt)
	if !ok {
		return nil, mesherr.New(mesherr.NoRoute, "route %q for host %q has no destination", rt.Name, router.NormalizeHost(r.Host))
	}
	service, version := meshxds.SplitClusterName(name)
	cluster := snap.Clusters[name]
	if cluster == nil {
		e := mesherr.New(mesherr.NoHealthyUpstream, "%s is not known to this proxy", mesherr.Dest(service, version))
		e.Service, e.Version = service, version
		return nil, e
	}
	ep, ok := h.p.balancer.Pick(cluster)
	if !ok {
		e := mesherr.New(mesherr.NoHealthyUpstream, "%s has no healthy instance", mesherr.Dest(service, version))
		e.Service, e.Version = service, version
		return nil, e
	}
	return &forward.Target{
		Addr:    ep.Address,
		Service: service,
		Version: version,
		Fallbacks: func() []string {
			return balancer.Others(cluster, ep.Address, maxFallbacks)
		},
	}, nil
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
