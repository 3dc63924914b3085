// Package forward sends a request on to the instance the router and the
// balancer chose, keeping its protocol (HTTP/1.1 stays HTTP/1.1, HTTP/2 and
// so gRPC stay h2c), its Host/:authority, its trailers and its streaming.
// Connecting is retried on other instances when nothing was sent yet, and
// so is a request whose instance's sidecar answers that it could not reach
// its app (app_unavailable, retry.go).
package forward

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"strings"
	"sync/atomic"
	"time"

	"trellis.dev/trellis/internal/proxy/mesherr"
	"trellis.dev/trellis/internal/proxy/model"
)

// Target says where one request goes.
type Target struct {
	// Addr is the host:port of the chosen instance.
	Addr string
	// Fallbacks, when set, lists other instances to try, in order, if
	// connecting to Addr fails. Asked only then.
	Fallbacks Fallbacks
	// Service and Version name the destination in error messages.
	Service, Version string
	// App says the target is the sidecar's own app (the inbound side): a
	// failed connect is app_unavailable (nothing reached the app; the
	// calling sidecar may send the request to another instance), and an
	// x-trellis-error header the app sets is removed from its responses,
	// so that no app can make callers send its requests again. An
	// app_unavailable answer is acted on only from targets that are not
	// the app (the mesh side), see retry.go.
	App bool
	// Timeout is the request's time limit (the route's timeout, or a
	// shorter grpc-timeout), for the upstream_timeout message. The limit
	// itself is the request context's deadline, which the caller sets.
	Timeout time.Duration
	// Outcomes, when set, is told of every instance connecting to which
	// failed, also when the request then went to a fallback (outlier
	// detection counts it against that instance).
	Outcomes Outcomes
	// Retry is the route's retry policy, nil for none; Retries allows
	// each retry and picks its instance (retrypolicy.go). Both are needed
	// for a retry.
	Retry   *model.RetryPolicy
	Retries Retrier
}

// Outcomes hears of failed connects. It is an interface, not a func, for
// the same reason as Fallbacks.
type Outcomes interface{ ConnectFailed(addr string) }

// connectFailedAt tells t's Outcomes, if any, that connecting to addr failed.
func (t *Target) connectFailedAt(addr string) {
	if t.Outcomes != nil {
		t.Outcomes.ConnectFailed(addr)
	}
}

// Fallbacks lists the instances to try after a failed connect. It is an
// interface, not a func, so that a caller can pass the per-request state
// it allocated anyway instead of allocating a closure per request.
type Fallbacks interface{ Instances() []string }

// FallbackList is a fixed list of fallback instances.
type FallbackList []string

func (l FallbackList) Instances() []string { return l }

func (t *Target) desc() string { return mesherr.Dest(t.Service, t.Version) }

// forwardCtx carries a request's Target, and the ResponseWriter its
// answer goes to, through ReverseProxy to the Rewrite hook, the Transport
// and ModifyResponse. It is one allocation where context.WithValue would
// be one per value.
type forwardCtx struct {
	context.Context
	target *Target
	w      http.ResponseWriter
	// bodyFailed: reading the client's body failed (replayBody sets it),
	// so that the request's error is the client's even when the transport
	// reports the cancellation that followed (net/http cancels a request's
	// context when its connection's reads fail).
	bodyFailed atomic.Bool
	// tries are the request's per-try contexts (retrypolicy.go),
	// cancelled when Forward returns.
	tries tries
}

type forwardKey struct{}

func (c *forwardCtx) Value(key any) any {
	if key == (forwardKey{}) {
		return c
	}
	return c.Context.Value(key)
}

func forwardFrom(ctx context.Context) *forwardCtx {
	c, _ := ctx.Value(forwardKey{}).(*forwardCtx)
	return c
}

func targetFrom(ctx context.Context) *Target {
	if c := forwardFrom(ctx); c != nil {
		return c.target
	}
	return nil
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
	// NoFastPath sends every request through httputil.ReverseProxy, none
	// through the HTTP/1.1 fast path (h1.go). Tests use it to hold the two
	// to the same behaviour.
	NoFastPath bool
}

// sharedBuffers serves every Forwarder of the process.
var sharedBuffers = newBufferPool()

// Forwarder is a reverse proxy whose destination is chosen per request.
type Forwarder struct {
	proxy     *httputil.ReverseProxy
	transport *Transport
	log       *slog.Logger
	headers   http.Header
	pool      *h1Pool // connections of the HTTP/1.1 fast path (h1.go)
	// setXForwarded: see Options.SetXForwarded.
	setXForwarded bool
	// noFastPath: see Options.NoFastPath.
	noFastPath bool
}

// New returns a Forwarder with its own connection pools.
func New(o Options) *Forwarder {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	f := &Forwarder{transport: NewTransport(o.Logger), log: o.Logger, headers: o.ResponseHeaders,
		setXForwarded: o.SetXForwarded, noFastPath: o.NoFastPath}
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
		ModifyResponse: f.handOverHeaders,
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
	f.pool = newH1Pool(f.transport.maxFallbacks, o.Logger)
	return f
}

// Forward sends r to t and copies the answer to w. Failures are written as
// mesh errors.
func (f *Forwarder) Forward(w http.ResponseWriter, r *http.Request, t *Target) {
	if !f.noFastPath && fastPath(r) {
		f.forwardH1(w, r, t)
		return
	}
	if r.Header["Expect"] != nil {
		w = &oneContinue{w}
	}
	fc := &forwardCtx{Context: r.Context(), target: t, w: w}
	f.proxy.ServeHTTP(w, r.WithContext(fc))
	fc.tries.end()
}

// oneContinue is the ResponseWriter of a request with Expect: it drops the
// instance's 100 Continue that ReverseProxy relays. The client gets its
// one 100 from the server when the body is first read, which the
// transport does only once the instance's 100 came (or its
// ExpectContinueTimeout passed): relaying the instance's 100 too raced with
// that read and sent two. An instance that answers at once leaves the body
// unread, and no 100 goes out.
type oneContinue struct{ http.ResponseWriter }

func (w *oneContinue) WriteHeader(code int) {
	if code == http.StatusContinue {
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *oneContinue) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// CloseIdleConnections closes pooled connections not in use.
func (f *Forwarder) CloseIdleConnections() {
	f.transport.CloseIdleConnections()
	f.pool.CloseIdleConnections()
}

// StatusClientClosedRequest is recorded when the client went away before an
// answer (nginx's 499); nobody reads it but the metrics.
const StatusClientClosedRequest = 499

func (f *Forwarder) modifyResponse(res *http.Response, t *Target) error {
	if t != nil && t.App {
		// Only the mesh says x-trellis-error (see Target.App).
		delete(res.Header, headerError)
	}
	for k, v := range f.headers {
		res.Header[k] = v
	}
	return nil
}

// handOverHeaders is ReverseProxy's ModifyResponse: modifyResponse, then
// the response's headers are moved to the client's response, where
// ReverseProxy would copy them value by value (an allocation per header,
// and the response's own slices are garbage right after). Content-Type
// stays behind for ReverseProxy to copy: it reads it after this hook to
// decide on flushing. Keys the client's response has already are left to
// ReverseProxy to merge.
func (f *Forwarder) handOverHeaders(res *http.Response) error {
	fc := forwardFrom(res.Request.Context())
	var t *Target
	if fc != nil {
		t = fc.target
	}
	_ = f.modifyResponse(res, t)
	if fc == nil || res.StatusCode == http.StatusSwitchingProtocols {
		return nil
	}
	h := fc.w.Header()
	for k, vs := range res.Header {
		if _, ok := h[k]; ok || k == "Content-Type" {
			continue
		}
		h[k] = vs
		delete(res.Header, k)
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

// handleError is ReverseProxy's ErrorHandler.
func (f *Forwarder) handleError(w http.ResponseWriter, r *http.Request, err error) {
	f.writeError(w, r, targetFrom(r.Context()), err)
}

// writeError answers r with the mesh error err is, or an upstream_reset
// error when err is not one (something failed after the request went out).
func (f *Forwarder) writeError(w http.ResponseWriter, r *http.Request, t *Target, err error) {
	f.SetHeaders(w.Header())
	var be *clientBodyError
	if fc := forwardFrom(r.Context()); errors.As(err, &be) || fc != nil && fc.bodyFailed.Load() {
		// The client's body failed (malformed chunk, cut short): its
		// fault, not the instance's.
		cause := "reading it failed"
		if be != nil {
			cause = rootCause(err)
		}
		e := mesherr.Wrap(err, mesherr.BadRequest, "malformed request body: %s", cause)
		f.log.Debug("forward failed", "code", e.Code, "error", e.Msg, "host", r.Host, "path", r.URL.Path)
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		mesherr.Write(w, r, e)
		return
	}
	if errors.Is(err, ErrClientGone) {
		w.WriteHeader(StatusClientClosedRequest)
		return
	}
	var e *mesherr.Error
	switch ctxErr := r.Context().Err(); {
	case ctxErr == nil:
	case errors.Is(ctxErr, context.DeadlineExceeded):
		// The request's deadline (the route's timeout, a gRPC client's
		// grpc-timeout) passed before the answer was whole; the exchange
		// with the instance was cut and its connection closed.
		e = mesherr.Wrap(err, mesherr.UpstreamTimeout, "%s at %s did not answer %s", t.desc(), t.Addr, within(t))
	case errors.Is(err, context.Canceled):
		w.WriteHeader(StatusClientClosedRequest)
		return
	}
	ok := e != nil
	if !ok {
		e, ok = mesherr.As(err)
	}
	if !ok {
		e = mesherr.Wrap(err, mesherr.UpstreamReset, "%s at %s failed after the request was sent: %s",
			t.desc(), t.Addr, rootCause(err))
	}
	f.log.Debug("forward failed", "code", e.Code, "error", e.Msg, "host", r.Host, "path", r.URL.Path)
	mesherr.Write(w, r, e)
}

// within says how long t's request could take, for an upstream_timeout.
func within(t *Target) string {
	if t.Timeout > 0 {
		return "within " + t.Timeout.String()
	}
	return "before the request's deadline"
}

// clientBodyError is a failure reading the client's request body, so
// that writeError can tell it from the instance's failures (http.Transport
// returns a body's read error as it is).
type clientBodyError struct{ err error }

func (e *clientBodyError) Error() string { return "reading the request body: " + e.err.Error() }
func (e *clientBodyError) Unwrap() error { return e.err }

// bodyError marks err, from reading the client's body, as such (io.EOF
// and nil stay as they are).
func bodyError(err error) error {
	if err == nil || err == io.EOF {
		return err
	}
	return &clientBodyError{err}
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
