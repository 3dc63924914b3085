package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/pprof"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"trellis.dev/trellis/internal/membership"
	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/filters/router"
	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/proxy/xdsclient"
)

// fakeSource stands in for the xDS client: no control plane in these tests.
type fakeSource struct {
	status xdsclient.Status
	// onStop, if set, runs when Run sees its context end, before Run returns.
	onStop  func()
	stopped chan struct{}
}

func newFakeSource() *fakeSource { return &fakeSource{stopped: make(chan struct{})} }

func (f *fakeSource) Run(ctx context.Context) error {
	<-ctx.Done()
	if f.onStop != nil {
		f.onStop()
	}
	close(f.stopped)
	return ctx.Err()
}

func (f *fakeSource) Status() xdsclient.Status { return f.status }

// fakeMember stands in for the membership client: it records what the
// proxy announces.
type fakeMember struct {
	cfg membership.ClientConfig
	mu  sync.Mutex
	st  membership.Status
	log []bool // every SetReady value that changed the state
}

func newFakeMember(cfg membership.ClientConfig) *fakeMember { return &fakeMember{cfg: cfg} }

func (f *fakeMember) Run(ctx context.Context) error { <-ctx.Done(); return nil }

func (f *fakeMember) SetReady(ready bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.st.Left {
		ready = false
	}
	if ready != f.st.Ready {
		f.log = append(f.log, ready)
	}
	f.st.Ready, f.st.Registered = ready, ready
}

func (f *fakeMember) Leave(context.Context) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.st.Ready {
		f.log = append(f.log, false)
	}
	f.st.Left, f.st.Ready, f.st.Registered = true, false, false
}

func (f *fakeMember) Status() membership.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.st
}

func (f *fakeMember) changes() []bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.log)
}

// startProxy starts a proxy with a fake config source and, when snap is not
// nil, that snapshot. It is shut down when the test ends.
func startProxy(tb testing.TB, cfg Config, snap *model.Snapshot) (*Proxy, *fakeSource) {
	tb.Helper()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	src := newFakeSource()
	p.newSource = func(nodeInfo) configSource { return src }
	p.newMember = func(cfg membership.ClientConfig) memberClient { return newFakeMember(cfg) }
	if snap != nil {
		p.setSnapshot(snap)
	}
	if err := p.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Shutdown(ctx) // may already be shut down by the test
	})
	return p, src
}

// sidecar starts a sidecar for service/version in front of the app on appAddr.
func sidecar(tb testing.TB, service, version, appAddr string) *Proxy {
	tb.Helper()
	_, port, _ := net.SplitHostPort(appAddr)
	appPort, _ := strconv.Atoi(port)
	p, _ := startProxy(tb, Config{Role: meshxds.RoleSidecar, Service: service, Version: version, AppPort: appPort}, snapshot(nil, nil))
	return p
}

// app is a backend HTTP server speaking HTTP/1.1 and h2c. It answers
// "<name> <proto> <host> <path>" and says who it is in x-app.
type app struct {
	name string
	addr string
	// /slow waits: it signals arrived, then waits for release, or signals
	// gone when its request's connection closes first.
	arrived chan struct{}
	release chan struct{}
	gone    chan struct{}
	mu      sync.Mutex
	last    *http.Request // headers of the last request
}

func startApp(tb testing.TB, name string) *app {
	tb.Helper()
	a := &app{name: name, arrived: make(chan struct{}, 16), release: make(chan struct{}), gone: make(chan struct{}, 16)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	a.addr = ln.Addr().String()
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: a, Protocols: &protos}
	// Labelled so that a benchmark's profile can leave the app out.
	go pprof.Do(context.Background(), pprof.Labels("bench", "app"), func(context.Context) { srv.Serve(ln) })
	tb.Cleanup(func() { srv.Close() })
	return a
}

func (a *app) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	a.last = r.Clone(context.Background())
	a.mu.Unlock()
	body, _ := io.ReadAll(r.Body)
	if r.URL.Path == "/slow" {
		a.arrived <- struct{}{}
		select {
		case <-a.release:
		case <-r.Context().Done():
			a.gone <- struct{}{}
			return
		}
	}
	w.Header().Set("X-App", a.name)
	// An app trying to pass for another version is overruled by its sidecar.
	w.Header().Set(meshxds.HeaderVersion, "spoofed")
	fmt.Fprintf(w, "%s %s %s %s", a.name, r.Proto, r.Host, r.URL.Path)
	if len(body) > 0 {
		fmt.Fprintf(w, " body=%s", body)
	}
}

func (a *app) lastRequest() *http.Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.last
}

// deadAddr is an address nothing listens on.
func deadAddr(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// routerOnly is the http filter chain the control plane sends today.
var routerOnly = []model.HTTPFilter{{Name: router.Name, Config: router.Config{}}}

// snapshot builds a config with the outbound and gateway listeners on route
// table "mesh" made of vhosts, and clusters of healthy endpoints.
func snapshot(vhosts []*model.VirtualHost, clusters map[string][]string) *model.Snapshot {
	s := &model.Snapshot{
		Versions: map[string]string{"test": "1"},
		Listeners: map[string]*model.Listener{
			meshxds.ListenerOutbound: {Name: meshxds.ListenerOutbound, RouteTable: meshxds.RouteConfigMesh, HTTPFilters: routerOnly},
			meshxds.ListenerGateway:  {Name: meshxds.ListenerGateway, RouteTable: meshxds.RouteConfigMesh, HTTPFilters: routerOnly},
		},
		RouteTables: map[string]*model.RouteTable{
			meshxds.RouteConfigMesh: {Name: meshxds.RouteConfigMesh, VirtualHosts: vhosts},
		},
		Clusters: map[string]*model.Cluster{},
	}
	for name, addrs := range clusters {
		c := &model.Cluster{Name: name}
		_, version := meshxds.SplitClusterName(name)
		for _, a := range addrs {
			c.Endpoints = append(c.Endpoints, model.Endpoint{Address: a, Version: version, Healthy: true})
		}
		s.Clusters[name] = c
	}
	return s
}

// vhost is a service's virtual host as the control plane makes it.
func vhost(service string, routes ...*model.Route) *model.VirtualHost {
	return &model.VirtualHost{Name: service, Domains: []string{service, service + ".*"}, Routes: routes}
}

// to is a catch-all route split over weighted clusters ("name", weight, …).
func to(args ...any) *model.Route {
	rt := &model.Route{Match: model.Match{Path: model.PathMatch{Kind: model.Prefix, Value: "/"}}}
	for i := 0; i < len(args); i += 2 {
		w := uint32(args[i+1].(int))
		rt.Clusters = append(rt.Clusters, model.WeightedCluster{Name: args[i].(string), Weight: w})
		rt.TotalWeight += w
	}
	return rt
}

// connectDial dials addr through an HTTP CONNECT on the proxy at proxyAddr,
// as grpc-go does with HTTPS_PROXY set.
func connectDial(proxyAddr string) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", proxyAddr)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", addr, addr)
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
		if err != nil {
			c.Close()
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			c.Close()
			return nil, errors.New("CONNECT: " + resp.Status)
		}
		return &bufConn{Conn: c, r: br}, nil
	}
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// clients of each kind, closed when the test ends.
func h1ProxyClient(tb testing.TB, proxyAddr string) *http.Client {
	tr := &http.Transport{Proxy: http.ProxyURL(mustURL("http://" + proxyAddr)), MaxIdleConnsPerHost: 64}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func h1Client(tb testing.TB) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

func h2cClient(tb testing.TB, dial func(ctx context.Context, network, addr string) (net.Conn, error)) *http.Client {
	var protos http.Protocols
	protos.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &protos, DialContext: dial}
	tb.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// result is what a test looks at in a response.
type result struct {
	code   int
	header http.Header
	body   string
}

func do(tb testing.TB, c *http.Client, req *http.Request) result {
	tb.Helper()
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatalf("%s %s: reading body: %v", req.Method, req.URL, err)
	}
	return result{resp.StatusCode, resp.Header, string(b)}
}

func newRequest(tb testing.TB, method, url, host string, body io.Reader) *http.Request {
	tb.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		tb.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	return req
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
