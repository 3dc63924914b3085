package control

import (
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// MaxRequestBytes is the largest request body the HTTP API reads, on any
// endpoint: bigger bodies are answered 413 before they are read.
const MaxRequestBytes = MaxApplyBytes

// writeContentTypes are the media types a write (POST, PUT, PATCH, or a
// DELETE with a body) must declare. A browser sends a cross-site request
// without a CORS preflight only as text/plain, a form or multipart, so
// requiring one of these means a web page cannot write without passing the
// Origin check.
var writeContentTypes = []string{"application/json", "application/yaml", "application/x-yaml", "text/yaml"}

// httpLimits bound each HTTP API connection in time and header size, so
// that a slow or endless request cannot hold a connection and a goroutine.
type httpLimits struct {
	readHeader, read, write, idle time.Duration
	maxHeaderBytes                int
}

var defaultHTTPLimits = httpLimits{
	readHeader:     10 * time.Second,
	read:           30 * time.Second, // the whole request, body included
	write:          60 * time.Second,
	idle:           2 * time.Minute,
	maxHeaderBytes: 64 << 10, // larger heads are answered 431 by net/http
}

// newHTTPServer is the HTTP API's server with its limits.
func newHTTPServer(h http.Handler, lim httpLimits, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: lim.readHeader,
		ReadTimeout:       lim.read,
		WriteTimeout:      lim.write,
		IdleTimeout:       lim.idle,
		MaxHeaderBytes:    lim.maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.With("component", "api").Handler(), slog.LevelWarn),
	}
}

// guard is the HTTP API's front door. In order, it checks:
//
//   - Host: only names the API is meant to be reached by (DNS rebinding: a
//     page of evil.example whose name now resolves to 127.0.0.1 sends
//     Host: evil.example). 421 otherwise.
//   - Origin, when present: the API's own origin or a configured one. 403
//     otherwise, for every method: a preflight from a refused origin
//     fails, and so does a "simple" cross-site request.
//   - OPTIONS: 204 with Allow (and the CORS headers for an allowed origin).
//   - unknown paths and methods: 404 and 405 as JSON.
//   - writes: a JSON or YAML Content-Type (415 otherwise).
//   - the body: at most MaxRequestBytes (413).
//
// GET /healthz is exempt from the Host and Origin checks: load balancers
// and container health checks send whatever Host they like, and "ok" tells
// a rebinding page nothing.
type guard struct {
	mux *http.ServeMux
	// hosts are the allowed Host names, lower-case, without port.
	hosts map[string]bool
	// anyIP: the API listens on an unspecified address (0.0.0.0, ::), so
	// any IP literal is a valid Host. A DNS rebinding needs a name, so
	// this opens nothing.
	anyIP bool
	// origins are the configured origins, normalised by normOrigin.
	origins map[string]bool
}

// guardConfig is what the guard is built from.
type guardConfig struct {
	listenAddr     string   // the configured HTTP address (may be a name)
	boundAddr      string   // the bound address
	allowedHosts   []string // extra Host names (Config.AllowedHosts)
	allowedOrigins []string // extra origins (Config.AllowedOrigins)
}

func newGuard(mux *http.ServeMux, cfg guardConfig) (*guard, error) {
	g := &guard{mux: mux, hosts: map[string]bool{}, origins: map[string]bool{}}
	for _, h := range []string{"localhost", "127.0.0.1", "::1"} {
		g.hosts[h] = true
	}
	for _, addr := range []string{cfg.listenAddr, cfg.boundAddr} {
		if addr == "" {
			continue
		}
		h := hostOnly(addr)
		if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
			g.anyIP = true
			continue
		}
		g.hosts[h] = true
	}
	for _, raw := range cfg.allowedHosts {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		h := hostOnly(raw)
		if h == "" || strings.ContainsAny(raw, "/ *") {
			return nil, fmt.Errorf("allowed host %q: want a host name or address, without scheme or wildcard", raw)
		}
		g.hosts[h] = true
	}
	for _, o := range cfg.allowedOrigins {
		o = strings.TrimSpace(o)
		if o == "" {
			continue
		}
		n, ok := normOrigin(o)
		if !ok {
			return nil, fmt.Errorf("allowed origin %q: want scheme://host[:port], e.g. https://dash.example.com", o)
		}
		g.origins[n] = true
	}
	return g, nil
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/healthz" && (r.Method == http.MethodGet || r.Method == http.MethodHead) {
		g.mux.ServeHTTP(w, r)
		return
	}
	if msg := g.checkHost(r.Host); msg != "" {
		writeError(w, http.StatusMisdirectedRequest, msg)
		return
	}
	cors := false
	if origin := r.Header.Get("Origin"); origin != "" {
		w.Header().Add("Vary", "Origin")
		var msg string
		if cors, msg = g.checkOrigin(origin, r.Host); msg != "" {
			writeError(w, http.StatusForbidden, msg)
			return
		}
		if cors {
			w.Header().Set("Access-Control-Allow-Origin", origin)
		}
	}
	if r.Method == http.MethodOptions {
		g.options(w, r, cors)
		return
	}
	h, pattern := g.mux.Handler(r)
	if pattern == "" {
		answerUnmatched(w, r, g.mux, h)
		return
	}
	if msg := checkContentType(r); msg != "" {
		writeError(w, http.StatusUnsupportedMediaType, msg)
		return
	}
	if r.ContentLength > MaxRequestBytes {
		writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is over %d bytes (1 MiB)", MaxRequestBytes))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, MaxRequestBytes)
	g.mux.ServeHTTP(w, r) // ServeHTTP, not h: it sets r.PathValue
}

// checkHost says why host is refused, or "" when it is allowed.
func (g *guard) checkHost(host string) string {
	h := hostOnly(host)
	if h == "" {
		return "the request has no Host header"
	}
	if g.hosts[h] {
		return ""
	}
	if ip := net.ParseIP(h); ip != nil && (g.anyIP || ip.IsLoopback()) {
		return ""
	}
	return fmt.Sprintf("host %q is not served here; allowed: %s (control --allowed-hosts)", h, g.allowedHostList())
}

func (g *guard) allowedHostList() string {
	names := make([]string, 0, len(g.hosts)+1)
	for h := range g.hosts {
		names = append(names, h)
	}
	slices.Sort(names)
	if g.anyIP {
		names = append(names, "any IP address")
	}
	return strings.Join(names, ", ")
}

// checkOrigin allows the API's own origin (same scheme, host and port as
// the request, whose Host is already checked) and configured origins; cors
// is true for the latter, which get CORS headers.
func (g *guard) checkOrigin(origin, host string) (cors bool, msg string) {
	n, ok := normOrigin(origin)
	if ok && g.origins[n] {
		return true, ""
	}
	if ok && n == "http://"+withPort(host, "80") {
		return false, ""
	}
	return false, fmt.Sprintf("origin %q may not call this API; only the API's own origin and configured ones may (control --allowed-origins)", origin)
}

// options answers OPTIONS with the path's methods, and a CORS preflight
// from an allowed origin with the CORS headers.
func (g *guard) options(w http.ResponseWriter, r *http.Request, cors bool) {
	h, _ := g.mux.Handler(r) // no OPTIONS patterns: the mux's 405 names the methods
	rec := &statusRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	allow := rec.header.Get("Allow")
	if rec.status == http.StatusNotFound || allow == "" {
		writeError(w, http.StatusNotFound, "no such API endpoint: "+r.URL.Path)
		return
	}
	allow += ", OPTIONS"
	w.Header().Set("Allow", allow)
	if cors && r.Header.Get("Access-Control-Request-Method") != "" {
		w.Header().Set("Access-Control-Allow-Methods", allow)
		w.Header().Set("Access-Control-Allow-Headers", "Content-Type")
		w.Header().Set("Access-Control-Max-Age", "600")
	}
	w.WriteHeader(http.StatusNoContent)
}

// checkContentType says why a write's Content-Type is refused, or "".
// A DELETE without a body needs none: browsers preflight every DELETE.
func checkContentType(r *http.Request) string {
	switch r.Method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
	case http.MethodDelete:
		if r.ContentLength == 0 {
			return ""
		}
	default:
		return ""
	}
	want := strings.Join(writeContentTypes, ", ")
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return fmt.Sprintf("%s needs a Content-Type: one of %s", r.Method, want)
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil || !slices.Contains(writeContentTypes, mt) {
		return fmt.Sprintf("Content-Type %q is not accepted for %s; send one of %s", ct, r.Method, want)
	}
	return ""
}

// hostOnly lower-cases a Host header or address and drops its port,
// brackets and trailing dot: "[::1]:15000" → "::1", "LocalHost." →
// "localhost".
func hostOnly(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	} else {
		h = strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")
	}
	return strings.TrimSuffix(strings.ToLower(h), ".")
}

// withPort returns host:port in canonical form (lower case, brackets
// for IPv6), adding def when host has no port.
func withPort(host, def string) string {
	port := def
	if _, p, err := net.SplitHostPort(host); err == nil && p != "" {
		port = p
	}
	return net.JoinHostPort(hostOnly(host), port)
}

// normOrigin canonicalises an origin to scheme://host:port (explicit
// port); ok is false for anything but an http(s) origin ("null",
// "file://", a path).
func normOrigin(o string) (string, bool) {
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
		return "", false
	}
	def := "80"
	if u.Scheme == "https" {
		def = "443"
	}
	return u.Scheme + "://" + withPort(u.Host, def), true
}
