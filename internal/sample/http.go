package sample

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
)

// maxSleep caps ?sleep= so a typo cannot park a request for hours.
const maxSleep = 10 * time.Second

// echoHandler answers every path with a JSON description of the request, and
// dispatches gRPC (content-type application/grpc*) to an in-process
// grpc.Server through its ServeHTTP.
type echoHandler struct {
	cfg    EchoConfig
	log    *slog.Logger
	grpc   *grpc.Server
	health *health.Server
	client *http.Client // for /call; goes through HTTP_PROXY
}

var _ http.Handler = (*echoHandler)(nil)

// echoReply is the JSON body of every HTTP answer. A struct, not a map, so the
// field order is stable for people reading curl output.
type echoReply struct {
	Service  string            `json:"service"`
	Version  string            `json:"version"`
	Method   string            `json:"method"`
	Path     string            `json:"path"`
	Query    string            `json:"query"`
	Host     string            `json:"host"`
	Proto    string            `json:"proto"`
	Addr     string            `json:"addr,omitempty"` // local address that served it: tells instances apart
	Headers  map[string]string `json:"headers"`
	Upstream *upstreamReply    `json:"upstream,omitempty"`
}

func newEchoHandler(cfg EchoConfig) *echoHandler {
	gs, hs := newGRPCServer(cfg)
	return &echoHandler{cfg: cfg, log: cfg.Logger, grpc: gs, health: hs, client: newCallClient()}
}

func (h *echoHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.log.Debug("request", "method", r.Method, "path", r.URL.Path, "proto", r.Proto)
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/grpc") {
		// grpc.Server itself rejects non-HTTP/2 requests with a clear error.
		h.grpc.ServeHTTP(w, r)
		return
	}

	if h.cfg.HealthFile != "" && r.URL.Path == "/healthz" {
		if _, err := os.Stat(h.cfg.HealthFile); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "unhealthy: " + h.cfg.HealthFile + " does not exist"})
			return
		}
	}
	q := r.URL.Query()
	if r.URL.Path == "/call" && q.Get("to") == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "/call needs ?to=SERVICE[&path=/...]"})
		return
	}
	status := http.StatusOK
	if h.cfg.FailStatus != 0 {
		status = h.cfg.FailStatus
	}
	if s := q.Get("status"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 200 || n > 599 {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("status %q: want an integer 200-599", s)})
			return
		}
		status = n
	}
	if s := q.Get("sleep"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 || d > maxSleep {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("sleep %q: want a Go duration 0-%s", s, maxSleep)})
			return
		}
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return // the caller is gone; nobody to answer
		}
	}

	reply := h.describe(r)
	if r.URL.Path == "/call" {
		up, err := h.call(r)
		if err != nil {
			h.log.Warn("call failed", "to", q.Get("to"), "err", err)
			writeJSON(w, http.StatusBadGateway, map[string]string{"error": err.Error()})
			return
		}
		reply.Upstream = up
	}
	writeJSON(w, status, reply)
}

// describe is the echo part of every answer.
func (h *echoHandler) describe(r *http.Request) *echoReply {
	rep := &echoReply{
		Service: h.cfg.Service,
		Version: h.cfg.Version,
		Method:  r.Method,
		Path:    r.URL.Path,
		Query:   r.URL.RawQuery,
		Host:    r.Host,
		Proto:   r.Proto,
		Headers: make(map[string]string, len(r.Header)),
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		rep.Addr = a.String()
	}
	// Lower-case names: HTTP/2 sends them that way, and it matches gRPC metadata.
	for name, vals := range r.Header {
		if len(vals) > 0 {
			rep.Headers[strings.ToLower(name)] = vals[0]
		}
	}
	return rep
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the status is already sent; a write error means the client left
}
