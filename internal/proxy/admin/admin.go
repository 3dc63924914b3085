// Package admin is a proxy's admin endpoint (loopback by default): whether
// it is ready, what configuration it runs, and its metrics.
//
//	GET /ready             200 "ready" or 503 "not ready: <why>"
//	GET /config_dump       JSON: node, role, current snapshot, xDS status
//	GET /stats/prometheus  the proxy's own metrics registry
package admin

import (
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Source is what the admin endpoint shows of a proxy.
type Source interface {
	// Ready reports readiness, and why not when not.
	Ready() (ok bool, why string)
	// ConfigDump is the value /config_dump encodes as JSON.
	ConfigDump() any
}

// Handler serves the admin endpoints of src with the metrics of reg.
func Handler(src Source, reg *prometheus.Registry) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if ok, why := src.Ready(); !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not ready: %s\n", why)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("GET /config_dump", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(src.ConfigDump()); err != nil {
			// Headers are gone; the truncated body is the best we can do.
			return
		}
	})
	mux.Handle("GET /stats/prometheus", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		fmt.Fprintln(w, "/ready\n/config_dump\n/stats/prometheus")
	})
	return mux
}
