// Package control is the control plane process: the store (etcd), the
// instance registry, the aggregator that turns their state into xDS, the xDS
// server and the HTTP API, started and stopped together.
package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"trellis.dev/trellis/internal/registry"
	"trellis.dev/trellis/internal/store"
	"trellis.dev/trellis/internal/xdsserver"
)

// Default listen addresses (DESIGN.md, "Ports and defaults").
const (
	DefaultHTTPAddr = "127.0.0.1:15000"
	DefaultXDSAddr  = "127.0.0.1:15010"
)

// shutdownTimeout bounds how long Close waits for HTTP requests in flight.
const shutdownTimeout = 5 * time.Second

// The registry is what the xDS server registers connected sidecars with.
var _ xdsserver.Registrar = (*registry.Registry)(nil)

// Config configures a control plane.
type Config struct {
	DataDir  string   // embedded etcd's home (unused with Etcd)
	Etcd     []string // external etcd endpoints; empty: embedded etcd
	HTTPAddr string   // default DefaultHTTPAddr; ":0" ports allowed
	XDSAddr  string   // default DefaultXDSAddr; ":0" ports allowed
	Logger   *slog.Logger

	// AllowedHosts are Host names the HTTP API answers besides localhost,
	// loopback addresses and the host of HTTPAddr (any IP address when
	// HTTPAddr is 0.0.0.0 or [::]). Other Hosts get 421: a page whose
	// name is rebound to this machine cannot call the API.
	AllowedHosts []string
	// AllowedOrigins are browser origins (scheme://host[:port]) that may
	// call the HTTP API, with CORS. A request with any other Origin header
	// than the API's own gets 403.
	AllowedOrigins []string
	// MaxRouteConfigBytes bounds what an apply may make of the xDS
	// configuration every proxy receives: the route configuration, and the
	// total of each other resource type. 0: DefaultMaxRouteConfigBytes.
	MaxRouteConfigBytes int
	// XDSAdmitRate bounds how many xDS streams per second may start
	// (xdsserver.Config.AdmitRate): 0 is xdsserver.DefaultAdmitRate,
	// negative is no bound.
	XDSAdmitRate float64
}

// Server is a running control plane.
type Server struct {
	log     *slog.Logger
	store   *store.Store
	reg     *registry.Registry
	xds     *xdsserver.Server
	http    *http.Server
	httpLis net.Listener
	xdsLis  net.Listener

	cancel context.CancelFunc // ends the aggregator
	wg     sync.WaitGroup     // aggregator and serve goroutines

	done      chan struct{} // closed when Close has finished
	closeOnce sync.Once
	closeErr  error

	failMu  sync.Mutex
	failErr error // why the server stopped by itself, if it did
}

// Start binds both listeners, opens the store (starting an embedded etcd
// unless cfg.Etcd is set), publishes the current config once and serves
// until Close. ctx bounds the start only.
//
// The listeners are bound first, so a port already in use fails at once
// rather than after etcd has started.
func Start(ctx context.Context, cfg Config) (_ *Server, err error) {
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = DefaultHTTPAddr
	}
	if cfg.XDSAddr == "" {
		cfg.XDSAddr = DefaultXDSAddr
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{log: log.With("component", "control"), done: make(chan struct{})}

	var cleanup []func()
	defer func() {
		if err != nil {
			for i := len(cleanup) - 1; i >= 0; i-- {
				cleanup[i]()
			}
		}
	}()

	if s.httpLis, err = net.Listen("tcp", cfg.HTTPAddr); err != nil {
		return nil, fmt.Errorf("control: HTTP API: %w", err)
	}
	cleanup = append(cleanup, func() { s.httpLis.Close() })
	if s.xdsLis, err = net.Listen("tcp", cfg.XDSAddr); err != nil {
		return nil, fmt.Errorf("control: xDS: %w", err)
	}
	cleanup = append(cleanup, func() { s.xdsLis.Close() })
	gc := guardConfig{
		listenAddr: cfg.HTTPAddr, boundAddr: s.httpLis.Addr().String(),
		allowedHosts: cfg.AllowedHosts, allowedOrigins: cfg.AllowedOrigins,
	}
	if _, err := newGuard(nil, gc); err != nil { // a bad list fails before etcd starts
		return nil, fmt.Errorf("control: HTTP API: %w", err)
	}
	if cfg.MaxRouteConfigBytes < 0 {
		return nil, fmt.Errorf("control: MaxRouteConfigBytes %d is negative", cfg.MaxRouteConfigBytes)
	}

	if s.store, err = store.Open(ctx, store.Config{DataDir: cfg.DataDir, Endpoints: cfg.Etcd, Logger: log}); err != nil {
		return nil, fmt.Errorf("control: %w", err)
	}
	cleanup = append(cleanup, func() { s.store.Close() })
	s.reg = registry.New(s.store.Client(), registry.DefaultTTL, log)
	cleanup = append(cleanup, s.reg.Close)
	s.xds = xdsserver.New(xdsserver.Config{Registrar: s.reg, Logger: log, AdmitRate: cfg.XDSAdmitRate})
	cleanup = append(cleanup, s.xds.Stop)
	handler, err := newAPI(s.store, s.reg, s.xds, log, apiConfig{guard: gc, maxRouteConfigBytes: cfg.MaxRouteConfigBytes})
	if err != nil {
		return nil, fmt.Errorf("control: HTTP API: %w", err)
	}

	// Publish what is stored before any proxy can connect, so the first
	// proxy gets the current config rather than an empty one.
	agg := newAggregator(s.store, s.reg, s.xds, log)
	if err := agg.sync(ctx); err != nil {
		return nil, fmt.Errorf("control: reading the initial config: %w", err)
	}

	runCtx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	signals := s.store.Watch(runCtx)
	s.wg.Go(func() { agg.run(runCtx, signals) })

	s.http = newHTTPServer(handler, defaultHTTPLimits, log)
	s.wg.Go(func() {
		if err := s.http.Serve(s.httpLis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.fail(fmt.Errorf("HTTP API stopped: %w", err))
		}
	})
	s.wg.Go(func() {
		if err := s.xds.Serve(s.xdsLis); err != nil {
			s.fail(fmt.Errorf("xDS server stopped: %w", err))
		}
	})
	s.log.Info("control plane started", "http", s.HTTPAddr(), "xds", s.XDSAddr())
	return s, nil
}

// HTTPAddr is the bound address of the HTTP API.
func (s *Server) HTTPAddr() string { return s.httpLis.Addr().String() }

// XDSAddr is the bound address of the xDS server.
func (s *Server) XDSAddr() string { return s.xdsLis.Addr().String() }

// Store and Registry give tests and embedding programs (trellis demo) the
// parts directly.
func (s *Server) Store() *store.Store          { return s.store }
func (s *Server) Registry() *registry.Registry { return s.reg }

// Done is closed once the server has stopped, by Close or because a
// listener failed.
func (s *Server) Done() <-chan struct{} { return s.done }

// Wait blocks until the server has stopped and returns why: nil after
// Close, the failure if it stopped by itself.
func (s *Server) Wait() error {
	<-s.done
	s.failMu.Lock()
	defer s.failMu.Unlock()
	return s.failErr
}

// fail records why the server stopped by itself and closes it. It must not
// wait for the close: it runs on a goroutine Close waits for.
func (s *Server) fail(err error) {
	s.failMu.Lock()
	defer s.failMu.Unlock()
	if s.failErr != nil {
		return
	}
	s.failErr = err
	s.log.Error("control plane stopping", "err", err)
	go s.Close()
}

// Close stops the xDS server (its streams end, deregistering their
// instances), the HTTP API and the aggregator, revokes any lease still held
// and closes the store. Safe to call more than once; every call waits for
// the first to finish.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		// xDS first: proxies lose their streams and keep their last
		// config. Their instances stay registered under this control
		// plane's lease, released below and not revoked: the sidecars are
		// still running and register again with the next control plane
		// before the TTL runs out, so its first push has every endpoint.
		s.xds.Stop()
		ctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		if err := s.http.Shutdown(ctx); err != nil {
			s.closeErr = fmt.Errorf("control: HTTP shutdown: %w", err)
			s.http.Close()
		}
		cancel()
		s.wg.Wait()
		s.reg.Release()
		s.store.Close()
		s.log.Info("control plane stopped")
		close(s.done)
	})
	<-s.done
	return s.closeErr
}
