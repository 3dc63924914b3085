package forward

// Sending a request again after an app_unavailable answer.
//
// An inbound sidecar that cannot connect to its own app (a new pod whose
// sidecar registered before its app listens, an app that died) answers
// 503 with x-trellis-error: app_unavailable: nothing reached the app. The
// mesh side of a hop (outbound, gateway) treats that answer as it treats a
// failed connect: it drops it and sends the request to the next of the
// target's fallback instances (at most maxFallbacks others in all, connect
// failures and app_unavailable answers counted together), whatever the
// method, as long as the request body can be sent again:
//   - the fast path holds the whole body in memory (≤ 32 KiB): always;
//   - the ReverseProxy path (h2c, gRPC, chunked or larger uploads) reads a
//     body of announced length up to maxReplayBody whole before sending it
//     (unless the client waits for 100 Continue); of a body of unknown
//     length (chunked, gRPC) it keeps the bytes it sends, up to
//     maxReplayBody, and sends them again only when the body had ended (or
//     not been read at all) when the answer came. A longer or still
//     streaming body (a gRPC stream) is not kept, and the 503 is passed
//     through.
//
// When no instance is left, the caller answers its own error, with the
// code of the last try: app_unavailable when the last instance answered
// so, upstream_connect_failed when connecting to it failed.
//
// The header is believed only from the mesh side (Target.App is false); an
// inbound sidecar removes it from its app's responses, so an app cannot
// make callers send its requests again. With mTLS (issue 10) it is to be
// believed only from authenticated peer sidecars.

import (
	"errors"
	"io"
	"net/http"
	"slices"
	"sync"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/mesherr"
)

// maxReplayBody is the largest request body the ReverseProxy path keeps to
// send again after an app_unavailable answer.
const maxReplayBody = 64 << 10

// maxDiscard is how much of a dropped app_unavailable answer is read to
// keep its connection (the answer is one line; more closes it).
const maxDiscard = 4 << 10

// headerError is meshxds.HeaderError as net/http keys it.
var headerError = http.CanonicalHeaderKey(meshxds.HeaderError)

// retriesAppUnavailable reports whether an app_unavailable answer from t
// is acted on: t is a peer's inbound sidecar (the mesh side), with other
// instances to try.
func retriesAppUnavailable(t *Target) bool { return !t.App && t.Fallbacks != nil }

// isAppUnavailable reports whether res is an inbound sidecar's answer that
// it could not reach its app.
func isAppUnavailable(res *http.Response) bool {
	if res.StatusCode != http.StatusServiceUnavailable {
		return false
	}
	vs := res.Header[headerError]
	return len(vs) == 1 && vs[0] == string(mesherr.AppUnavailable)
}

// appUnavailable is the error of a request whose last try, the attempts-th,
// was answered app_unavailable by the instance at addr.
func appUnavailable(t *Target, attempts int, addr string) error {
	if attempts == 1 {
		return mesherr.New(mesherr.AppUnavailable, "%s at %s could not connect to its app",
			t.desc(), addr)
	}
	return mesherr.New(mesherr.AppUnavailable, "%s: %d instances tried, the last, %s, could not connect to its app",
		t.desc(), attempts, addr)
}

// fallbackList is t's fallbacks, at most max.
func fallbackList(t *Target, max int) []string {
	if t.Fallbacks == nil {
		return nil
	}
	l := t.Fallbacks.Instances()
	if len(l) > max {
		l = l[:max]
	}
	return l
}

// retryH1 is the fast path's: c's instance answered res, app_unavailable,
// to r (sent to t); r goes to t's fallbacks not tried yet, until one
// answers otherwise or none is left.
func (f *Forwarder) retryH1(w http.ResponseWriter, r *http.Request, t *Target, body []byte, c *h1Conn, res *http.Response) (*h1Conn, *http.Response, error) {
	cur, rest := t.Addr, fallbackList(t, f.pool.maxFallbacks)
	tried := 0
	for {
		addr := c.addr
		tried++
		if addr != cur {
			// pool.get failed to connect to cur and the fallbacks before addr.
			if i := slices.Index(rest, addr); i >= 0 {
				tried += i + 1
				rest = rest[i+1:]
			}
		}
		f.discardH1(c, res)
		if len(rest) == 0 {
			return nil, nil, appUnavailable(t, tried, addr)
		}
		f.log.Debug("instance could not reach its app, trying another", "addr", addr, "next", rest[0])
		next := &Target{Addr: rest[0], Fallbacks: FallbackList(rest[1:]), Service: t.Service, Version: t.Version, Outcomes: t.Outcomes}
		cur, rest = rest[0], rest[1:]
		var err error
		if c, res, err = f.exchange(w, r, next, body); err != nil || !isAppUnavailable(res) {
			return c, res, err
		}
	}
}

// discardH1 drops an answer read from c, keeping c when the answer was
// short and complete.
func (f *Forwarder) discardH1(c *h1Conn, res *http.Response) {
	_, err := io.CopyN(io.Discard, res.Body, maxDiscard)
	aborted := !c.done()
	chunked := len(res.TransferEncoding) > 0 && res.TransferEncoding[0] == "chunked"
	framed := res.Body == http.NoBody || res.ContentLength >= 0 || chunked
	if err != io.EOF || aborted || res.Close || !framed {
		c.close()
		return
	}
	res.Body.Close()
	f.pool.put(c)
}

// discard drops an answer of http.Transport.
func discard(res *http.Response) {
	_, _ = io.CopyN(io.Discard, res.Body, maxDiscard)
	res.Body.Close()
}

// errBodyRead: the body cannot be sent again.
var errBodyRead = errors.New("request body already partly sent")

// errSuperseded fails the reads of a try whose body was handed to the next.
var errSuperseded = errors.New("request body handed to another try")

// replayBody is a request body on the ReverseProxy path that can be sent
// again: after a failed connect when nothing of it was read, and after an
// app_unavailable answer when it was not read at all or it was kept whole
// (keep: at most maxReplayBody bytes, and ended when the answer came).
// Each try reads it through its own tryBody; a new try makes the older
// ones fail, so that a transport goroutine still busy with an old try
// cannot take bytes from the new one.
type replayBody struct {
	rc io.ReadCloser
	fc *forwardCtx // told when reading rc fails (nil outside a Forwarder)

	mu       sync.Mutex
	keep     bool   // buf holds every byte read from rc
	buf      []byte // while keep
	consumed bool   // a byte was read from rc
	eof      bool   // rc has ended
	reading  bool   // a Read of rc is in progress
	closed   bool   // rc was closed
	try      int    // the current try
}

// tryBody is the body of one try.
type tryBody struct {
	b   *replayBody
	try int
	off int // bytes of b.buf this try has read
}

func newReplayBody(rc io.ReadCloser, keep bool) *replayBody {
	return &replayBody{rc: rc, keep: keep}
}

// fill reads the whole body, n bytes, before the first try.
func (b *replayBody) fill(n int64) error {
	buf := make([]byte, n)
	if _, err := io.ReadFull(b.rc, buf); err != nil {
		if b.fc != nil {
			b.fc.bodyFailed.Store(true)
		}
		return bodyError(err)
	}
	b.buf, b.consumed, b.eof = buf, true, true
	return nil
}

// first is the body of the first try.
func (b *replayBody) first() io.ReadCloser { return &tryBody{b: b} }

// again returns the body of a new try, or false when the body cannot be
// sent again.
func (b *replayBody) again() (io.ReadCloser, bool) {
	if b == nil {
		return nil, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.reading || b.closed || b.consumed && !(b.keep && b.eof) {
		return nil, false
	}
	b.try++
	return &tryBody{b: b, try: b.try}, true
}

// getBody is the request's GetBody, for the transport's own resends.
func (b *replayBody) getBody() (io.ReadCloser, error) {
	if nb, ok := b.again(); ok {
		return nb, nil
	}
	return nil, errBodyRead
}

// stopKeeping releases what was kept: no other try comes.
func (b *replayBody) stopKeeping() {
	if b == nil {
		return
	}
	b.mu.Lock()
	b.keep, b.buf = false, nil
	b.mu.Unlock()
}

func (t *tryBody) Read(p []byte) (int, error) {
	b := t.b
	b.mu.Lock()
	if t.try != b.try {
		b.mu.Unlock()
		return 0, errSuperseded
	}
	if t.off < len(b.buf) {
		n := copy(p, b.buf[t.off:])
		t.off += n
		b.mu.Unlock()
		return n, nil
	}
	if b.eof {
		b.mu.Unlock()
		return 0, io.EOF
	}
	b.reading = true
	b.mu.Unlock()

	n, err := b.rc.Read(p)

	b.mu.Lock()
	// A read that fails because this side closed the body (the transport
	// does when the instance resets the exchange) is not the client's
	// fault: only a failure of the client's own bytes is.
	if !b.closed {
		err = bodyError(err)
		if err != nil && err != io.EOF && b.fc != nil {
			b.fc.bodyFailed.Store(true)
		}
	}
	b.reading = false
	if n > 0 {
		b.consumed = true
		if b.keep && len(b.buf)+n <= maxReplayBody {
			b.buf = append(b.buf, p[:n]...)
			t.off += n
		} else {
			b.keep, b.buf = false, nil
		}
	}
	if err == io.EOF {
		b.eof = true
	}
	b.mu.Unlock()
	return n, err
}

// Close closes the client's body (to unblock a Read in progress, as the
// transport means it to), unless another try may still send it (nothing
// was read, or all of it was kept; the server closes the body when the
// handler returns anyway) or this try is over.
func (t *tryBody) Close() error {
	b := t.b
	b.mu.Lock()
	if t.try != b.try || b.closed || !b.consumed && !b.reading || b.keep && b.eof {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	return b.rc.Close()
}
