// Package tunnel serves HTTP CONNECT requests — what an app sends through
// an HTTP proxy for a "https" or gRPC target (grpc-go with HTTPS_PROXY).
//
// A tunnel to a mesh service that speaks HTTP in clear (HTTP/1.1, or h2
// with prior knowledge as gRPC does) is not a blind TCP tunnel: it is
// answered 200, the protocol inside is sniffed (package sniff), and the
// requests inside are served with the same routing handler, one by one, so
// that routing, balancing, errors and metrics apply to each. Anything else
// — TLS, bytes that are not HTTP, a protocol where the server speaks first,
// or any host outside the mesh — is relayed as TCP to where the caller
// says, bytes untouched, both ways, with half-close and an idle timeout.
package tunnel

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"trellis.dev/trellis/internal/proxy/sniff"
)

const (
	// FirstByteWait is how long a tunnel waits for the client's first
	// bytes before it takes the protocol for one where the server speaks
	// first (SMTP, MySQL, …) and relays it as TCP. Clients of protocols
	// where the client speaks first (TLS, HTTP, SSH, gRPC) send at once,
	// within a round trip on a local connection; so 200 ms only delays
	// server-first protocols, once per tunnel to a mesh service (a tunnel
	// to an external host relays the server's bytes meanwhile).
	FirstByteWait = 200 * time.Millisecond
	// sniffTimeout bounds how long a client that started sending may take
	// to send enough bytes to decide; what is undecided then is TCP. An
	// app's request line, h2 preface or ClientHello comes in one write
	// over loopback; a client of another protocol whose first message
	// looks like the start of one of them (a lone word) waits this long.
	sniffTimeout = time.Second
	// DefaultIdleTimeout ends a relayed tunnel with no byte either way for
	// this long (Envoy's TCP proxy idle timeout is 1 h too).
	DefaultIdleTimeout = time.Hour
	// meshDialTimeout bounds the connect to a mesh instance, as the
	// clusters' connect_timeout does for HTTP.
	meshDialTimeout = time.Second
)

// Server serves CONNECT tunnels.
//
// The requests inside routed tunnels are served by two std http.Servers,
// one speaking HTTP/1.1 and one HTTP/2 (prior knowledge), each fed one
// connection at a time through a one-connection listener. Using std
// servers, rather than x/net's http2.Server.ServeConn (deprecated since Go
// 1.24's http.Server.Protocols), gives both protocols the same graceful
// Shutdown: idle HTTP/1.1 connections close, HTTP/2 ones get a GOAWAY.
type Server struct {
	log    *slog.Logger
	h1, h2 *http.Server
	// IdleTimeout ends a relayed tunnel idle both ways for this long; set
	// it before the first tunnel. DefaultIdleTimeout when zero.
	IdleTimeout time.Duration

	conns Tracker[*conn] // every hijacked connection still open, and the relays running
}

// Info describes a tunnel when it ends, for metrics.
type Info struct {
	Target   string // CONNECT's host:port
	External bool   // to a host outside the mesh
	Result   sniff.Result
	// Upstream is the address relayed to; empty when the tunnel was routed
	// request by request, or ended before a relay started.
	Upstream string
	// Sent and Received count the bytes relayed client → upstream and
	// upstream → client.
	Sent, Received int64
}

// New returns a tunnel Server that serves the requests inside routed
// tunnels with h.
func New(h http.Handler, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{log: log}
	inner := defaultHost(h)
	newServer := func(p *http.Protocols) *http.Server {
		return &http.Server{
			Handler:           inner,
			Protocols:         p,
			ReadHeaderTimeout: 30 * time.Second,
			IdleTimeout:       120 * time.Second,
			ConnContext: func(ctx context.Context, c net.Conn) context.Context {
				if tc, ok := c.(*conn); ok {
					return context.WithValue(ctx, targetKey{}, tc.target)
				}
				return ctx
			},
			ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
	}
	var p1, p2 http.Protocols
	p1.SetHTTP1(true)
	p2.SetUnencryptedHTTP2(true)
	s.h1, s.h2 = newServer(&p1), newServer(&p2)
	return s
}

type targetKey struct{}

// defaultHost gives a request inside a tunnel the CONNECT target as its Host
// when it has none (HTTP/1.0, or an empty Host header).
func defaultHost(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Host == "" {
			if t, ok := r.Context().Value(targetKey{}).(string); ok {
				r.Host = t
			}
		}
		h.ServeHTTP(w, r)
	})
}

// hijack takes over a CONNECT request's connection and answers 200. Only
// HTTP/1.x CONNECT can be taken over.
func (s *Server) hijack(w http.ResponseWriter, r *http.Request) (*conn, bool) {
	if r.ProtoMajor != 1 {
		http.Error(w, "CONNECT is supported over HTTP/1.1 only", http.StatusMethodNotAllowed)
		return nil, false
	}
	raw, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot take over the connection: "+err.Error(), http.StatusInternalServerError)
		return nil, false
	}
	c := newConn(raw, brw.Reader, r.Host, s) // CONNECT's request target, host:port
	if !s.conns.Track(c) {
		raw.Close()
		return nil, false
	}
	if _, err := io.WriteString(raw, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		c.Close()
		return nil, false
	}
	return c, true
}

// ServeMesh serves a CONNECT to a mesh service until the tunnel closes. It
// answers 200 and sniffs the first bytes: HTTP/1.x and h2 are served
// request by request; anything else is relayed as TCP to the instance pick
// returns (host:port), picked per tunnel. A failure to pick or connect can
// only close the tunnel: its 200 went first. done, if not nil, is called
// when the tunnel ends.
func (s *Server) ServeMesh(w http.ResponseWriter, r *http.Request, pick func() (string, error), done func(Info)) {
	c, ok := s.hijack(w, r)
	if !ok {
		return
	}
	info := Info{Target: c.target}
	defer func() {
		if done != nil {
			done(info)
		}
	}()
	res, err := sniff.Detect(c.Conn, c.r, FirstByteWait, sniffTimeout)
	info.Result = res
	if err != nil {
		s.log.Debug("tunnel closed before its protocol was known", "target", c.target, "error", err)
		c.Close()
		return
	}
	if res.Protocol.IsHTTP() {
		s.log.Debug("tunnel open, routed", "target", c.target, "protocol", res.Protocol)
		s.serveHTTP(c, res.Protocol)
		return
	}
	addr, err := pick()
	if err != nil {
		s.log.Info("tunnel closed: no instance to relay to", "target", c.target, "protocol", res.Protocol, "error", err)
		c.Close()
		return
	}
	// Not r's context: it may end once the connection is taken over.
	d := net.Dialer{Timeout: meshDialTimeout}
	up, err := d.Dial("tcp", addr)
	if err != nil {
		s.log.Info("tunnel closed: connect to the instance failed", "target", c.target, "instance", addr, "error", err)
		c.Close()
		return
	}
	info.Upstream = addr
	s.log.Debug("tunnel open, relayed", "target", c.target, "instance", addr, "protocol", res.Protocol, "sni", res.SNI, "alpn", res.ALPN)
	s.runRelay(newRelay(c, c.r, up, s.idleTimeout()), &info, nil)
}

// ServeExternal serves a CONNECT to a host outside the mesh, to which the
// caller has connected already (so that a failure got an exact answer
// instead of the 200): it answers 200 and relays both ways, untouched, as
// if there were no mesh. The first bytes are sniffed only to log and count
// the protocol (and TLS's SNI); the server's bytes flow meanwhile. done, if
// not nil, is called when the tunnel ends.
func (s *Server) ServeExternal(w http.ResponseWriter, r *http.Request, up net.Conn, done func(Info)) {
	c, ok := s.hijack(w, r)
	if !ok {
		up.Close()
		return
	}
	info := Info{Target: c.target, External: true, Upstream: up.RemoteAddr().String()}
	rl := newRelay(c, c.r, up, s.idleTimeout())
	s.runRelay(rl, &info, func() error {
		// Only for the log and metrics: the client's bytes wait for it
		// FirstByteWait at most.
		res, err := sniff.Detect(c.Conn, c.r, FirstByteWait, FirstByteWait)
		rl.touch()
		info.Result = res
		if err == nil {
			s.log.Debug("tunnel open, external", "target", c.target, "address", info.Upstream,
				"protocol", res.Protocol, "sni", res.SNI, "alpn", res.ALPN)
		}
		return err
	})
	if done != nil {
		done(info)
	}
}

// runRelay runs both directions of rl: up → client at once, client → up
// after before (sniffing) returns, until both ended; then it closes both.
func (s *Server) runRelay(rl *relay, info *Info, before func() error) {
	defer s.conns.RelayStarted()()
	var err error
	info.Sent, info.Received, err = rl.run(before)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		s.log.Debug("tunnel relay ended", "target", info.Target, "error", err)
	}
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout > 0 {
		return s.IdleTimeout
	}
	return DefaultIdleTimeout
}

// serveHTTP serves the requests inside c with the server of its protocol.
func (s *Server) serveHTTP(c *conn, proto sniff.Protocol) {
	srv := s.h1
	if proto == sniff.HTTP2 {
		srv = s.h2
	}
	// Serve returns when the connection closes (the listener then reports
	// closed), when Shutdown closes the listener (the server keeps serving
	// the connection until it is idle), or at once if the server was
	// already shut down: then nobody owns the connection but us.
	l := newOneConnListener(c)
	err := srv.Serve(l)
	if !l.accepted.Load() {
		c.Close()
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		s.log.Debug("tunnel serve", "target", c.target, "error", err)
	}
}

// Shutdown stops the tunnel servers gracefully: requests in flight finish,
// idle tunnels close. When ctx ends first, every tunnel still open is
// closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.conns.Stop()

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, srv := range []*http.Server{s.h1, s.h2} {
		wg.Go(func() { errs[i] = srv.Shutdown(ctx) })
	}
	wg.Wait()
	err := errors.Join(errs...)
	// Relayed tunnels cannot be told to finish: they run until they end
	// or ctx does.
	if werr := s.conns.WaitRelays(ctx); err == nil {
		err = werr
	}
	if err != nil || s.conns.Open() > 0 {
		s.conns.CloseAll()
	}
	return err
}

// Close closes every tunnel at once.
func (s *Server) Close() error {
	s.conns.Stop()
	err := errors.Join(s.h1.Close(), s.h2.Close())
	s.conns.CloseAll()
	return err
}
