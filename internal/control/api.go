package control

import (
	"log/slog"
	"net/http"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/registry"
	"trellis.dev/trellis/internal/store"
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
}

// collections maps each resource kind's URL collection to its kind. A new
// kind gets GET/DELETE endpoints by being added here.
var collections = map[string]string{
	"routes": api.KindRoute,
}

func newAPI(st *store.Store, reg *registry.Registry, xds proxyView, log *slog.Logger, gc guardConfig) (http.Handler, error) {
	a := &apiHandler{store: st, reg: reg, xds: xds, log: log.With("component", "api")}
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
	return newGuard(mux, gc)
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
