package forward

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"
	"trellis.dev/trellis/internal/proxy/sockio"

	"trellis.dev/trellis/internal/proxy/mesherr"
)

// Pool and timeout sizes. Connections are pooled by instance address, so a
// config swap drops none of them.
const (
	connectTimeout      = time.Second // as the control plane's cluster connect_timeout
	maxIdleConnsPerHost = 256         // a busy peer keeps its keep-alive connections
	idleConnTimeout     = 90 * time.Second
)

// Transport is an http.RoundTripper that keeps the protocol of the request
// it forwards, and retries the connect on other instances.
type Transport struct {
	h1           *http.Transport // HTTP/1.1 with keep-alive
	h2c          *http.Transport // HTTP/2 prior knowledge, cleartext
	maxFallbacks int
	log          *slog.Logger
}

var _ http.RoundTripper = (*Transport)(nil)

// NewTransport returns a Transport with its own pools.
// expectContinueTimeout is how long a request with Expect: 100-continue
// waits for the instance's answer before its body is sent anyway.
const expectContinueTimeout = time.Second

func NewTransport(log *slog.Logger) *Transport {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dialer := &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialer.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return sockio.Wrap(c), nil // raw system calls: why in package sockio
	}
	base := func(p *http.Protocols) *http.Transport {
		return &http.Transport{
			Proxy:               nil, // never the environment's proxy: we are the proxy
			DialContext:         dial,
			MaxIdleConnsPerHost: maxIdleConnsPerHost,
			IdleConnTimeout:     idleConnTimeout,
			// A proxy passes bodies through as they are: no transparent gzip.
			DisableCompression: true,
			// Expect: 100-continue end to end: the request's head goes
			// first and its body is read (so the client gets net/http's
			// 100 and sends it; oneContinue drops the instance's own)
			// only after the instance's 100, never after its final answer
			// (no 100 reaches the client), or after this long without
			// either (an instance that ignores Expect; curl waits as long).
			ExpectContinueTimeout: expectContinueTimeout,
			Protocols:             p,
			HTTP2: &http.HTTP2Config{
				// Notice a dead peer on a long-lived h2 connection.
				SendPingTimeout: 30 * time.Second,
				PingTimeout:     15 * time.Second,
			},
		}
	}
	var h1, h2c http.Protocols
	h1.SetHTTP1(true)
	h2c.SetUnencryptedHTTP2(true)
	return &Transport{h1: base(&h1), h2c: base(&h2c), maxFallbacks: 2, log: log}
}

// CloseIdleConnections closes pooled connections not in use.
func (t *Transport) CloseIdleConnections() {
	t.h1.CloseIdleConnections()
	t.h2c.CloseIdleConnections()
}

// RoundTrip sends req to its URL's host. If the connect fails (nothing was
// sent) and the body was not read, or a peer's sidecar answers that it
// could not reach its app and the body can be sent again (retry.go), it
// tries the target's fallbacks, up to maxFallbacks; when all fail it
// returns an upstream_connect_failed or app_unavailable error, the last
// try's. Then the route's retry policy may send it again (retrypolicy.go).
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt := t.h1
	if req.ProtoMajor == 2 {
		rt = t.h2c
	}
	tgt := targetFrom(req.Context())
	if tgt == nil {
		tgt = &Target{Addr: req.URL.Host}
	}

	retryApp := retriesAppUnavailable(tgt)
	replay := retryApp || tgt.retries()

	var body *replayBody
	if req.Body != nil && req.Body != http.NoBody {
		// Kept for another try when it may be short enough; read whole
		// first when its length says so (as the fast path does), unless
		// the client waits for 100 Continue.
		body = newReplayBody(req.Body, replay && req.ContentLength <= maxReplayBody)
		body.fc = forwardFrom(req.Context())
		if replay && req.ContentLength > 0 && req.ContentLength <= maxReplayBody && req.Header["Expect"] == nil {
			if err := body.fill(req.ContentLength); err != nil {
				return nil, err
			}
		}
		req.Body = body.first()
		// Lets the transport itself resend on a new connection when a
		// pooled one turns out dead before anything was written.
		req.GetBody = body.getBody
	}
	defer body.stopKeeping()

	var ts *tries
	if fc := forwardFrom(req.Context()); fc != nil {
		ts = &fc.tries
	} else {
		ts = &tries{}
		defer ts.end()
	}
	resp, addr, err := t.try(rt, req, tgt, body, ts)
	if !tgt.retries() {
		return resp, err
	}
	for n := 1; n <= tgt.Retry.NumRetries; n++ {
		status, ok := retryable(tgt.Retry, req, resp, err)
		if !ok {
			break
		}
		again, ok := body.again()
		if !ok {
			break // the body cannot be sent again: the answer passes through
		}
		next, ok := tgt.Retries.Retry(addr, status)
		if !ok {
			break
		}
		if resp != nil {
			discard(resp)
			resp = nil
		}
		if !backoff(req.Context(), tgt.Retry, n) {
			return nil, req.Context().Err()
		}
		t.log.Debug("retrying", "addr", addr, "status", status, "next", next, "retry", n)
		r2 := withHost(req, next)
		if again != nil {
			r2.Body = again
		}
		resp, addr, err = t.try(rt, r2, tgt, body, ts)
	}
	return resp, err
}

// try is one try of req (retrypolicy.go): to its host, then to the
// target's fallbacks after a failed connect or an app_unavailable answer,
// under the per-try timeout if any. It returns the answer or error of the
// last instance tried, and its address.
func (t *Transport) try(rt http.RoundTripper, req *http.Request, tgt *Target, body *replayBody, ts *tries) (*http.Response, string, error) {
	req, expired := ts.start(req, tgt)
	resp, err := t.fallbacks(rt, req, tgt, body)
	if expired() {
		if err == nil {
			resp.Body.Close()
		}
		return nil, req.URL.Host, tryTimeout(tgt, req.URL.Host)
	}
	addr := req.URL.Host
	if resp != nil && resp.Request != nil {
		addr = resp.Request.URL.Host
	}
	return resp, addr, err
}

// fallbacks sends req to its host and, after a failed connect or an
// app_unavailable answer, to the target's fallbacks.
func (t *Transport) fallbacks(rt http.RoundTripper, req *http.Request, tgt *Target, body *replayBody) (*http.Response, error) {
	retryApp := retriesAppUnavailable(tgt)
	var (
		fallbacks []string
		listed    bool
		attempts  int
		connects  int // failed connects since the last answer (as the fast path counts them)
	)
	for {
		attempts++
		connects++
		resp, err := rt.RoundTrip(req)
		if err == nil {
			if err = checkStatus(resp); err != nil {
				resp.Body.Close()
				return nil, err
			}
		}
		var again io.ReadCloser
		if err == nil {
			if !retryApp || !isAppUnavailable(resp) {
				return resp, nil
			}
			// The instance's sidecar could not connect to its app: nothing
			// reached it, as after a failed connect (retry.go).
			var ok bool
			if again, ok = body.again(); !ok {
				return resp, nil // the body cannot be sent again: passed through
			}
			discard(resp)
			connects = 0
		} else {
			if !isConnectError(err) || req.Context().Err() != nil {
				return nil, err
			}
			tgt.connectFailedAt(req.URL.Host)
			var ok bool
			if again, ok = body.again(); !ok {
				return nil, connectFailed(err, tgt, connects, req.URL.Host)
			}
		}
		if !listed {
			fallbacks, listed = fallbackList(tgt, t.maxFallbacks), true
		}
		if len(fallbacks) == 0 {
			if err != nil {
				return nil, connectFailed(err, tgt, connects, req.URL.Host)
			}
			return nil, appUnavailable(tgt, attempts, req.URL.Host)
		}
		if err != nil {
			t.log.Debug("connect failed, trying another instance", "addr", req.URL.Host, "next", fallbacks[0], "error", rootCause(err))
		} else {
			t.log.Debug("instance could not reach its app, trying another", "addr", req.URL.Host, "next", fallbacks[0])
		}
		req = withHost(req, fallbacks[0])
		if again != nil {
			req.Body = again
		}
		fallbacks = fallbacks[1:]
	}
}

// connectFailed is the error of a request whose connects all failed, the
// last one to addr after attempts in all (since the last instance that
// answered app_unavailable, if any).
func connectFailed(err error, t *Target, attempts int, addr string) error {
	if t.App {
		return mesherr.Wrap(err, mesherr.AppUnavailable, "connect to the app of %s at %s failed: %s",
			t.desc(), addr, rootCause(err))
	}
	if attempts == 1 {
		return mesherr.Wrap(err, mesherr.UpstreamConnectFailed, "connect to %s at %s failed: %s",
			t.desc(), addr, rootCause(err))
	}
	return mesherr.Wrap(err, mesherr.UpstreamConnectFailed, "connect to %s failed on %d instances, last %s: %s",
		t.desc(), attempts, addr, rootCause(err))
}

// withHost is a shallow copy of req sent to addr.
func withHost(req *http.Request, addr string) *http.Request {
	r2 := *req
	u := *req.URL
	u.Host = addr
	r2.URL = &u
	return &r2
}

// isConnectError reports whether err happened while dialing, so that no byte
// of the request reached the instance.
func isConnectError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
