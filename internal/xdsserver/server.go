// Package xdsserver serves the mesh's Envoy configuration to proxies over
// ADS (state-of-the-world and delta) with go-control-plane, keeps one
// snapshot per connected node, records what each node ACKed or rejected, and
// registers the instance a connected sidecar announces.
package xdsserver

import (
	"context"
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
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"trellis.dev/trellis/internal/api"
)

// Registrar records the instance a connected sidecar announces; deregister
// is called when its last stream closes.
//
// ctx bounds the Register call only (it is the announcing stream's
// context); the registration lives until deregister is called. If Register
// fails, the stream is closed with the error, so the proxy reconnects and
// the registration is retried.
type Registrar interface {
	Register(ctx context.Context, inst api.Instance) (deregister func(), err error)
}

// Config configures a Server.
type Config struct {
	Registrar Registrar    // may be nil: nothing is registered
	Logger    *slog.Logger // nil: slog.Default()
}

// Keepalive: a proxy that vanishes without closing its TCP connection
// (killed VM, cable pulled) is detected within Time+Timeout ≈ 8s, and then
// its stream closes and its instance is deregistered.
const (
	keepaliveTime    = 5 * time.Second
	keepaliveTimeout = 3 * time.Second
)

// Server is the xDS server. Create it with New.
type Server struct {
	log   *slog.Logger
	reg   Registrar
	cache *sotwCache
	grpc  *grpc.Server

	ctx    context.Context // ends at Stop; bounds stream processing
	cancel context.CancelFunc

	updateMu sync.Mutex // serialises Update, so publishes follow call order

	mu      sync.Mutex
	version uint64          // last published snapshot version; 0 before the first
	snap    *cache.Snapshot // last published snapshot; nil before the first
	pub     *published      // snap as it is served
	streams map[streamKey]*streamState
	nodes   map[string]*nodeState
	regs    map[string]*registration
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
		reg:     cfg.Registrar,
		ctx:     ctx,
		cancel:  cancel,
		streams: map[streamKey]*streamState{},
		nodes:   map[string]*nodeState{},
		regs:    map[string]*registration{},
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
	return s
}

// Serve serves xDS on lis until Stop. Both state-of-the-world and delta
// variants of ADS and of the per-type services are served.
func (s *Server) Serve(lis net.Listener) error {
	s.log.Info("serving xDS", "address", lis.Addr().String())
	return s.grpc.Serve(lis)
}

// Stop closes every stream (deregistering every instance) and the listener.
func (s *Server) Stop() {
	s.grpc.Stop()
	s.cancel()
}
