package forward

// Retries by a route's retry policy (model.RetryPolicy, Route spec.retries).
//
// A try is one exchange with an instance, with what forward already does
// inside it: a failed connect goes to the target's fallbacks and an
// app_unavailable answer to the next instance (retry.go). When a try ends
// in an outcome the policy names (a 5xx, a gateway error, a reset, the
// per-try timeout, a listed status), the answer is dropped and the request
// is sent again, after a jittered exponential backoff, to the instance the
// target's Retrier gives (another one when there is one), until a try
// ends otherwise, the retries are spent, or the Retrier refuses (the
// cluster's retry budget). Then the last try's answer passes through as it
// came, or its error is answered.
//
// A retry needs the request body again: the fast path has it in memory
// (≤ 32 KiB); the ReverseProxy path keeps up to maxReplayBody of it. A
// body that was not kept (longer, or still streaming when the answer came)
// is never replayed: the answer passes through.
//
// The per-try timeout bounds a try until the answer's head: once an
// answer is being relayed, no retry can follow, and the route's timeout
// bounds the rest.

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"slices"
	"time"

	"trellis.dev/trellis/internal/proxy/mesherr"
	"trellis.dev/trellis/internal/proxy/model"
)

// Retrier allows retries and picks their instance. It is an interface, not
// a func, for the same reason as Fallbacks.
type Retrier interface {
	// Retry is asked before each retry: the try at addr ended with
	// status (0 when no answer came). It returns the instance to send the
	// retry to, or false when no retry may be made.
	Retry(addr string, status int) (next string, ok bool)
}

// errTryTimeout marks a try cut by the per-try timeout.
var errTryTimeout = errors.New("per-try timeout")

// tryTimeout is the error of a try at addr cut by t's per-try timeout.
func tryTimeout(t *Target, addr string) error {
	return mesherr.Wrap(errTryTimeout, mesherr.UpstreamTimeout, "%s at %s did not answer within the per-try timeout %s",
		t.desc(), addr, t.Retry.PerTryTimeout)
}

// retryable reports whether a try that ended with res or err is sent
// again under p, and the status to tell the Retrier (0: no answer).
// Nothing is retried once the request's own deadline has passed or its
// client has gone, nor a failure of the client's body.
func retryable(p *model.RetryPolicy, r *http.Request, res *http.Response, err error) (int, bool) {
	if r.Context().Err() != nil {
		return 0, false
	}
	if res != nil {
		s := res.StatusCode
		switch {
		case p.On&model.Retry5xx != 0 && s >= 500 && s <= 599,
			p.On&model.RetryGatewayError != 0 && (s == 502 || s == 503 || s == 504),
			p.On&model.RetryStatusCodes != 0 && slices.Contains(p.Codes, s):
			return s, true
		}
		return s, false
	}
	var be *clientBodyError
	if errors.As(err, &be) || errors.Is(err, ErrClientGone) {
		return 0, false
	}
	if fc := forwardFrom(r.Context()); fc != nil && fc.bodyFailed.Load() {
		return 0, false
	}
	noAnswer := p.On&(model.Retry5xx|model.RetryGatewayError) != 0
	if e, ok := mesherr.As(err); ok {
		switch e.Code {
		case mesherr.UpstreamConnectFailed:
			return 0, noAnswer || p.On&model.RetryConnectFailure != 0
		case mesherr.AppUnavailable: // the last instance's sidecar answered 503
			return http.StatusServiceUnavailable, noAnswer ||
				p.On&model.RetryStatusCodes != 0 && slices.Contains(p.Codes, http.StatusServiceUnavailable)
		}
	}
	// Reset, closed, a malformed answer, or the per-try timeout.
	return 0, noAnswer || p.On&model.RetryReset != 0
}

// backoff waits before the n-th retry (n from 1): a random time in
// [0, min(base·2^(n-1), max)), as Envoy's fully jittered backoff. It
// reports false when ctx ended first.
func backoff(ctx context.Context, p *model.RetryPolicy, n int) bool {
	base, ceil := p.BackoffBase, p.BackoffMax
	if base <= 0 {
		base = model.DefaultBackoffBase
	}
	if ceil <= 0 {
		ceil = 10 * base
	}
	d := base << min(n-1, 20)
	if d <= 0 || d > ceil {
		d = ceil
	}
	d = rand.N(d) + 1
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// tries holds the per-try contexts of one request, to be cancelled when
// it ends.
type tries struct{ cancels []context.CancelFunc }

// start begins a try of r to t: with a per-try timeout, r under a context
// that the timeout cancels, and expired reports (stopping the timer)
// whether it did. Without one, r itself and a func that reports false.
func (ts *tries) start(r *http.Request, t *Target) (try *http.Request, expired func() bool) {
	if t.Retry == nil || t.Retry.PerTryTimeout <= 0 {
		return r, notExpired
	}
	ctx, cancel := context.WithCancel(r.Context())
	ts.cancels = append(ts.cancels, cancel)
	timer := time.AfterFunc(t.Retry.PerTryTimeout, cancel)
	return r.WithContext(ctx), func() bool { return !timer.Stop() }
}

func notExpired() bool { return false }

// end cancels every try's context.
func (ts *tries) end() {
	for _, c := range ts.cancels {
		c()
	}
}

// retries reports whether t retries at all.
func (t *Target) retries() bool {
	return t.Retry != nil && t.Retry.NumRetries > 0 && t.Retries != nil
}
