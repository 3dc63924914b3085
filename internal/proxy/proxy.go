// Package proxy is the Trellis data plane: `trellis proxy` (a sidecar) and
// `trellis gateway`. It binds its listeners from its Config, takes what to
// do with traffic from the control plane over xDS, and swaps whole
// configuration snapshots atomically so that a request keeps the snapshot
// it started with.
//
// A sidecar has an outbound listener (127.0.0.1, the app's HTTP_PROXY: its
// calls into the mesh) and, when it has an app, an inbound listener (peers'
// calls to the app). A gateway has one listener that routes outside traffic
// into the mesh like outbound does. Every proxy has an admin listener.
package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"trellis.dev/trellis/internal/membership"
	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/admin"
	"trellis.dev/trellis/internal/proxy/balancer"
	"trellis.dev/trellis/internal/proxy/breaker"
	"trellis.dev/trellis/internal/proxy/forward"
	"trellis.dev/trellis/internal/proxy/h1server"
	"trellis.dev/trellis/internal/proxy/health"
	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/proxy/outlier"
	"trellis.dev/trellis/internal/proxy/stats"
	"trellis.dev/trellis/internal/proxy/tunnel"
)

// Proxy is one sidecar or gateway.
type Proxy struct {
	cfg    Config
	nodeID string
	log    *slog.Logger

	snapshot atomic.Pointer[model.Snapshot] // nil until the first config
	balancer *balancer.Set                  // state keyed by cluster name, outlives snapshots
	outliers *outlier.Detector              // ejections keyed by cluster name and address, outlive snapshots
	health   *health.Checker                // active health checks keyed by cluster name and address, outlive snapshots
	breakers breaker.Set                    // requests in flight per cluster with max_requests, outlive snapshots
	budgets  breaker.Budgets                // retry budgets per cluster, outlive snapshots
	metrics  *stats.Metrics
	toMesh   *forward.Forwarder // outbound and gateway: pools keyed by instance address
	toApp    *forward.Forwarder // inbound
	tunnels  *tunnel.Server     // CONNECT on the outbound listener

	// newSource builds the xDS client once the inbound port is known;
	// tests replace it to run without a control plane.
	newSource func(node nodeInfo) configSource
	source    atomic.Pointer[configSource]

	mu        sync.Mutex // guards the fields below
	started   bool
	listeners []*listener
	adminSrv  *http.Server
	adminAddr string
	xdsCancel context.CancelFunc
	xdsDone   chan struct{}

	newMember    func(membership.ClientConfig) memberClient // tests replace it
	member       memberClient                               // nil without an app
	memberCancel context.CancelFunc
	memberDone   chan struct{}

	bound        atomic.Bool
	shuttingDown atomic.Bool
	ready        chan struct{}
	readyOnce    sync.Once
}

// listener is one bound socket and the server on it.
type listener struct {
	name string // "inbound", "outbound", "gateway"
	ln   net.Listener
	srv  listenerServer
}

// listenerServer is what a listener needs of its server: *h1server.Server for the
// traffic listeners, *http.Server for admin.
type listenerServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// New checks cfg and returns a proxy that is not listening yet.
func New(cfg Config) (*Proxy, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	id := cfg.NodeID
	if id == "" {
		id = defaultNodeID(&cfg)
	}
	log := cfg.Logger.With("component", "proxy", "node", id)
	p := &Proxy{
		cfg:      cfg,
		nodeID:   id,
		log:      log,
		balancer: balancer.NewSet(),
		ready:    make(chan struct{}),
	}
	p.metrics = stats.New(func() bool { return p.xdsStatus().Connected })
	p.outliers = outlier.New(nil)
	p.outliers.OnEject = p.metrics.OutlierEjected
	p.health = health.New(health.Options{Logger: log, OnFailure: p.metrics.HealthCheckFailed, OnUnhealthy: p.metrics.HealthCheckUnhealthy})
	p.toMesh = forward.New(forward.Options{Logger: log, SetXForwarded: cfg.Role == meshxds.RoleGateway})
	if cfg.hasInbound() {
		p.toApp = forward.New(forward.Options{Logger: log, ResponseHeaders: http.Header{
			http.CanonicalHeaderKey(meshxds.HeaderService): {cfg.Service},
			http.CanonicalHeaderKey(meshxds.HeaderVersion): {cfg.Version},
		}})
	}
	p.newSource = p.newXDSClient
	p.newMember = newMembershipClient
	return p, nil
}

// Start binds every listener, starts serving, and starts the xDS client. It
// returns once the listeners are bound; Ready says when the first
// configuration is applied too. A sidecar with an app also starts probing
// the app and registers its instance while the app is ready. ctx bounds
// the xDS client and the membership stream: when it ends, both close (and
// the control plane deregisters this instance).
func (p *Proxy) Start(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.started {
		return errors.New("proxy: already started")
	}
	p.started = true

	if err := p.bind(); err != nil {
		p.closeListeners()
		return err
	}
	inboundPort := 0
	for _, l := range p.listeners {
		if l.name == stats.Inbound {
			inboundPort = l.ln.Addr().(*net.TCPAddr).Port
		}
	}
	src := p.newSource(nodeInfo{ID: p.nodeID, Node: node(&p.cfg, p.nodeID, inboundPort)})
	p.source.Store(&src)

	for _, l := range p.listeners {
		go p.serve(l.name, l.srv, l.ln)
	}
	p.bound.Store(true)
	p.maybeReady()

	xctx, cancel := context.WithCancel(ctx)
	p.xdsCancel, p.xdsDone = cancel, make(chan struct{})
	go func() {
		defer close(p.xdsDone)
		if err := src.Run(xctx); err != nil && !errors.Is(err, context.Canceled) {
			p.log.Error("xDS client stopped", "error", err)
		}
	}()
	p.startMembership(ctx, inboundPort)
	p.log.Info("proxy started", "role", p.cfg.Role, "control", p.cfg.ControlAddr,
		"inbound", p.addrOfLocked(stats.Inbound), "outbound", p.addrOfLocked(stats.Outbound),
		"gateway", p.addrOfLocked(stats.Gateway), "admin", p.adminAddr)
	return nil
}

// bind opens the sockets this role needs and builds their servers.
func (p *Proxy) bind() error {
	c := &p.cfg
	type want struct {
		name, field, addr string
		handler           http.Handler
	}
	var wants []want
	if c.hasInbound() {
		wants = append(wants, want{stats.Inbound, "InboundPort",
			net.JoinHostPort(c.Address, strconv.Itoa(c.InboundPort)), newInboundHandler(p)})
	}
	if c.Role == meshxds.RoleSidecar {
		h := &routeHandler{p: p, listener: meshxds.ListenerOutbound, direction: stats.Outbound}
		// The requests inside CONNECT tunnels get the header limits too
		// (the tunnel's net/http servers keep their own 1 MB backstop).
		p.tunnels = tunnel.New(h1server.LimitHeaders(h, c.MaxHeaderBytes, c.MaxHeaders,
			p.refused(stats.Outbound, http.StatusRequestHeaderFieldsTooLarge)), p.log)
		h.tunnels = p.tunnels
		wants = append(wants, want{stats.Outbound, "OutboundPort",
			net.JoinHostPort("127.0.0.1", strconv.Itoa(c.OutboundPort)), h})
	}
	if c.Role == meshxds.RoleGateway {
		wants = append(wants, want{stats.Gateway, "GatewayAddr", c.GatewayAddr,
			&routeHandler{p: p, listener: meshxds.ListenerGateway, direction: stats.Gateway}})
	}
	for _, w := range wants {
		ln, err := net.Listen("tcp", w.addr)
		if err != nil {
			return badField(w.field, "listen on %s: %v", w.addr, err)
		}
		lln := newLimitListener(ln, w.name, c.MaxConnections, p.metrics, p.log)
		var srv listenerServer = p.newServer(w.name, w.handler)
		if w.name == stats.Inbound {
			// Protocol detection first: HTTP to srv, the rest relayed to
			// the app (inbound_detect.go).
			srv = p.newInboundServer(srv.(*h1server.Server))
		}
		p.listeners = append(p.listeners, &listener{name: w.name, ln: lln, srv: srv})
	}
	ln, err := net.Listen("tcp", c.AdminAddr)
	if err != nil {
		return badField("AdminAddr", "listen on %s: %v", c.AdminAddr, err)
	}
	p.adminAddr = ln.Addr().String()
	p.adminSrv = &http.Server{
		Handler:           admin.Handler(adminSource{p}, p.metrics.Registry),
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    c.MaxHeaderBytes, // net/http's own 431: admin is not a mesh listener
		ErrorLog:          slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	go p.serve("admin", p.adminSrv, ln)
	return nil
}

// newServer serves HTTP/1.1 and HTTP/2 with prior knowledge (h2c), which is
// how gRPC and other h2 clients speak cleartext. Plain HTTP/1.1 keep-alive
// requests are read by our own loop (h1server: why there); every other
// connection is handed to net/http. Both enforce the header limits
// (h1server.Server.MaxHeaderBytes: h2 included).
func (p *Proxy) newServer(name string, h http.Handler) *h1server.Server {
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	fallback := &http.Server{
		Handler:           h,
		Protocols:         &protos,
		ReadHeaderTimeout: 30 * time.Second,
		// Longer than the forwarders' idle timeout (90s), so that the
		// client side of a pooled connection gives up on it first and
		// never sends on a connection this side is closing.
		IdleTimeout: 120 * time.Second,
		ErrorLog:    slog.NewLogLogger(p.log.Handler(), slog.LevelDebug),
	}
	return &h1server.Server{Handler: h, Fallback: fallback, IdleTimeout: fallback.IdleTimeout, Log: p.log,
		MaxHeaderBytes: p.cfg.MaxHeaderBytes, MaxHeaders: p.cfg.MaxHeaders,
		HeaderTooLarge: p.refused(name, http.StatusRequestHeaderFieldsTooLarge),
		BadRequest:     p.refused(name, http.StatusBadRequest)}
}

// refused counts a request a listener refused before routing (431, 400) as
// a request of its direction with that status and no service or version.
func (p *Proxy) refused(direction string, status int) func() {
	return func() { p.metrics.ObserveRequest(direction, "", "", status, 0) }
}

// serve runs srv on ln. Its goroutines carry the profiler label
// trellis_listener=<name>, which every connection goroutine (and the
// transport goroutines they start) inherits, so a CPU profile of a process
// holding several proxies and apps can be cut per listener
// (go tool pprof -tagfocus trellis_listener=outbound).
func (p *Proxy) serve(name string, srv listenerServer, ln net.Listener) {
	pprof.Do(context.Background(), pprof.Labels("trellis_listener", name), func(context.Context) {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			p.log.Error("listener stopped", "listener", name, "error", err)
		}
	})
}

func (p *Proxy) closeListeners() {
	for _, l := range p.listeners {
		l.ln.Close()
	}
	p.listeners = nil
}

// Ready is closed once the listeners are bound and the first configuration
// is applied.
func (p *Proxy) Ready() <-chan struct{} { return p.ready }

func (p *Proxy) maybeReady() {
	if p.bound.Load() && p.snapshot.Load() != nil {
		p.readyOnce.Do(func() {
			close(p.ready)
			p.log.Info("proxy ready")
		})
	}
}

// InboundAddr is the bound inbound address, "" when there is none.
func (p *Proxy) InboundAddr() string { return p.addrOf(stats.Inbound) }

// OutboundAddr is the bound outbound address, "" when there is none.
func (p *Proxy) OutboundAddr() string { return p.addrOf(stats.Outbound) }

// GatewayAddr is the bound gateway address, "" when there is none.
func (p *Proxy) GatewayAddr() string { return p.addrOf(stats.Gateway) }

// AdminAddr is the bound admin address, "" before Start.
func (p *Proxy) AdminAddr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.adminAddr
}

func (p *Proxy) addrOf(name string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addrOfLocked(name)
}

func (p *Proxy) addrOfLocked(name string) string {
	for _, l := range p.listeners {
		if l.name == name {
			return l.ln.Addr().String()
		}
	}
	return ""
}
