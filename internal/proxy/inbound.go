package proxy

import (
	"net/http"
	"time"

	"trellis.dev/trellis/internal/proxy/filter"
	"trellis.dev/trellis/internal/proxy/forward"
	"trellis.dev/trellis/internal/proxy/mesherr"
	"trellis.dev/trellis/internal/proxy/stats"
)

// inboundHandler takes mesh HTTP traffic from peers to the app on
// 127.0.0.1:AppPort. Every response says which service and version answered
// (x-trellis-service, x-trellis-version), errors made here included. It
// sees only the connections found to speak HTTP (or all of them when the
// app declared an HTTP protocol); TLS and other TCP are relayed to the app
// before any HTTP server reads them (inbound_detect.go).
//
// The target is the app (forward.Target.App): a failed connect to it is
// answered 503 app_unavailable (nothing reached the app, so the calling
// sidecar sends the request to another instance), a failure after the
// connect stays upstream_reset, and an x-trellis-error header the app sets
// itself is removed, so that no app can make its callers send requests
// again. (Callers believe app_unavailable from any peer for now; with
// mTLS, issue 10, only from authenticated peer sidecars.)
type inboundHandler struct {
	p      *Proxy
	target *forward.Target // the app: fixed for the proxy's life
}

func newInboundHandler(p *Proxy) *inboundHandler {
	return &inboundHandler{p: p, target: &forward.Target{
		Addr:    appAddr(&p.cfg),
		Service: p.cfg.Service,
		Version: p.cfg.Version,
		App:     true,
	}}
}

func (h *inboundHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := &h.p.cfg
	if r.Method == http.MethodConnect {
		h.p.toApp.SetHeaders(w.Header())
		mesherr.Write(w, r, mesherr.New(mesherr.MethodNotAllowed,
			"CONNECT is not accepted on the inbound listener: it forwards peers' requests to the app"))
		return
	}
	start := time.Now()
	rec := &filter.Recorder{ResponseWriter: w}
	h.p.toApp.Forward(rec, r, h.target)
	h.p.metrics.ObserveRequest(stats.Inbound, c.Service, c.Version, rec.Status(), time.Since(start))
}
