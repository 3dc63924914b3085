// Package sample is the demo and end-to-end test backend: one port that answers
// HTTP/1.1, h2c and gRPC with a description of the request it received, plus a
// stock grpc-go client (GRPCCall) that exercises it through a sidecar.
//
// It is deliberately an ordinary application: it never sets x-trellis-*
// headers (the mesh adds those) and it reaches other services only through the
// proxy named by the standard HTTP_PROXY / HTTPS_PROXY variables.
package sample

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"
)

// EchoConfig configures the echo backend.
type EchoConfig struct {
	// Service and Version are reported in every answer. Empty means the value
	// of TRELLIS_SERVICE / TRELLIS_VERSION, which `trellis run` sets.
	Service, Version string
	// Addr is the listen address used by ListenAndServeEcho
	// (default 127.0.0.1:9080). ServeEcho takes a listener and ignores it.
	Addr string
	// Logger receives request and lifecycle logs; nil means slog.Default().
	Logger *slog.Logger
	// FailStatus, when set (500-599), is the status of every HTTP echo
	// answer without ?status: an instance that always fails, for outlier
	// detection demos and tests.
	FailStatus int
	// HealthFile, when set, makes /healthz answer 503 while that file does
	// not exist (and echo as usual while it does); every other path is
	// answered as usual: an instance whose health check fails while it
	// still serves its traffic, for health check demos and tests.
	HealthFile string
}

const (
	defaultEchoAddr = "127.0.0.1:9080"
	// shutdownGrace bounds how long in-flight requests and streams may run
	// after ctx is cancelled before connections are closed hard.
	shutdownGrace = 5 * time.Second
)

func (c EchoConfig) withDefaults() EchoConfig {
	if c.Service == "" {
		c.Service = os.Getenv("TRELLIS_SERVICE")
	}
	if c.Version == "" {
		c.Version = os.Getenv("TRELLIS_VERSION")
	}
	if c.Addr == "" {
		c.Addr = defaultEchoAddr
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Logger = c.Logger.With("component", "sample", "service", c.Service, "version", c.Version)
	return c
}

// NewEchoHandler returns the echo handler (HTTP echo, /call and gRPC). To
// serve gRPC it must run on a server that speaks HTTP/2 (see ServeEcho).
func NewEchoHandler(cfg EchoConfig) http.Handler {
	return newEchoHandler(cfg.withDefaults())
}

// ListenAndServeEcho listens on cfg.Addr and calls ServeEcho.
func ListenAndServeEcho(ctx context.Context, cfg EchoConfig) error {
	cfg = cfg.withDefaults()
	lis, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return err
	}
	return ServeEcho(ctx, lis, cfg)
}

// ServeEcho serves HTTP/1.1, h2c (prior knowledge) and gRPC on lis until ctx
// is cancelled, then shuts down gracefully: health turns NOT_SERVING, the
// listener closes, and in-flight requests and streams get shutdownGrace to
// finish. It returns nil after a shutdown caused by ctx.
func ServeEcho(ctx context.Context, lis net.Listener, cfg EchoConfig) error {
	cfg = cfg.withDefaults()
	h := newEchoHandler(cfg)

	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true) // h2c with prior knowledge; gRPC rides on it
	srv := &http.Server{
		Handler:           h,
		Protocols:         &protocols,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
	}

	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	cfg.Logger.Info("echo serving", "addr", lis.Addr().String())

	select {
	case err := <-served: // listener failed before we were asked to stop
		h.grpc.Stop()
		return err
	case <-ctx.Done():
	}

	h.health.Shutdown()
	sctx, cancel := context.WithTimeout(context.Background(), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		cfg.Logger.Warn("echo shutdown not graceful, closing connections", "err", err)
		srv.Close()
	}
	// Not GracefulStop: for ServeHTTP transports "drain" means close, which
	// would cut the streams Shutdown has just waited for. By now they are done.
	h.grpc.Stop()
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	cfg.Logger.Info("echo stopped")
	return nil
}
