// Package h1server is the proxy's HTTP/1.1 server: a connection loop that
// reads plain keep-alive requests, hands each to an http.Handler with a
// lean ResponseWriter, and gives every connection it does not fully
// understand to a net/http server, which then serves it for the rest of
// its life.
//
// Why by hand: a proxy hop is mostly its server side. Profiles of a
// gateway hop (docs/performance.md) put net/http's server at a third of
// the proxy's CPU after the forwarding fast path: a goroutine started per
// request to watch for the client closing, a context and its cancel per
// request, textproto's parsing and the header map per request, the
// response writer's two buffers, Content-Type sniffing. nginx and HAProxy
// do none of these, which is most of what separates their throughput from
// ours on one core.
//
// What it serves itself: HTTP/1.1 requests with a Host field, an
// origin-form or absolute http:// target, no Transfer-Encoding, Expect,
// Upgrade or Trailer field, and a body of at most 32 KiB with a
// Content-Length — the requests the forwarder's fast path takes. The head
// is parsed strictly (CRLF line ends, token names, no obs-fold, no control
// bytes); anything else (HTTP/1.0, h2c, CONNECT, chunked uploads, odd or
// malformed heads) goes to the Fallback net/http server with the bytes
// read so far, so net/http keeps answering everything unusual exactly as
// before, its 400s included.
//
// What a handler gets: an *http.Request as net/http would have built it
// (its Context is context.Background: nothing watches the client while
// the handler runs; a client that went away is noticed when the answer is
// written), and a ResponseWriter that sends 1xx at once, takes the header
// as it is at WriteHeader (later changes count only for trailers, as with
// net/http), holds the final head until the framing is known, frames the
// body by its Content-Length or else chunked (a short body without a
// length or announced trailers gets a length, as net/http does; for HEAD
// the body is counted and dropped), adds Date, sends trailers after a
// chunked body, flushes when the handler returns unless another pipelined
// request is already buffered, and does not sniff a Content-Type (a proxy
// passes the instance's headers as they are).
package h1server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"trellis.dev/trellis/internal/proxy/mesherr"
	"trellis.dev/trellis/internal/proxy/sockio"
)

// Buffer sizes per connection. A head larger than readBufferSize goes to
// net/http (see MaxHeaderBytes for its limit).
const (
	readBufferSize  = 8 << 10
	writeBufferSize = 4 << 10
)

// Server serves HTTP/1.1 connections, handing those it does not take to
// Fallback.
type Server struct {
	// Handler serves every request this server reads itself.
	Handler http.Handler
	// Fallback serves the connections handed off; its own Handler is
	// used for them. Required.
	Fallback *http.Server
	// IdleTimeout bounds the wait for the next request's head (and for the
	// rest of a head that started). Zero means 2 minutes.
	IdleTimeout time.Duration
	// WriteTimeout bounds each write to the client on this server's own
	// loop: a client that stops reading fails the response's writes after
	// it (the handler sees the error; the connection is closed), instead
	// of holding the handler's goroutine for ever. The deadline is set
	// afresh at most once a second, so a write that makes no progress
	// fails after WriteTimeout-1s to WriteTimeout. Zero means
	// DefaultWriteTimeout; negative, none. Connections handed to Fallback
	// follow its own WriteTimeout.
	WriteTimeout time.Duration
	// Log receives unexpected handler panics. Nil discards.
	Log *slog.Logger

	// MaxHeaderBytes bounds a request head (request line, header fields
	// and the empty line, line ends included); MaxHeaders bounds its
	// number of header fields, Host included. A request over either is
	// answered 431 with x-trellis-error: header_too_large and its
	// connection closed, on the fast path and on the connections handed
	// off alike: the first Serve wraps Fallback.Handler in LimitHeaders
	// and, unless set, sets Fallback.MaxHeaderBytes to twice
	// MaxHeaderBytes as a backstop (net/http stops reading a head there;
	// its 431, on HTTP/1, is replaced by ours). Zero means
	// DefaultMaxHeaderBytes, DefaultMaxHeaders.
	MaxHeaderBytes int
	MaxHeaders     int
	// HeaderTooLarge, when set, is called for each request refused with
	// 431 (for metrics).
	HeaderTooLarge func()

	// BadRequest, when set, is called for each request refused with 400
	// bad_request for its framing (framing.go), for metrics.
	BadRequest func()

	maxHeaderBytes, maxHeaders int    // resolved by the first Serve
	marker                     string // names the stand-ins of refused heads (framing.go)

	closing atomic.Bool

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	handoff   *handoffListener // created with the first Serve
	fallback  chan error       // Fallback.Serve's result
}

// DefaultWriteTimeout is WriteTimeout's default: a client that reads
// nothing for a minute is gone.
const DefaultWriteTimeout = 60 * time.Second

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = http.ErrServerClosed

// Serve accepts connections on ln until Shutdown or Close. It closes ln.
func (s *Server) Serve(ln net.Listener) error {
	if !s.track(ln) {
		ln.Close()
		return ErrServerClosed
	}
	defer s.untrack(ln)
	defer ln.Close()
	var delay time.Duration
	for {
		rw, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			// As net/http: back off on temporary accept errors. EMFILE and
			// ENFILE are temporary, not timeouts: testing Timeout() would
			// stop serving for good when the process runs out of file
			// descriptors for a moment.
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := s.newConn(rw)
		if !s.trackConn(c) {
			rw.Close()
			return ErrServerClosed
		}
		go c.serve()
	}
}

// track registers ln, and starts the fallback server once.
func (s *Server) track(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
	}
	s.listeners[ln] = struct{}{}
	if s.handoff == nil {
		s.setLimits()
		s.handoff = newHandoffListener(ln.Addr())
		s.fallback = make(chan error, 1)
		go func() { s.fallback <- s.Fallback.Serve(s.handoff) }()
	}
	return true
}

// setLimits resolves the header limits and applies them to Fallback.
func (s *Server) setLimits() {
	s.maxHeaderBytes, s.maxHeaders = s.MaxHeaderBytes, s.MaxHeaders
	if s.maxHeaderBytes <= 0 {
		s.maxHeaderBytes = DefaultMaxHeaderBytes
	}
	if s.maxHeaders <= 0 {
		s.maxHeaders = DefaultMaxHeaders
	}
	if s.Fallback.MaxHeaderBytes == 0 {
		s.Fallback.MaxHeaderBytes = 2 * s.maxHeaderBytes
	}
	h := s.Fallback.Handler
	if h == nil {
		h = http.DefaultServeMux
	}
	s.marker = newMarker()
	s.Fallback.Handler = s.refuseMarked(LimitHeaders(h, s.maxHeaderBytes, s.maxHeaders, s.HeaderTooLarge))
}

// badRequest counts one 400 bad_request.
func (s *Server) badRequest() {
	if s.BadRequest != nil {
		s.BadRequest()
	}
}

// refused counts one 431.
func (s *Server) refused() {
	if s.HeaderTooLarge != nil {
		s.HeaderTooLarge()
	}
}

func (s *Server) untrack(ln net.Listener) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.listeners, ln)
}

func (s *Server) trackConn(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrackConn(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// Shutdown stops accepting, closes idle connections, lets requests in
// flight finish (each answer then says Connection: close), and shuts the
// fallback server down the same way. When ctx ends first, it returns
// ctx's error and what is still open stays open: call Close.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.closeListeners()
	fallbackErr := make(chan error, 1)
	go func() { fallbackErr <- s.Fallback.Shutdown(ctx) }()

	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.closeIdle() == 0 {
			break
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return <-fallbackErr
}

// Close closes the listeners and every connection at once, the fallback
// server's too.
func (s *Server) Close() error {
	s.closing.Store(true)
	s.closeListeners()
	s.mu.Lock()
	for c := range s.conns {
		c.rwc.Close()
	}
	s.mu.Unlock()
	return s.Fallback.Close()
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ln := range s.listeners {
		ln.Close()
	}
	if s.handoff != nil {
		s.handoff.Close()
	}
}

// closeIdle wakes every connection waiting for a request, which then sees
// the server closing and closes; it returns how many connections are left.
func (s *Server) closeIdle() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.idle.Load() {
			c.rwc.SetReadDeadline(aLongTimeAgo)
		}
	}
	return len(s.conns)
}

// aLongTimeAgo is a deadline that fails a blocked read at once.
var aLongTimeAgo = time.Unix(1, 0)

// conn is one client connection and what its requests reuse.
type conn struct {
	s      *Server
	rwc    net.Conn // the accepted connection
	rw     net.Conn // rwc read and written with raw system calls (sockio)
	br     *bufio.Reader
	bw     *bufio.Writer
	remote string // RemoteAddr, formatted once

	// idle: waiting for a request's head. Set after the read deadline, so
	// that Shutdown's past deadline is never overwritten by the loop's.
	idle atomic.Bool

	wd deadlineWriter // what bw writes to

	reqHeader http.Header // cleared and reused by every request
	resHeader http.Header
	res       response
	body      *bodyReader // the current request's, nil without a body
}

var (
	readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}
	writers = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writeBufferSize) }}
)

func (s *Server) newConn(rwc net.Conn) *conn {
	rw := sockio.Wrap(rwc) // raw system calls: why in package sockio
	br := readers.Get().(*bufio.Reader)
	br.Reset(rw)
	bw := writers.Get().(*bufio.Writer)
	c := &conn{s: s, rwc: rwc, rw: rw, br: br, bw: bw, remote: rwc.RemoteAddr().String(),
		reqHeader: http.Header{}, resHeader: http.Header{}}
	c.wd = deadlineWriter{c: c, timeout: s.WriteTimeout}
	if c.wd.timeout == 0 {
		c.wd.timeout = DefaultWriteTimeout
	}
	bw.Reset(&c.wd)
	return c
}

// deadlineWriter writes to the connection with a write deadline of
// timeout, moved forward at most once a second (a timer update per write
// would cost more than the write at full speed).
type deadlineWriter struct {
	c       *conn
	timeout time.Duration // negative: none
	rearm   time.Time     // when the deadline is next moved; zero: never set
}

func (w *deadlineWriter) Write(p []byte) (int, error) {
	if w.timeout > 0 {
		if now := time.Now(); now.After(w.rearm) {
			w.c.rwc.SetWriteDeadline(now.Add(w.timeout))
			w.rearm = now.Add(time.Second)
		}
	}
	return w.c.rw.Write(p)
}

// serve reads and answers requests until the connection ends or is handed
// off.
func (c *conn) serve() {
	handedOff := false
	defer func() {
		c.s.untrackConn(c)
		if handedOff {
			return // the reader belongs to the fallback server now
		}
		c.rwc.Close()
		c.br.Reset(nil)
		c.bw.Reset(nil)
		readers.Put(c.br)
		writers.Put(c.bw)
	}()
	idleTimeout := c.s.IdleTimeout
	if idleTimeout == 0 {
		idleTimeout = 2 * time.Minute
	}
	for {
		c.rwc.SetReadDeadline(time.Now().Add(idleTimeout))
		c.idle.Store(true)
		if c.s.closing.Load() {
			return
		}
		head, err := c.readHead()
		c.idle.Store(false)
		if err != nil {
			if err == errHeadTooLarge {
				c.refuse(HeadTooLarge(c.s.maxHeaderBytes))
			}
			return // closed, timed out, or woken by Shutdown
		}
		var r *http.Request
		v := handOff
		if head != nil {
			r, v = parseHead(head, c.remote, c.reqHeader, c.s.maxHeaders)
		}
		if v == tooManyFields {
			c.refuse(TooManyHeaders(c.s.maxHeaders))
			return
		}
		if v == handOff {
			// What the own loop does not serve may be badly framed: refused
			// here when its head is whole in the buffer, else by the
			// framer that net/http reads through.
			buf, _ := c.br.Peek(c.br.Buffered())
			if h := checkHead(buf); h.reason != "" {
				c.s.badRequest()
				if c.bw.Flush() == nil {
					Refuse(c.rw, BadFraming(h.reason))
				}
				return
			}
			handedOff = c.handOff()
			return
		}
		c.br.Discard(len(head))
		if !c.serveRequest(r) {
			return
		}
	}
}

// readHead waits until the buffer holds a whole request head and returns
// it (still buffered: the caller discards it). A head that does not fit
// the buffer, or that parseHead will refuse whatever follows, returns nil,
// nil: it goes to net/http at once. A head over MaxHeaderBytes (possible
// here only when that is below the buffer's size) is errHeadTooLarge.
func (c *conn) readHead() ([]byte, error) {
	for {
		n := c.br.Buffered()
		buf, _ := c.br.Peek(n)
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			if i+4 > c.s.maxHeaderBytes {
				return nil, errHeadTooLarge
			}
			return buf[:i+4], nil
		}
		if n > c.s.maxHeaderBytes {
			return nil, errHeadTooLarge
		}
		if n == c.br.Size() || !mayBeServed(buf) {
			return nil, nil
		}
		if _, err := c.br.Peek(n + 1); err != nil {
			if n > 0 && errors.Is(err, io.EOF) {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

var errHeadTooLarge = errors.New("request head too large")

// refuse answers e (a 431) and waits for the client a moment before the
// connection closes (Refuse). What was answered before goes out first.
func (c *conn) refuse(e *mesherr.Error) {
	c.s.refused()
	if err := c.bw.Flush(); err != nil {
		return
	}
	Refuse(c.rw, e)
}

// mayBeServed reports whether buf, the start of a head whose end has not
// come yet, may still be one parseHead serves. When not, waiting for a
// CRLF CRLF could wait forever: a head with bare LF line ends is whole for
// net/http at its LF LF, and net/http answers a bad request line (HTTP/0.9,
// garbage) as soon as it has read it.
func mayBeServed(buf []byte) bool {
	for i, b := range buf {
		if b == '\n' && (i == 0 || buf[i-1] != '\r') {
			return false
		}
	}
	if i := bytes.Index(buf, []byte("\r\n")); i >= 0 {
		if _, _, ok := parseRequestLine(buf[:i]); !ok {
			return false
		}
	}
	return true
}

// serveRequest runs the handler for r and ends its response; it reports
// whether the connection goes on.
func (c *conn) serveRequest(r *http.Request) bool {
	c.body = nil
	if r.ContentLength > 0 {
		// A reader of its own per request: a transport may still read a
		// request's body after the handler returned (net/http writes it on
		// another goroutine), and must then get an error, never the next
		// request's bytes (see bodyReader.end).
		c.body = &bodyReader{br: c.br, left: r.ContentLength}
		r.Body = c.body
	}
	w := &c.res
	*w = response{c: c, req: r, hdr: c.resHeader, small: w.small[:0], fields: w.fields[:0],
		trailers: w.trailers[:0], closeAfter: r.Close}
	if !c.runHandler(w, r) {
		// Send what is buffered before closing, as net/http does: the
		// answers to the pipelined requests before this one are whole.
		c.bw.Flush()
		return false
	}
	keep := w.finish()
	clear(c.reqHeader)
	clear(c.resHeader)
	if left := c.body.end(); left > 0 {
		// What the handler did not read of the body (at most maxBody).
		if _, err := c.br.Discard(int(left)); err != nil {
			keep = false
		}
	}
	if !keep || c.br.Buffered() == 0 {
		// Flush unless the next request is already here: then its answer
		// goes out with this one.
		if err := c.bw.Flush(); err != nil {
			return false
		}
	}
	return keep
}

// runHandler calls the handler; a panic ends the connection without a
// word more (http.ErrAbortHandler is how a handler asks for that).
func (c *conn) runHandler(w *response, r *http.Request) (ok bool) {
	defer func() {
		if e := recover(); e != nil {
			if e != http.ErrAbortHandler && c.s.Log != nil {
				c.s.Log.Error("handler panic", "panic", e, "remote", c.remote)
			}
			ok = false
		}
	}()
	c.s.Handler.ServeHTTP(w, r)
	return true
}

// handOff gives the connection, with what was read of it, to the fallback
// server. It reports false when the server is closing and nobody took it.
func (c *conn) handOff() bool {
	if err := c.bw.Flush(); err != nil {
		return false
	}
	c.rwc.SetReadDeadline(time.Time{})
	if !c.wd.rearm.IsZero() {
		c.rwc.SetWriteDeadline(time.Time{}) // net/http sets its own, if any
	}
	fr := newFramer(c.br, c.s.Fallback.MaxHeaderBytes+4096, c.s.marker)
	return c.s.handoff.push(&handedConn{Conn: c.rw, r: fr, s: c.s})
}

// bodyReader reads a request body of known length from the connection's
// buffer, until the handler returns: end takes the buffer back, and a read
// after that (a transport's goroutine still sending the body) gets
// errBodyEnded instead of touching the connection's buffer, which the next
// request reads. The mutex makes end wait for a read in progress; it is
// uncontended but for that race.
type bodyReader struct {
	br    *bufio.Reader
	mu    sync.Mutex
	left  int64
	ended bool
}

// errBodyEnded is what a request body read after its handler returned gets.
var errBodyEnded = errors.New("h1server: request body read after its handler returned")

func (b *bodyReader) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ended {
		return 0, errBodyEnded
	}
	if b.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.br.Read(p)
	b.left -= int64(n)
	if err == io.EOF && b.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// end takes the connection's buffer back from the body when the handler
// has returned, and says how much of the body is left unread. nil has
// nothing left.
func (b *bodyReader) end() int64 {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ended = true
	return b.left
}

func (b *bodyReader) Close() error { return nil }

// handedConn is a connection given to net/http: reads start with what this
// server had buffered.
type handedConn struct {
	net.Conn
	r *framer // reads what this server had buffered, then the connection
	s *Server
}

func (c *handedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// Write replaces net/http's answer to a head over its MaxHeaderBytes (the
// backstop: see Server.MaxHeaderBytes) with ours, and so its plain 400s
// and 501s to the malformed requests it refuses itself (the framer
// refuses the framing cases before net/http sees them).
func (c *handedConn) Write(p []byte) (int, error) {
	var e *mesherr.Error
	if len(p) == len(netHTTP431) && string(p) == netHTTP431 {
		c.s.refused()
		e = HeadTooLarge(c.s.maxHeaderBytes)
	} else if reason, ok := netHTTPError(p); ok {
		c.s.badRequest()
		e = mesherr.New(mesherr.BadRequest, "malformed request: %s", reason)
	}
	if e != nil {
		if _, err := c.Conn.Write(ErrorResponse(e)); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// CloseWrite lets net/http half-close the connection before closing it
// (after a 431, or an answer leaving a large body unread), as it does with
// the *net.TCPConn it accepts itself: without it, the close that follows
// its wait can reset the connection under the answer.
func (c *handedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// handoffListener is the fallback server's listener: Accept returns the
// connections handed off.
type handoffListener struct {
	addr   net.Addr
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *handoffListener) push(c net.Conn) bool {
	select {
	case l.conns <- c:
		return true
	case <-l.closed:
		return false
	}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }
