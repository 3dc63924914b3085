package control

import (
	"context"
	"log/slog"
	"net/http"
	"sync"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/registry"
	"trellis.dev/trellis/internal/store"
	"trellis.dev/trellis/internal/translate"
	"trellis.dev/trellis/internal/xdsserver"
)

// proxyView is what the HTTP API reads from the xDS server.
type proxyView interface {
	Proxies() []xdsserver.ProxyStatus
	Version() string
}

// apiHandler serves the HTTP API under /v1/.
type apiHandler struct {
	store *store.Store
	reg   *registry.Registry
	xds   proxyView
	log   *slog.Logger
	sizer *applySizer
	// applyMu makes the size check and the store's write of an apply one
	// step for the applies of this process. Two control planes sharing an
	// etcd can still both pass the check and together cross the limit.
	applyMu sync.Mutex
}

// apiConfig configures the HTTP API.
type apiConfig struct {
	guard               guardConfig
	maxRouteConfigBytes int // 0: DefaultMaxRouteConfigBytes
}

// collections maps each resource kind's URL collection to its kind. A new
// kind gets GET/DELETE endpoints by being added here.
var collections = map[string]string{
	"routes":          api.KindRoute,
	"trafficpolicies": api.KindTrafficPolicy,
}

func newAPI(st *store.Store, reg *registry.Registry, xds proxyView, log *slog.Logger, cfg apiConfig) (http.Handler, error) {
	if cfg.maxRouteConfigBytes == 0 {
		cfg.maxRouteConfigBytes = DefaultMaxRouteConfigBytes
	}
	a := &apiHandler{store: st, reg: reg, xds: xds, log: log.With("component", "api")}
	a.sizer = &applySizer{
		read:  func(ctx context.Context) (translate.Input, error) { return readInput(ctx, st, reg) },
		limit: cfg.maxRouteConfigBytes,
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/apply", a.apply)
	for coll, kind := range collections {
		mux.HandleFunc("GET /v1/"+coll, a.listResources(kind))
		mux.HandleFunc("GET /v1/"+coll+"/{name}", a.getResource(kind))
		mux.HandleFunc("DELETE /v1/"+coll+"/{name}", a.deleteResource(kind))
	}
	mux.HandleFunc("GET /v1/instances", a.listInstances)
	mux.HandleFunc("DELETE /v1/instances/{id}", a.deleteInstance)
	mux.HandleFunc("GET /v1/services", a.listServices)
	mux.HandleFunc("GET /v1/services/{name}", a.getService)
	mux.HandleFunc("GET /v1/proxies", a.proxies)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write([]byte("ok\n"))
	})
	return newGuard(mux, cfg.guard)
}

// list is the shape of every collection answer.
type list[T any] struct {
	Items []T `json:"items"`
}

// proxiesAnswer pairs the connected proxies with the version they should
// run: a proxy is up to date when it is synced at configVersion.
type proxiesAnswer struct {
	ConfigVersion string                  `json:"configVersion"`
	Items         []xdsserver.ProxyStatus `json:"items"`
}

func (a *apiHandler) proxies(w http.ResponseWriter, _ *http.Request) {
	items := a.xds.Proxies()
	if items == nil {
		items = []xdsserver.ProxyStatus{}
	}
	writeJSON(w, http.StatusOK, proxiesAnswer{ConfigVersion: a.xds.Version(), Items: items})
}
