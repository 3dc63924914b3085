package forward

// The HTTP/1.1 fast path.
//
// Profiles of a gateway hop (docs/performance.md, "Proxy hot path") showed
// about half of the proxy's CPU going to httputil.ReverseProxy and
// http.Transport around the socket calls: a clone of the request, three
// contexts, a hand-off to the transport's write goroutine and back from its
// read goroutine for every request, and ~60 allocations. For the common
// request — HTTP/1.x, no upgrade, no Expect, a body of known length of at
// most 32 KiB — the handler's own goroutine writes the request on a pooled
// connection and reads the answer with http.ReadResponse. Everything else
// (chunked or large uploads, request trailers, 100-continue, upgrades,
// h2c) goes through ReverseProxy as before.
//
// What it keeps from ReverseProxy and http.Transport, and the tests that
// hold the two paths to the same output (h1_test.go):
//   - hop-by-hop headers (and those named by Connection) and Proxy-* are
//     dropped both ways; Te: trailers passes; X-Forwarded-* as Options say;
//     unparsable query parameters are dropped; no User-Agent is added;
//   - responses: 1xx are relayed, trailers (announced or not) pass,
//     bodies without a length and text/event-stream are flushed as they
//     come, a failure after the head was sent aborts the client connection;
//   - connect failures are retried on other instances with the same
//     errors; a pooled connection that the instance closed is noticed
//     before use, and a replayable request that finds it closed anyway is
//     sent again on a new connection; a client that goes away cancels the
//     upstream exchange (499).

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
)

// maxFastBody is the largest request body the fast path takes. The body is
// read whole into the pooled copy buffer before the request is sent (as
// nginx buffers requests), so that one goroutine can write the request and
// then read the answer without deadlock, and the request can be sent again
// on another connection.
const maxFastBody = copyBufferSize

// max1xx is how many informational responses may precede the final one
// (http.Transport's limit).
const max1xx = 5

// fastPath reports whether r can take the fast path.
func fastPath(r *http.Request) bool {
	return r.ProtoMajor == 1 &&
		r.ContentLength >= 0 && r.ContentLength <= maxFastBody &&
		len(r.Trailer) == 0 &&
		r.Header["Expect"] == nil && r.Header["Upgrade"] == nil &&
		PlainHost(r.Host)
}

// PlainHost: a host name or IP literal with an optional port (h1server
// serves only such Hosts itself, so that its requests take this path). Anything
// else (empty, IDN, IPv6 zone…) is left to http.Transport, which converts
// or rejects it.
func PlainHost(h string) bool {
	if h == "" {
		return false
	}
	for i := 0; i < len(h); i++ {
		switch c := h[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '.' || c == '-' || c == ':' || c == '[' || c == ']' || c == '_':
		default:
			return false
		}
	}
	return true
}

// aLongTimeAgo is a deadline that unblocks any read or write at once.
var aLongTimeAgo = time.Unix(1, 0)

// errNothingRead: the connection failed before a byte of the answer came.
var errNothingRead = errors.New("connection closed before any response")

// forwardH1 is Forward for a request fastPath accepts.
func (f *Forwarder) forwardH1(w http.ResponseWriter, r *http.Request, t *Target) {
	buf := sharedBuffers.Get()
	defer sharedBuffers.Put(buf)
	body := buf[:r.ContentLength]
	if _, err := io.ReadFull(r.Body, body); err != nil {
		f.writeError(w, r, t, bodyError(err))
		return
	}
	var ts tries
	defer ts.end()
	c, res, err := f.tryH1(w, r, t, body, &ts)
	if t.retries() {
		c, res, err = f.retriesH1(w, r, t, body, &ts, c, res, err)
	}
	if err != nil {
		f.writeError(w, r, t, err)
		return
	}
	// From here buf is free again: the body was sent, and no retry comes.
	f.relay(w, r, t, c, res, buf)
}

// tryH1 is one try of r to t (retrypolicy.go): the exchange, an
// app_unavailable answer sent on to the fallbacks (the body is in memory:
// retry.go), under the per-try timeout if any.
func (f *Forwarder) tryH1(w http.ResponseWriter, r *http.Request, t *Target, body []byte, ts *tries) (*h1Conn, *http.Response, error) {
	tr, expired := ts.start(r, t)
	c, res, err := f.exchange(w, tr, t, body)
	if err == nil && res.StatusCode == http.StatusServiceUnavailable && retriesAppUnavailable(t) && isAppUnavailable(res) {
		c, res, err = f.retryH1(w, tr, t, body, c, res)
	}
	if expired() {
		addr := t.Addr
		if err == nil {
			// The head came as the timer fired: the try's context is
			// cancelled, so the connection cannot be relayed from.
			addr = c.addr
			c.done()
			c.close()
		}
		return nil, nil, tryTimeout(t, addr)
	}
	return c, res, err
}

// retriesH1 sends r again while the policy, the retries left and t's
// Retrier allow (retrypolicy.go), and returns the last try's outcome.
func (f *Forwarder) retriesH1(w http.ResponseWriter, r *http.Request, t *Target, body []byte, ts *tries,
	c *h1Conn, res *http.Response, err error) (*h1Conn, *http.Response, error) {
	for n := 1; n <= t.Retry.NumRetries; n++ {
		status, ok := retryable(t.Retry, r, res, err)
		if !ok {
			break
		}
		addr := t.Addr
		if c != nil {
			addr = c.addr
		}
		next, ok := t.Retries.Retry(addr, status)
		if !ok {
			break
		}
		if res != nil {
			f.discardH1(c, res)
			c, res = nil, nil
		}
		if !backoff(r.Context(), t.Retry, n) {
			return nil, nil, r.Context().Err()
		}
		f.log.Debug("retrying", "addr", addr, "status", status, "next", next, "retry", n)
		again := *t
		again.Addr = next
		c, res, err = f.tryH1(w, r, &again, body, ts)
	}
	return c, res, err
}

// exchange sends r with body to t and returns the final response's head
// and the connection its body is to be read from. 1xx responses are
// relayed to w on the way.
func (f *Forwarder) exchange(w http.ResponseWriter, r *http.Request, t *Target, body []byte) (*h1Conn, *http.Response, error) {
	ctx := r.Context()
	c, err := f.pool.get(ctx, t)
	for err == nil {
		var res *http.Response
		if res, err = f.roundTrip(w, r, c, body); err == nil {
			return c, res, nil
		}
		c.close()
		if ctx.Err() != nil {
			return nil, nil, ctx.Err()
		}
		// The instance closed a pooled connection as the request went out
		// (an idle timeout, a restart): nothing was answered, so a
		// replayable request goes again on another connection, as
		// http.Transport does. The probe in pool.get makes this rare.
		if !c.reused || !errors.Is(err, errNothingRead) || !replayable(r) {
			return nil, nil, err
		}
		f.log.Debug("pooled connection closed by the instance, sending again", "addr", c.addr)
		// With t's fallbacks: an instance shutting down closes its
		// connections and its listener, and the connect refused there
		// goes to another instance, as on the ReverseProxy path.
		again := *t
		again.Addr = c.addr
		c, err = f.pool.get(ctx, &again)
	}
	return nil, nil, err
}

// roundTrip writes r on c and reads the head of the final response. On
// success the caller owns c's abort hook (c.done).
func (f *Forwarder) roundTrip(w http.ResponseWriter, r *http.Request, c *h1Conn, body []byte) (*http.Response, error) {
	// A client that goes away unblocks the exchange: the deadline fails
	// the read or write in progress, and the connection is not reused.
	c.stopAbort = context.AfterFunc(r.Context(), c.abortFn)
	if err := f.writeRequest(c.bw, r, body); err != nil {
		c.done()
		return nil, err
	}
	c.limit = maxResponseHeaderBytes
	if err := waitAnswer(r.Context(), w, c); err != nil {
		c.done()
		if errors.Is(err, ErrClientGone) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %w", errNothingRead, err)
	}
	for n := 0; ; n++ {
		res, err := http.ReadResponse(c.br, r)
		if err == nil {
			err = checkStatus(res)
		}
		if err != nil {
			c.done()
			return nil, err
		}
		if res.StatusCode < 100 || res.StatusCode > 199 || res.StatusCode == http.StatusSwitchingProtocols {
			c.limit = noLimit
			return res, nil
		}
		if n == max1xx {
			c.done()
			return nil, errors.New("too many 1xx informational responses")
		}
		// As ReverseProxy relays them (103 Early Hints, a 100 Continue).
		h := w.Header()
		copyHeader(h, res.Header)
		w.WriteHeader(res.StatusCode)
		clear(h)
	}
}

// checkStatus refuses a status below 100 ("HTTP/1.1 000"): http.ReadResponse
// takes any three digits, but ResponseWriter.WriteHeader panics on it,
// which would drop the client's connection instead of answering 502.
func checkStatus(res *http.Response) error {
	if res.StatusCode < 100 {
		return fmt.Errorf("malformed HTTP status code %q", res.Status)
	}
	return nil
}

// ClientWatcher is what a ResponseWriter offers when nothing watches its
// client while the handler runs (h1server's: no goroutine per request
// reads the client's connection, as net/http's does to cancel the
// request's context). ClientGone reports, without waiting, whether the
// client has closed its connection.
type ClientWatcher interface{ ClientGone() bool }

// ErrClientGone ends an exchange whose client closed its connection while
// the instance had not answered yet.
var ErrClientGone = errors.New("the client closed its connection before the answer")

// clientCheckInterval is how often a silent instance's client is checked.
var clientCheckInterval = time.Second

// waitAnswer waits for the first byte of the answer on c. When w can tell
// whether its client is gone, the wait is cut into clientCheckInterval
// slices and the client checked after each, so that a long poll whose
// client left does not hold the instance until it answers (what net/http's
// background read gives the other path). The deadline costs a timer per
// request; the check itself runs only for answers slower than the interval.
//
// The request's context ends the wait: its abort hook (roundTrip) sets a
// past deadline on c, and a slice's deadline must never overwrite that.
// So ctx is checked after each slice's deadline is set: a context that
// ends before the check is seen there, one that ends after it sets its
// past deadline after the slice's, and that one holds.
func waitAnswer(ctx context.Context, w http.ResponseWriter, c *h1Conn) error {
	watcher := clientWatcher(w)
	if watcher == nil {
		_, err := c.br.Peek(1)
		return err
	}
	for {
		c.conn.SetReadDeadline(time.Now().Add(clientCheckInterval))
		if err := ctx.Err(); err != nil {
			return err
		}
		_, err := c.br.Peek(1)
		if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
			c.conn.SetReadDeadline(time.Time{})
			if cerr := ctx.Err(); cerr != nil {
				return cerr // its hook's past deadline may just have been cleared
			}
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if watcher.ClientGone() {
			return ErrClientGone
		}
	}
}

// clientWatcher finds a ClientWatcher in w or the writers it wraps.
func clientWatcher(w http.ResponseWriter) ClientWatcher {
	for {
		switch t := w.(type) {
		case ClientWatcher:
			return t
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return nil
		}
	}
}

// writeRequest writes r's head, as ReverseProxy would have changed it, and
// body, and flushes.
func (f *Forwarder) writeRequest(bw *bufio.Writer, r *http.Request, body []byte) error {
	uri := r.URL.RequestURI()
	if q := cleanQueryParams(r.URL.RawQuery); q != r.URL.RawQuery {
		u := *r.URL
		u.RawQuery = q
		uri = u.RequestURI()
	}
	bw.WriteString(r.Method)
	bw.WriteByte(' ')
	bw.WriteString(uri)
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(r.Host)
	bw.WriteString("\r\n")
	// http.Transport sends the first User-Agent only, and none when the
	// request has none (ReverseProxy asks it not to add its own).
	if ua := r.Header["User-Agent"]; len(ua) > 0 && ua[0] != "" {
		if err := writeField(bw, "User-Agent", ua[0]); err != nil {
			return err
		}
	}
	// As http.Transport: a length for a body, and 0 for the methods that
	// normally have one.
	if len(body) > 0 || r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(body)), 10))
		bw.WriteString("\r\n")
	}
	connection := r.Header["Connection"]
	for k, vs := range r.Header {
		if f.dropRequestHeader(k, connection) {
			continue
		}
		for _, v := range vs {
			if err := writeField(bw, k, v); err != nil {
				return err
			}
		}
	}
	if hasToken(r.Header["Te"], "trailers") {
		bw.WriteString("Te: trailers\r\n")
	}
	if f.setXForwarded {
		// httputil.ProxyRequest.SetXForwarded after ReverseProxy dropped the
		// client's X-Forwarded-*: the gateway trusts none of them.
		if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			writeField(bw, "X-Forwarded-For", ip)
		}
		writeField(bw, "X-Forwarded-Host", r.Host)
		if r.TLS == nil {
			bw.WriteString("X-Forwarded-Proto: http\r\n")
		} else {
			bw.WriteString("X-Forwarded-Proto: https\r\n")
		}
	}
	bw.WriteString("\r\n")
	bw.Write(body)
	return bw.Flush()
}

// dropRequestHeader says which of the request's headers do not go on:
// those written apart, hop-by-hop ones and those Connection names,
// Proxy-*, and on the gateway the client's X-Forwarded-*. A sidecar passes
// X-Forwarded-* and Forwarded untouched, as the ReverseProxy path does.
func (f *Forwarder) dropRequestHeader(k string, connection []string) bool {
	switch k {
	case "Host", "User-Agent", "Content-Length":
		return true
	case "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto":
		return f.setXForwarded
	}
	return isHopByHop(k) || strings.HasPrefix(k, "Proxy-") || hasToken(connection, k)
}

// relay sends the response res (read from c) to w, then gives c back to
// the pool when it can carry another request.
func (f *Forwarder) relay(w http.ResponseWriter, r *http.Request, t *Target, c *h1Conn, res *http.Response, buf []byte) {
	if res.StatusCode == http.StatusSwitchingProtocols {
		// Requests that ask for an upgrade take the ReverseProxy path; an
		// instance switching protocols unasked is broken.
		c.done()
		c.close()
		f.writeError(w, r, t, fmt.Errorf("backend tried to switch protocol %q when no upgrade was requested", res.Header.Get("Upgrade")))
		return
	}
	removeHopByHopHeaders(res.Header)
	_ = f.modifyResponse(res, t)
	h := w.Header()
	for k, vs := range res.Header {
		// The values are ours now: hand them over instead of copying.
		if prev, ok := h[k]; ok {
			h[k] = append(prev, vs...)
		} else {
			h[k] = vs
		}
	}
	if len(res.Trailer) > 0 {
		keys := make([]string, 0, len(res.Trailer))
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	announced := len(res.Trailer)
	w.WriteHeader(res.StatusCode)

	rc := http.NewResponseController(w)
	stream := res.ContentLength == -1 || isEventStream(res.Header.Get("Content-Type"))
	if stream {
		_ = rc.Flush() // the head goes now, not with the first bytes of the body
	}
	if err := copyBody(w, res.Body, buf, rc, stream); err != nil {
		// The head is out: all that is left is to abort the client's
		// connection (ReverseProxy does the same).
		c.done()
		c.close()
		panic(http.ErrAbortHandler)
	}
	res.Body.Close()

	if len(res.Trailer) > 0 {
		_ = rc.Flush() // force chunking, so that the trailers can follow
	}
	if len(res.Trailer) == announced {
		copyHeader(h, res.Trailer)
	} else {
		for k, vs := range res.Trailer {
			for _, v := range vs {
				h.Add(http.TrailerPrefix+k, v)
			}
		}
	}

	aborted := !c.done()
	chunked := len(res.TransferEncoding) > 0 && res.TransferEncoding[0] == "chunked"
	framed := res.Body == http.NoBody || res.ContentLength >= 0 || chunked
	if aborted || res.Close || !framed {
		c.close()
		return
	}
	f.pool.put(c)
}

// copyBody copies the response body, flushing after every write when
// stream is set. It returns read and write errors, not io.EOF.
func copyBody(w io.Writer, body io.Reader, buf []byte, rc *http.ResponseController, stream bool) error {
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if stream {
				if err := rc.Flush(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// writeField writes "k: v\r\n". Keys and values came through net/http's
// parser, which rejects control characters; a CR or LF here would split
// the request, so it is refused rather than trusted (http.Transport
// refuses it too).
func writeField(bw *bufio.Writer, k, v string) error {
	if strings.ContainsAny(v, "\r\n") || strings.ContainsAny(k, "\r\n: ") {
		return fmt.Errorf("net/http: invalid header field %q", k)
	}
	bw.WriteString(k)
	bw.WriteString(": ")
	bw.WriteString(v)
	bw.WriteString("\r\n")
	return nil
}

// hopHeaders are ReverseProxy's: not passed on by a proxy (RFC 9110 7.6.1).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

func isHopByHop(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization",
		"Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// removeHopByHopHeaders is ReverseProxy's: the headers Connection names,
// then the fixed hop-by-hop ones.
func removeHopByHopHeaders(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = strings.TrimSpace(sf); sf != "" {
				h.Del(sf)
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// hasToken reports whether the comma-separated values hold token, case
// insensitively.
func hasToken(values []string, token string) bool {
	for _, v := range values {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		for _, v := range vs {
			dst.Add(k, v)
		}
	}
}

// isEventStream reports whether a Content-Type is text/event-stream, which
// ReverseProxy flushes as it comes (without mime.ParseMediaType's
// allocations: only the media type is compared).
func isEventStream(ct string) bool {
	const sse = "text/event-stream"
	ct = strings.TrimLeft(ct, " \t")
	if len(ct) < len(sse) || !strings.EqualFold(ct[:len(sse)], sse) {
		return false
	}
	rest := strings.TrimLeft(ct[len(sse):], " \t")
	return rest == "" || rest[0] == ';'
}

// replayable is http.Request.isReplayable for a request whose body the
// fast path holds in memory.
func replayable(r *http.Request) bool {
	switch r.Method {
	case "GET", "HEAD", "OPTIONS", "TRACE":
		return true
	}
	return r.Header["Idempotency-Key"] != nil || r.Header["X-Idempotency-Key"] != nil
}

// cleanQueryParams is ReverseProxy's: a query it would not parse the same
// way as the instance (a ';' or a bad escape) is re-encoded from what
// parses, so that the two cannot disagree about the parameters.
func cleanQueryParams(s string) string {
	reencode := func(s string) string {
		v, _ := url.ParseQuery(s)
		return v.Encode()
	}
	for i := 0; i < len(s); {
		switch s[i] {
		case ';':
			return reencode(s)
		case '%':
			if i+2 >= len(s) || !ishex(s[i+1]) || !ishex(s[i+2]) {
				return reencode(s)
			}
			i += 3
		default:
			i++
		}
	}
	return s
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}
