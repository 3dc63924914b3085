package proxy

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/model/modeltest"
)

// xdsServer is a go-control-plane ADS server on a real socket.
type xdsServer struct {
	addr  string
	cache cache.SnapshotCache

	mu     sync.Mutex
	nodes  map[string]*corev3.Node // by node id, from the first request of a stream
	closed map[string]bool         // node ids whose stream closed
}

func startXDS(t testing.TB) *xdsServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &xdsServer{addr: ln.Addr().String(), cache: cache.NewSnapshotCache(true, cache.IDHash{}, nil),
		nodes: map[string]*corev3.Node{}, closed: map[string]bool{}}
	cb := server.CallbackFuncs{
		StreamRequestFunc: func(_ int64, req *discoveryv3.DiscoveryRequest) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			if n := req.GetNode(); n != nil && s.nodes[n.GetId()] == nil {
				s.nodes[n.GetId()] = n
			}
			return nil
		},
		StreamClosedFunc: func(_ int64, n *corev3.Node) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.closed[n.GetId()] = true
		},
	}
	g := grpc.NewServer(grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}))
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, server.NewServer(context.Background(), s.cache, cb))
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	return s
}

func (s *xdsServer) set(t testing.TB, node, version string, r *modeltest.Resources) {
	t.Helper()
	as := func(n int, get func(i int) types.Resource) []types.Resource {
		out := make([]types.Resource, n)
		for i := range out {
			out[i] = get(i)
		}
		return out
	}
	snap, err := cache.NewSnapshot(version, map[resource.Type][]types.Resource{
		resource.ListenerType: as(len(r.Listeners), func(i int) types.Resource { return r.Listeners[i] }),
		resource.RouteType:    as(len(r.Routes), func(i int) types.Resource { return r.Routes[i] }),
		resource.ClusterType:  as(len(r.Clusters), func(i int) types.Resource { return r.Clusters[i] }),
		resource.EndpointType: as(len(r.Loads), func(i int) types.Resource { return r.Loads[i] }),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.cache.SetSnapshot(context.Background(), node, snap); err != nil {
		t.Fatal(err)
	}
}

func (s *xdsServer) node(id string) *corev3.Node {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nodes[id]
}

func (s *xdsServer) streamClosed(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed[id]
}

// waitFor polls cond; only a failing test waits the whole bound.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
	}
}

// endpointAt is a modeltest endpoint at a proxy's inbound address.
func endpointAt(t *testing.T, p *Proxy, version string) *endpointv3.LbEndpoint {
	host, port, _ := net.SplitHostPort(p.InboundAddr())
	n, _ := strconv.Atoi(port)
	return modeltest.Endpoint(host, uint32(n), version, p.nodeID, corev3.HealthStatus_HEALTHY)
}

// The real xDS client configures the proxy; the node registers with its
// metadata; Shutdown closes the stream.
func TestXDSEndToEnd(t *testing.T) {
	srv := startXDS(t)
	m := newMesh(t)
	res := modeltest.Mesh()
	res.Loads = []*endpointv3.ClusterLoadAssignment{
		modeltest.Load("reviews|v1", "zone-a", endpointAt(t, m.side1, "v1")),
		modeltest.Load("reviews|v2", "zone-a", endpointAt(t, m.side2, "v2")),
		modeltest.Load("reviews|v3", "zone-a", endpointAt(t, m.side2, "v3")),
		modeltest.Load("ratings", "zone-a", endpointAt(t, m.side1, "")),
	}
	const id = "productpage-1"
	srv.set(t, id, "1", res)

	app := startApp(t, "productpage")
	_, port, _ := net.SplitHostPort(app.addr)
	appPort, _ := strconv.Atoi(port)
	p, err := New(Config{Role: meshxds.RoleSidecar, Service: "productpage", Version: "v1", Zone: "zone-a",
		AppPort: appPort, NodeID: id, ControlAddr: srv.addr, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Shutdown(context.Background()) })
	select {
	case <-p.Ready():
	case <-time.After(10 * time.Second):
		t.Fatal("not ready: " + p.configDump().NotReady)
	}

	n := srv.node(id)
	md := n.GetMetadata().GetFields()
	_, inPort, _ := net.SplitHostPort(p.InboundAddr())
	if md[meshxds.MetaService].GetStringValue() != "productpage" || md[meshxds.MetaPort].GetStringValue() != inPort ||
		md[meshxds.MetaRole].GetStringValue() != "sidecar" || md[meshxds.MetaAddress].GetStringValue() != "127.0.0.1" {
		t.Fatalf("node metadata %v", md)
	}

	c := h1ProxyClient(t, p.OutboundAddr())
	for _, tt := range []struct {
		url, gray, want string
	}{
		{"http://reviews/", "1", "v2"}, // gray → reviews|v3, served by side2
		{"http://ratings:9080/", "", "v1"},
	} {
		req := newRequest(t, "GET", tt.url, "", nil)
		if tt.gray != "" {
			req.Header.Set("gray", tt.gray)
		}
		if r := do(t, c, req); r.code != 200 || r.header.Get(meshxds.HeaderVersion) != tt.want {
			t.Fatalf("%s: %d %q %v", tt.url, r.code, r.body, r.header)
		}
	}
	if d := p.configDump(); !d.XDS.Connected || d.XDS.Versions[resource.ClusterType] != "1" {
		t.Fatalf("config dump xds %+v", d.XDS)
	}

	// A new version with v1 gone: the proxy follows.
	res.Loads[0] = modeltest.Load("reviews|v1", "zone-a")
	res.Routes[0].VirtualHosts[0].Routes = res.Routes[0].VirtualHosts[0].Routes[2:] // no gray rule
	srv.set(t, id, "2", res)
	waitFor(t, "version 2", func() bool { return p.snapshot.Load().Versions[resource.ClusterType] == "2" })
	seen := map[int]int{}
	for range 50 {
		seen[do(t, c, newRequest(t, "GET", "http://reviews/", "", nil)).code]++
	}
	if seen[200]+seen[503] != 50 || seen[503] == 0 || seen[200] == 0 {
		t.Fatalf("after v1 lost its instances: %v, want 200s (v2) and 503s (v1 no_healthy_upstream)", seen)
	}

	if err := p.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the ADS stream to close", func() bool { return srv.streamClosed(id) })
	if _, err := http.Get("http://" + p.OutboundAddr()); err == nil {
		t.Fatal("outbound still serving after Shutdown")
	}
}
