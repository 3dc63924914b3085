package xdsserver

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/translate"
)

var allTypes = []string{resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType}

// startServer serves a new Server on a free loopback port.
func startServer(t testing.TB, reg Registrar) (*Server, string) {
	t.Helper()
	s := New(Config{Registrar: reg, Logger: slog.New(slog.DiscardHandler)})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return s, lis.Addr().String()
}

func dial(t testing.TB, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// node builds a Node announcing md (string values, or numbers for ports).
func node(t testing.TB, id string, md map[string]any) *core.Node {
	t.Helper()
	st, err := structpb.NewStruct(md)
	if err != nil {
		t.Fatal(err)
	}
	return &core.Node{Id: id, Metadata: st}
}

func sidecar(t testing.TB, id, service, version string, port any) *core.Node {
	return node(t, id, map[string]any{
		meshxds.MetaRole: meshxds.RoleSidecar, meshxds.MetaService: service, meshxds.MetaVersion: version,
		meshxds.MetaAddress: "10.1.2.3", meshxds.MetaPort: port, meshxds.MetaZone: "zone-a",
	})
}

// eventually polls cond until it holds or 5s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// sotwClient is a raw ADS state-of-the-world client that subscribes to
// every type (wildcard) and ACKs each response, or NACKs it when told to.
type sotwClient struct {
	stream discovery.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	cancel context.CancelFunc

	mu        sync.Mutex
	versions  map[string]string   // type URL → last accepted version
	names     map[string][]string // type URL → sorted resource names
	nackNext  map[string]string   // type URL → error to NACK the next response with
	received  map[string]int      // type URL → responses received
	recvErr   error
	onVersion func(typeURL, version string) // benchmark: called for every response, resources not decoded
}

func newSotwClient(t testing.TB, conn *grpc.ClientConn, n *core.Node, onVersion func(string, string)) *sotwClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &sotwClient{stream: stream, cancel: cancel, versions: map[string]string{},
		names: map[string][]string{}, nackNext: map[string]string{}, received: map[string]int{},
		onVersion: onVersion}
	for i, typ := range allTypes {
		req := &discovery.DiscoveryRequest{TypeUrl: typ}
		if i == 0 {
			req.Node = n // only the first request carries the node, as Envoy does
		}
		if err := stream.Send(req); err != nil {
			if errors.Is(err, io.EOF) {
				break // the server ended the stream (refused it): loop's Recv has why
			}
			t.Fatal(err)
		}
	}
	go c.loop()
	t.Cleanup(cancel)
	return c
}

func (c *sotwClient) loop() {
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			c.mu.Lock()
			c.recvErr = err
			c.mu.Unlock()
			return
		}
		typ := resp.GetTypeUrl()
		c.mu.Lock()
		c.received[typ]++
		req := &discovery.DiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}
		if msg, ok := c.nackNext[typ]; ok {
			delete(c.nackNext, typ)
			req.VersionInfo = c.versions[typ] // a NACK names the last good version
			req.ErrorDetail = &rpcstatus.Status{Code: 3, Message: msg}
		} else {
			c.versions[typ] = resp.GetVersionInfo()
			if c.onVersion == nil { // the benchmark skips decoding: it measures the server
				got := resourceNames(resp.GetResources())
				if partialType(typ) {
					// EDS and RDS responses carry what changed; the rest
					// is kept (a proxy drops them when CDS or LDS stop
					// naming them, which this client does not follow).
					got = slices.Compact(slices.Sorted(slices.Values(append(got, c.names[typ]...))))
				}
				c.names[typ] = got
			}
			req.VersionInfo = resp.GetVersionInfo()
		}
		c.mu.Unlock()
		if c.onVersion != nil {
			c.onVersion(typ, resp.GetVersionInfo())
		}
		if err := c.stream.Send(req); err != nil && err != io.EOF {
			return
		}
	}
}

func (c *sotwClient) version(typ string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.versions[typ]
}

func (c *sotwClient) resources(typ string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.names[typ]
}

func (c *sotwClient) responses(typ string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.received[typ]
}

func (c *sotwClient) err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.recvErr
}

func (c *sotwClient) nack(typ, msg string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nackNext[typ] = msg
}

// deltaClient is a raw delta ADS client that subscribes to every type
// (wildcard) and ACKs each response.
type deltaClient struct {
	stream discovery.AggregatedDiscoveryService_DeltaAggregatedResourcesClient

	mu        sync.Mutex
	resources map[string]map[string]string // type URL → name → resource version
	system    map[string]string            // type URL → last system_version_info
}

func newDeltaClient(t testing.TB, conn *grpc.ClientConn, n *core.Node) *deltaClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &deltaClient{stream: stream, resources: map[string]map[string]string{}, system: map[string]string{}}
	for i, typ := range allTypes {
		req := &discovery.DeltaDiscoveryRequest{TypeUrl: typ}
		if i == 0 {
			req.Node = n
		}
		if err := stream.Send(req); err != nil {
			if errors.Is(err, io.EOF) {
				break // the server ended the stream (refused it): loop's Recv has why
			}
			t.Fatal(err)
		}
	}
	go c.loop()
	return c
}

func (c *deltaClient) loop() {
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			return
		}
		typ := resp.GetTypeUrl()
		c.mu.Lock()
		if c.resources[typ] == nil {
			c.resources[typ] = map[string]string{}
		}
		for _, r := range resp.GetResources() {
			c.resources[typ][r.GetName()] = r.GetVersion()
		}
		for _, name := range resp.GetRemovedResources() {
			delete(c.resources[typ], name)
		}
		c.system[typ] = resp.GetSystemVersionInfo()
		c.mu.Unlock()
		if err := c.stream.Send(&discovery.DeltaDiscoveryRequest{TypeUrl: typ, ResponseNonce: resp.GetNonce()}); err != nil {
			return
		}
	}
}

func (c *deltaClient) names(typ string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for name := range c.resources[typ] {
		out = append(out, name)
	}
	slices.Sort(out)
	return out
}

func resourceNames(anys []*anypb.Any) []string {
	var out []string
	for _, a := range anys {
		m, err := a.UnmarshalNew()
		if err != nil {
			continue
		}
		out = append(out, cache.GetResourceName(m))
	}
	slices.Sort(out)
	return out
}

// input is a small mesh: service reviews with one instance per version.
func input(versions ...string) translate.Input {
	var in translate.Input
	for i, v := range versions {
		in.Instances = append(in.Instances, api.Instance{
			ID: "reviews-" + v, Service: "reviews", Version: v, Address: "10.0.0.1", Port: 15000 + i,
		})
	}
	return in
}
