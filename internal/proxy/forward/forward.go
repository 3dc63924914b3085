// Package forward sends a request on to the instance the router and the
// balancer chose, keeping its protocol (HTTP/1.1 stays HTTP/1.1, HTTP/2 and
// so gRPC stay h2c), its Host/:authority, its trailers and its streaming.
// Connecting is retried on other instances when nothing was sent yet.
package forward

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strings"

	"trellis.dev/trellis/internal/proxy/mesherr"
)

// Target says where one request goes.
type Target struct {
	// Addr is the host:port of the chosen instance.
	Addr string
	// Fallbacks, when set, returns other instances to try, in order, if
	// connecting to Addr fails. Called only then.
	Fallbacks func() []string
	// Service and Version name the destination in error messages.
	Service, Version string
}

func (t *Target) desc() string { return mesherr.Dest(t.Service, t.Version) }

type targetKey struct{}

func targetFrom(ctx context.Context) *Target {
	t, _ := ctx.Value(targetKey{}).(*Target)
	return t
}

// Options configure a Forwarder.
type Options struct {
	Logger *slog.Logger
	// SetXForwarded sets X-Forwarded-For/-Host/-Proto from the client
	// connection (the gateway, facing the outside). Otherwise the request's
	// own X-Forwarded-* headers pass through unchanged (sidecars).
	SetXForwarded bool
	// ResponseHeaders are set on every response, the instance's (replacing
	// what it sent under those names) and the errors made here.
	ResponseHeaders http.Header
	// MaxFallbacks is how many other instances a failed connect may try;
	// 0 means 2.
	MaxFallbacks int
}

// sharedBuffers serves every Forwarder of the process.
var sharedBuffers = newBufferPool()

// Forwarder is a reverse proxy whose destination is chosen per request.
type Forwarder struct {
	proxy     *httputil.ReverseProxy
	transport *Transport
	log       *slog.Logger
	headers   http.Header
}

// New returns a Forwarder with its own connection pools.
func New(o Options) *Forwarder {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{transport: NewTransport(o.Logger), log: o.Logger, headers: o.ResponseHeaders}
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			t := targetFrom(pr.In.Context())
			pr.Out.URL.Scheme = "http"
			pr.Out.URL.Host = t.Addr
			pr.Out.Host = pr.In.Host // the original Host/:authority, not the instance address
			if o.SetXForwarded {
				pr.SetXForwarded()
			} else {
				// Rewrite stripped them; a sidecar is transparent to them.
				for _, k := range []string{"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
					if v, ok := pr.In.Header[k]; ok {
						pr.Out.Header[k] = v
					}
				}
			}
			// Proxy-* are for us (Proxy-Authorization, Proxy-Connection…),
			// never for the instance.
			for k := range pr.Out.Header {
				if strings.HasPrefix(k, "Proxy-") {
					delete(pr.Out.Header, k)
				}
			}
		},
		Transport:      f.transport,
		BufferPool:     sharedBuffers,
		ModifyResponse: f.modifyResponse,
		ErrorHandler:   f.handleError,
		// FlushInterval 0: ReverseProxy already flushes at once when the
		// response has no Content-Length (gRPC, streaming), which is what
		// streaming needs; fixed-length bodies are buffered.
		ErrorLog: slog.NewLogLogger(o.Logger.Handler(), slog.LevelDebug),
	}
	f.transport.maxFallbacks = o.MaxFallbacks
	if f.transport.maxFallbacks == 0 {
		f.transport.maxFallbacks = 2
	}
	return f
}

// Forward sends r to t and copies the answer to w. Failures are written as
// mesh errors.
func (f *Forwarder) Forward(w http.ResponseWriter, r *http.Request, t *Target) {
	f.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), targetKey{}, t)))
}

// CloseIdleConnections closes pooled connections not in use.
func (f *Forwarder) CloseIdleConnections() { f.transport.CloseIdleConnections() }

// StatusClientClosedRequest is recorded when the client went away before an
// answer (nginx's 499); nobody reads it but the metrics.
const StatusClientClosedRequest = 499

func (f *Forwarder) modifyResponse(res *http.Response) error {
	for k, v := range f.headers {
		res.Header[k] = v
	}
	return nil
}

// SetHeaders sets the forwarder's ResponseHeaders on h, for responses made
// outside of it.
func (f *Forwarder) SetHeaders(h http.Header) {
	for k, v := range f.headers {
		h[k] = v
	}
}

func (f *Forwarder) handleError(w http.ResponseWriter, r *http.Request, err error) {
	f.SetHeaders(w.Header())
	if r.Context().Err() != nil && errors.Is(err, context.Canceled) {
		w.WriteHeader(StatusClientClosedRequest)
		return
	}
	e, ok := mesherr.As(err)
	if !ok {
		t := targetFrom(r.Context())
		e = mesherr.Wrap(err, mesherr.UpstreamReset, "%s at %s failed after the request was sent: %s",
			t.desc(), t.Addr, rootCause(err))
	}
	f.log.Debug("forward failed", "code", e.Code, "error", e.Msg, "host", r.Host, "path", r.URL.Path)
	mesherr.Write(w, r, e)
}

// rootCause is the innermost error ("connection refused", "i/o timeout"),
// which says more to a reader than the wrapping layers.
func rootCause(err error) string {
	for {
		u := errors.Unwrap(err)
		if u == nil {
			return err.Error()
		}
		err = u
	}
}
