// Package xdsserver serves the mesh's Envoy configuration to proxies over
// ADS (state-of-the-world and delta) with go-control-plane, keeps one
// snapshot per connected node, and records what each node ACKed or
// rejected. The same gRPC server serves the membership service
// (internal/membership), over which sidecars register their instances:
// registration does not ride on the config stream.
package xdsserver

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	xds "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"trellis.dev/trellis/internal/membership"
)

// Registrar records the instances that sidecars announce as ready on their
// membership streams (internal/membership), which this server also serves.
type Registrar = membership.Registrar

// Config configures a Server.
type Config struct {
	Registrar Registrar    // may be nil: no membership service, nothing is registered
	Logger    *slog.Logger // nil: slog.Default()
	// AdmitRate bounds how many xDS streams per second may start; a stream
	// over the rate waits. A control plane restart makes every proxy
	// reconnect at once, and admitting them all together only makes every
	// first response slower. 0 means DefaultAdmitRate; negative, no bound.
	AdmitRate float64
}

// DefaultAdmitRate is the default Config.AdmitRate: 2,000 proxies are
// admitted in 4 s, each getting its first config without waiting for all.
const DefaultAdmitRate = 500

// Keepalive: a proxy that vanishes without closing its TCP connection
// (killed VM, cable pulled) is detected within Time+Timeout ≈ 8s, and then
// its stream closes and its instance is deregistered.
const (
	keepaliveTime    = 5 * time.Second
	keepaliveTimeout = 3 * time.Second
)

// Server is the xDS server. Create it with New.
type Server struct {
	log     *slog.Logger
	members *membership.Server // nil without a Registrar
	admit   *rate.Limiter
	cache   *sotwCache
	grpc    *grpc.Server

	ctx    context.Context // ends at Stop; bounds stream processing
	cancel context.CancelFunc

	updateMu sync.Mutex // serialises Update, so publishes follow call order

	mu      sync.Mutex
	version uint64          // last published snapshot version; 0 before the first
	snap    *cache.Snapshot // last published snapshot; nil before the first
	pub     *published      // snap as it is served
	streams map[streamKey]*streamState
	nodes   map[string]*nodeState
}

// New builds a Server; nothing is served until Serve.
func New(cfg Config) *Server {
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	logger = logger.With("component", "xds")
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		log:     logger,
		ctx:     ctx,
		cancel:  cancel,
		streams: map[streamKey]*streamState{},
		nodes:   map[string]*nodeState{},
	}
	switch {
	case cfg.AdmitRate == 0:
		s.admit = rate.NewLimiter(DefaultAdmitRate, DefaultAdmitRate)
	case cfg.AdmitRate > 0:
		s.admit = rate.NewLimiter(rate.Limit(cfg.AdmitRate), max(1, int(cfg.AdmitRate)))
	default:
		s.admit = rate.NewLimiter(rate.Inf, 0)
	}
	// The SnapshotCache's rules in ADS mode (hold EDS/RDS answers until the
	// proxy names every resource of the snapshot, so ADS stays consistent),
	// with SotW responses shared by every node; see sotwcache.go.
	s.cache = newSotwCache(cacheLogger{s.log})
	xdsServer := xds.NewServer(ctx, s.cache, callbacks{s}, sotw.WithLogger(cacheLogger{s.log}))

	s.grpc = grpc.NewServer(
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveTime, PermitWithoutStream: true}),
		// Stop waits for stream handlers, so every stream's close callback
		// (and with it deregistration) has run when Stop returns.
		grpc.WaitForHandlers(true),
		// Responses sharing a snapshot's resources are written from one
		// encoding of them (codec.go).
		grpc.ForceServerCodecV2(newResponseCodec(s.cache.recent.lookup)),
	)
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(s.grpc, xdsServer)
	endpointservice.RegisterEndpointDiscoveryServiceServer(s.grpc, xdsServer)
	clusterservice.RegisterClusterDiscoveryServiceServer(s.grpc, xdsServer)
	routeservice.RegisterRouteDiscoveryServiceServer(s.grpc, xdsServer)
	listenerservice.RegisterListenerDiscoveryServiceServer(s.grpc, xdsServer)
	if cfg.Registrar != nil {
		s.members = membership.NewServer(cfg.Registrar, logger)
		s.members.Attach(s.grpc)
	}
	return s
}

// Serve serves xDS on lis until Stop. Both state-of-the-world and delta
// variants of ADS and of the per-type services are served.
func (s *Server) Serve(lis net.Listener) error {
	s.log.Info("serving xDS", "address", lis.Addr().String())
	err := s.grpc.Serve(lis)
	if errors.Is(err, grpc.ErrServerStopped) {
		return nil // Stop came first: a clean stop all the same
	}
	return err
}

// Members lists the live membership streams (nil without a Registrar).
func (s *Server) Members() []membership.Member {
	if s.members == nil {
		return nil
	}
	return s.members.Members()
}

// Stop closes every stream and the listener. Instances stay registered:
// their sidecars are still running and register again with the next
// control plane; the registry's lease bounds how long they stay otherwise
// (see registry.Release).
func (s *Server) Stop() {
	if s.members != nil {
		s.members.Keep()
	}
	s.grpc.Stop()
	s.cancel()
}
