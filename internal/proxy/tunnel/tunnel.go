// Package tunnel serves HTTP CONNECT requests — what an app sends through
// an HTTP proxy for a "https" or gRPC target (grpc-go with HTTPS_PROXY) —
// without being a blind TCP tunnel: it answers 200, sniffs the protocol
// inside, and serves the requests inside with the same routing handler, one
// by one, so that routing, balancing, errors and metrics apply to each.
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
)

// sniffTimeout bounds how long a client may take to send its first bytes.
const sniffTimeout = 10 * time.Second

// Server serves CONNECT tunnels with an http.Handler.
//
// The requests inside are served by two std http.Servers, one speaking
// HTTP/1.1 and one HTTP/2 (prior knowledge), each fed one connection at a
// time through a one-connection listener. Using std servers, rather than
// x/net's http2.Server.ServeConn (deprecated since Go 1.24's
// http.Server.Protocols), gives both protocols the same graceful Shutdown:
// idle HTTP/1.1 connections close, HTTP/2 ones get a GOAWAY.
type Server struct {
	log    *slog.Logger
	h1, h2 *http.Server

	mu      sync.Mutex
	conns   map[*conn]struct{} // every hijacked connection still open
	closing bool
}

// New returns a tunnel Server that serves what is inside with h.
func New(h http.Handler, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{log: log, conns: map[*conn]struct{}{}}
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

// ServeHTTP takes over a CONNECT request's connection and serves the tunnel
// until it closes. Only HTTP/1.x CONNECT can be taken over.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor != 1 {
		http.Error(w, "CONNECT is supported over HTTP/1.1 only", http.StatusMethodNotAllowed)
		return
	}
	target := r.Host // CONNECT's request target, host:port
	raw, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "cannot take over the connection: "+err.Error(), http.StatusInternalServerError)
		return
	}
	c := newConn(raw, brw.Reader, target, s)
	if !s.track(c) {
		raw.Close()
		return
	}
	if _, err := io.WriteString(raw, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		c.Close()
		return
	}
	proto, err := Detect(raw, brw.Reader, sniffTimeout)
	if err != nil {
		s.log.Debug("tunnel closed before its protocol was known", "target", target, "error", err)
		c.Close()
		return
	}
	s.log.Debug("tunnel open", "target", target, "protocol", proto)
	srv := s.h1
	if proto == HTTP2 {
		srv = s.h2
	}
	// Serve returns when the connection closes (the listener then reports
	// closed), when Shutdown closes the listener (the server keeps serving
	// the connection until it is idle), or at once if the server was
	// already shut down: then nobody owns the connection but us.
	l := newOneConnListener(c)
	err = srv.Serve(l)
	if !l.accepted.Load() {
		c.Close()
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
		s.log.Debug("tunnel serve", "target", target, "error", err)
	}
}

// Shutdown stops the tunnel servers gracefully: requests in flight finish,
// idle tunnels close. When ctx ends first, every tunnel still open is
// closed.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, srv := range []*http.Server{s.h1, s.h2} {
		wg.Go(func() { errs[i] = srv.Shutdown(ctx) })
	}
	wg.Wait()
	err := errors.Join(errs...)
	if err != nil || s.open() > 0 {
		s.closeAll()
	}
	return err
}

// Close closes every tunnel at once.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closing = true
	s.mu.Unlock()
	err := errors.Join(s.h1.Close(), s.h2.Close())
	s.closeAll()
	return err
}

// open is the number of tunnels not yet closed.
func (s *Server) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

func (s *Server) track(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *Server) closeAll() {
	s.mu.Lock()
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}
