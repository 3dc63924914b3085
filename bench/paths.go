package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
)

// pathSpec is one way from the load generator to the backend.
type pathSpec struct {
	ID    string
	Title string
	Hops  int    // proxy hops between client and backend
	Ref   string // the nginx path with the same number of hops ("" for direct)
	What  string
	start func(ctx context.Context, h *harness) (*livePath, error)
}

// livePath is a started path: where each protocol's load goes and which
// proxies it crosses.
type livePath struct {
	targets map[string]target
	proxies map[string][]*proxyProc // by protocol, in path order
	all     []*proxyProc
	procs   []*proc // to notice a proxy that exits at start
	stop    func()
}

// Services the control plane knows in the Trellis paths.
const (
	svcBareHTTP   = "backend-http" // the backend itself, registered without a sidecar
	svcBareGRPC   = "backend-grpc" //
	svcMeshedHTTP = "meshed-http"  // the backend behind its inbound sidecar
	svcMeshedGRPC = "meshed-grpc"  //
	svcClient     = "bench-client" // the client-only outbound sidecar
)

var allPaths = []pathSpec{
	{ID: "direct", Title: "direct", Hops: 0,
		What:  "client → backend",
		start: startDirect},
	{ID: "nginx", Title: "nginx", Hops: 1, Ref: "nginx",
		What:  "client → nginx → backend",
		start: func(ctx context.Context, h *harness) (*livePath, error) { return startNginxChain(h, 1) }},
	{ID: "haproxy", Title: "HAProxy", Hops: 1, Ref: "nginx",
		What:  "client → HAProxy → backend",
		start: func(ctx context.Context, h *harness) (*livePath, error) { return startHAProxyChain(h, 1) }},
	{ID: "trellis-gateway", Title: "Trellis gateway", Hops: 1, Ref: "nginx",
		What:  "client → `trellis gateway` → backend (registered without a sidecar)",
		start: startTrellisGateway},
	{ID: "nginx-2", Title: "nginx → nginx", Hops: 2, Ref: "nginx-2",
		What:  "client → nginx → nginx → backend",
		start: func(ctx context.Context, h *harness) (*livePath, error) { return startNginxChain(h, 2) }},
	{ID: "haproxy-2", Title: "HAProxy → HAProxy", Hops: 2, Ref: "nginx-2",
		What:  "client → HAProxy → HAProxy → backend",
		start: func(ctx context.Context, h *harness) (*livePath, error) { return startHAProxyChain(h, 2) }},
	{ID: "trellis-sidecars", Title: "Trellis sidecar pair", Hops: 2, Ref: "nginx-2",
		What:  "client → outbound sidecar → inbound sidecar → backend (plaintext)",
		start: startTrellisSidecars},
	{ID: "trellis-gateway-sidecar", Title: "Trellis gateway → sidecar", Hops: 2, Ref: "nginx-2",
		What:  "client → `trellis gateway` → inbound sidecar → backend (not in the default run)",
		start: startTrellisGatewaySidecar},
}

// defaultPaths is what a plain run measures (fits in 15 minutes).
var defaultPaths = []string{"direct", "nginx", "haproxy", "trellis-gateway", "nginx-2", "haproxy-2", "trellis-sidecars"}

func findPath(id string) (pathSpec, bool) {
	for _, p := range allPaths {
		if p.ID == id {
			return p, true
		}
	}
	return pathSpec{}, false
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func freeListen() (listenAddrs, error) {
	var a listenAddrs
	var err error
	for _, p := range []*string{&a.H1, &a.H2C, &a.GRPC} {
		if *p, err = freeAddr(); err != nil {
			return a, err
		}
	}
	return a, nil
}

// startDirect is no proxy: the load goes to the backend's own ports.
func startDirect(_ context.Context, h *harness) (*livePath, error) {
	return &livePath{
		targets: map[string]target{
			protoH1: {Addr: h.backendHTTP}, protoH2C: {Addr: h.backendHTTP}, protoGRPC: {Addr: h.backendGRPC},
		},
		proxies: map[string][]*proxyProc{}, stop: func() {},
	}, nil
}

// sameProxies puts the same proxies on every protocol's path.
func sameProxies(ps ...*proxyProc) map[string][]*proxyProc {
	return map[string][]*proxyProc{protoH1: ps, protoH2C: ps, protoGRPC: ps}
}

// startNginxChain starts hops nginx instances, the first taking the load
// and the last forwarding to the backend. All run on the proxy CPU.
func startNginxChain(h *harness, hops int) (*livePath, error) {
	httpUp, grpcUp := h.backendHTTP, h.backendGRPC
	var chain []*proxyProc
	var procs []*proc
	var first listenAddrs
	stop := func() {
		for _, p := range procs {
			p.stop()
		}
	}
	for i := hops; i >= 1; i-- { // build from the backend side out
		l, err := freeListen()
		if err != nil {
			stop()
			return nil, err
		}
		dir := filepath.Join(h.work, fmt.Sprintf("nginx-%d-%d", hops, i))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			stop()
			return nil, err
		}
		conf := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(conf, []byte(nginxConfig{Dir: dir, Listen: l, HTTPUp: httpUp, GRPCUp: grpcUp}.render()), 0o644); err != nil {
			stop()
			return nil, err
		}
		p, err := startProc(fmt.Sprintf("nginx %d", i), h.opts.proxyCPU, nil, h.tools.nginx, "-p", dir, "-c", conf, "-e", filepath.Join(dir, "error.log"))
		if err != nil {
			stop()
			return nil, err
		}
		procs = append(procs, p)
		chain = append([]*proxyProc{{Name: nameOf("nginx", i, hops), PID: p.pid()}}, chain...)
		httpUp, grpcUp, first = l.H1, l.GRPC, l
	}
	return &livePath{
		targets: map[string]target{protoH1: {Addr: first.H1}, protoH2C: {Addr: first.H2C}, protoGRPC: {Addr: first.GRPC}},
		proxies: sameProxies(chain...), all: chain, procs: procs, stop: stop,
	}, nil
}

// startHAProxyChain is startNginxChain for HAProxy; every hop keeps the
// client's protocol (h2c stays h2c).
func startHAProxyChain(h *harness, hops int) (*livePath, error) {
	h1Up, h2Up, grpcUp := h.backendHTTP, h.backendHTTP, h.backendGRPC
	var chain []*proxyProc
	var procs []*proc
	var first listenAddrs
	stop := func() {
		for _, p := range procs {
			p.stop()
		}
	}
	for i := hops; i >= 1; i-- {
		l, err := freeListen()
		if err != nil {
			stop()
			return nil, err
		}
		conf := filepath.Join(h.work, fmt.Sprintf("haproxy-%d-%d.cfg", hops, i))
		if err := os.WriteFile(conf, []byte(haproxyConfig{Listen: l, H1Up: h1Up, H2CUp: h2Up, GRPCUp: grpcUp}.render()), 0o644); err != nil {
			stop()
			return nil, err
		}
		p, err := startProc(fmt.Sprintf("haproxy %d", i), h.opts.proxyCPU, nil, h.tools.haproxy, "-db", "-f", conf)
		if err != nil {
			stop()
			return nil, err
		}
		procs = append(procs, p)
		chain = append([]*proxyProc{{Name: nameOf("haproxy", i, hops), PID: p.pid()}}, chain...)
		h1Up, h2Up, grpcUp, first = l.H1, l.H2C, l.GRPC, l
	}
	return &livePath{
		targets: map[string]target{protoH1: {Addr: first.H1}, protoH2C: {Addr: first.H2C}, protoGRPC: {Addr: first.GRPC}},
		proxies: sameProxies(chain...), all: chain, procs: procs, stop: stop,
	}, nil
}

func nameOf(kind string, i, hops int) string {
	if hops == 1 {
		return kind
	}
	return kind + " " + strconv.Itoa(i)
}

var controlReady = regexp.MustCompile(`trellis control ready: http=(\S+) xds=(\S+)`)

// ensureControl starts `trellis control` (embedded etcd in a temporary
// directory, free ports) once per run, on the client CPU: it is not on the
// request path.
func (h *harness) ensureControl(ctx context.Context) error {
	if h.xdsAddr != "" {
		return nil
	}
	dir := filepath.Join(h.work, "control")
	p, err := startProc("trellis control", h.opts.clientCPU, nil, h.tools.trellis, "control",
		"--data-dir", dir, "--http-addr", "127.0.0.1:0", "--xds-addr", "127.0.0.1:0", "--log-level", "warn")
	if err != nil {
		return err
	}
	m, err := p.waitLine(controlReady, 60e9)
	if err != nil {
		return err
	}
	h.xdsAddr = m[2]
	h.ownPIDs = append(h.ownPIDs, p.pid())
	return nil
}

// ensureRegistered registers the bare backend (no sidecar) once per run.
func (h *harness) ensureRegistered(ctx context.Context) error {
	if h.registered {
		return nil
	}
	for _, r := range []struct {
		svc  string
		addr string
	}{{svcBareHTTP, h.backendHTTP}, {svcBareGRPC, h.backendGRPC}} {
		host, port, _ := net.SplitHostPort(r.addr)
		n, _ := strconv.Atoi(port)
		if err := registerInstance(ctx, h.xdsAddr, r.svc, host, n); err != nil {
			return err
		}
	}
	h.registered = true
	return nil
}

// startTrellisProxy runs `trellis proxy|gateway args…` on the proxy CPU.
func (h *harness) startTrellisProxy(name string, args ...string) (*proc, error) {
	argv := append([]string{h.tools.trellis}, args...)
	argv = append(argv, "--control", h.xdsAddr, "--log-level", "warn")
	return startProc(name, h.opts.proxyCPU, []string{"HTTP_PROXY=", "HTTPS_PROXY=", "NO_PROXY="}, argv...)
}

func startTrellisGateway(ctx context.Context, h *harness) (*livePath, error) {
	if err := h.ensureControl(ctx); err != nil {
		return nil, err
	}
	if err := h.ensureRegistered(ctx); err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p, err := h.startTrellisProxy("trellis gateway", "gateway", "--listen", addr)
	if err != nil {
		return nil, err
	}
	gw := &proxyProc{Name: "gateway", PID: p.pid()}
	return &livePath{
		targets: map[string]target{
			protoH1: {Addr: addr, Host: svcBareHTTP}, protoH2C: {Addr: addr, Host: svcBareHTTP},
			protoGRPC: {Addr: addr, Host: svcBareGRPC},
		},
		proxies: sameProxies(gw), all: []*proxyProc{gw}, procs: []*proc{p}, stop: p.stop,
	}, nil
}

// startInboundSidecars runs the backend's two inbound sidecars (one per
// backend port: the HTTP one and the gRPC one).
func (h *harness) startInboundSidecars() (httpSide, grpcSide *proxyProc, procs []*proc, err error) {
	for _, s := range []struct {
		svc, app string
		out      **proxyProc
		name     string
	}{{svcMeshedHTTP, h.backendHTTP, &httpSide, "inbound (http)"}, {svcMeshedGRPC, h.backendGRPC, &grpcSide, "inbound (grpc)"}} {
		_, port, _ := net.SplitHostPort(s.app)
		p, err := h.startTrellisProxy("trellis proxy "+s.svc, "proxy", "--service", s.svc, "--app-port", port)
		if err != nil {
			for _, q := range procs {
				q.stop()
			}
			return nil, nil, nil, err
		}
		procs = append(procs, p)
		*s.out = &proxyProc{Name: s.name, PID: p.pid()}
	}
	return httpSide, grpcSide, procs, nil
}

func stopProcs(ps []*proc) func() {
	return func() {
		for i := len(ps) - 1; i >= 0; i-- {
			ps[i].stop()
		}
	}
}

func startTrellisSidecars(ctx context.Context, h *harness) (*livePath, error) {
	if err := h.ensureControl(ctx); err != nil {
		return nil, err
	}
	httpSide, grpcSide, procs, err := h.startInboundSidecars()
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		stopProcs(procs)()
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	p, err := h.startTrellisProxy("trellis proxy "+svcClient, "proxy", "--service", svcClient, "--outbound-port", port)
	if err != nil {
		stopProcs(procs)()
		return nil, err
	}
	procs = append(procs, p)
	return meshedPath(addr, &proxyProc{Name: "outbound", PID: p.pid()}, httpSide, grpcSide, procs), nil
}

func startTrellisGatewaySidecar(ctx context.Context, h *harness) (*livePath, error) {
	if err := h.ensureControl(ctx); err != nil {
		return nil, err
	}
	httpSide, grpcSide, procs, err := h.startInboundSidecars()
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		stopProcs(procs)()
		return nil, err
	}
	p, err := h.startTrellisProxy("trellis gateway", "gateway", "--listen", addr)
	if err != nil {
		stopProcs(procs)()
		return nil, err
	}
	procs = append(procs, p)
	return meshedPath(addr, &proxyProc{Name: "gateway", PID: p.pid()}, httpSide, grpcSide, procs), nil
}

// meshedPath is a two-hop Trellis path: front (an outbound sidecar or the
// gateway) at addr, then the backend's inbound sidecar for the protocol.
func meshedPath(addr string, front, httpSide, grpcSide *proxyProc, procs []*proc) *livePath {
	return &livePath{
		targets: map[string]target{
			protoH1: {Addr: addr, Host: svcMeshedHTTP}, protoH2C: {Addr: addr, Host: svcMeshedHTTP},
			protoGRPC: {Addr: addr, Host: svcMeshedGRPC},
		},
		proxies: map[string][]*proxyProc{
			protoH1: {front, httpSide}, protoH2C: {front, httpSide}, protoGRPC: {front, grpcSide},
		},
		all: []*proxyProc{front, httpSide, grpcSide}, procs: procs, stop: stopProcs(procs),
	}
}
