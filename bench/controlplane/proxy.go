package main

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"trellis.dev/trellis/internal/meshxds"
)

// types are the four types a Trellis proxy subscribes to.
var types = []string{resource.ClusterType, resource.ListenerType, resource.EndpointType, resource.RouteType}

// proxy is a simulated Trellis proxy: one ADS SotW stream that subscribes
// the way internal/proxy/xdsclient does — CDS and LDS as wildcards, then EDS
// for every cluster CDS names and RDS "mesh" — and ACKs every response. It
// decodes nothing but the cluster names (and, when verify is set, the
// routes and endpoints, so the benchmark can check what arrived).
type proxy struct {
	idx    int
	stream grpc.ClientStream
	cancel context.CancelFunc
	rec    *recorder
	verify bool // decode RDS and EDS, for the checks and to find the version carrying a change

	// Protocol state, touched only by run.
	nonces   map[string]string
	edsNames []string
	rdsSent  bool

	synced chan struct{} // closed when every type has been ACKed once

	mu       sync.Mutex
	versions map[string]string // type URL → last ACKed version
	initial  map[string]size   // type URL → size of its first response
	last     map[string]size   // type URL → size of its latest response
	err      error
	weights  map[string]string // verify: service → "v1=90,v2=10"
	eps      map[string]int    // verify: cluster → endpoints
}

// size is the size of one response: its resources (the encoded size of
// each resource, what the proxy decodes) and the whole DiscoveryResponse
// message as it goes on the wire (Any wrappers and type URLs included).
type size struct{ resources, message int }

// proxyIDPrefix starts the node ID of every simulated proxy.
const proxyIDPrefix = "bench-proxy-"

// bootstrapNode is a sidecar's node: no service, so it registers no
// instance (the instances of the mesh are registered separately).
func bootstrapNode(id string) *core.Node {
	md, _ := structpb.NewStruct(map[string]any{meshxds.MetaRole: meshxds.RoleSidecar, meshxds.MetaZone: "zone-a"})
	return &core.Node{Id: id, Cluster: "bench", Metadata: md}
}

func startProxy(conn *grpc.ClientConn, idx int, verify bool, rec *recorder) (*proxy, error) {
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := conn.NewStream(ctx, &discovery.AggregatedDiscoveryService_ServiceDesc.Streams[0],
		discovery.AggregatedDiscoveryService_StreamAggregatedResources_FullMethodName, grpc.ForceCodecV2(newRawCodec()))
	if err != nil {
		cancel()
		return nil, err
	}
	p := &proxy{
		idx: idx, stream: stream, cancel: cancel, rec: rec, verify: verify,
		nonces: map[string]string{}, synced: make(chan struct{}),
		versions: map[string]string{}, initial: map[string]size{}, last: map[string]size{},
		weights: map[string]string{}, eps: map[string]int{},
	}
	// As the proxy does: the wildcard types first, the node on the first
	// request only.
	first := &discovery.DiscoveryRequest{Node: bootstrapNode(fmt.Sprintf("%s%05d", proxyIDPrefix, idx)), TypeUrl: resource.ClusterType}
	if err := stream.SendMsg(first); err != nil {
		cancel()
		return nil, err
	}
	if err := stream.SendMsg(&discovery.DiscoveryRequest{TypeUrl: resource.ListenerType}); err != nil {
		cancel()
		return nil, err
	}
	go p.run()
	return p, nil
}

func (p *proxy) run() {
	for {
		resp := &rawResponse{keep: p.verify}
		err := p.stream.RecvMsg(resp)
		if err != nil {
			p.mu.Lock()
			p.err = err
			p.mu.Unlock()
			return
		}
		if err := p.handle(resp); err != nil {
			p.mu.Lock()
			p.err = err
			p.mu.Unlock()
			p.cancel()
			return
		}
	}
}

func (p *proxy) handle(resp *rawResponse) error {
	t, version := resp.typeURL, resp.version
	p.nonces[t] = resp.nonce
	names := resp.names
	slices.Sort(names)
	if p.verify {
		full := &discovery.DiscoveryResponse{}
		if err := proto.Unmarshal(resp.raw, full); err != nil {
			return fmt.Errorf("decoding a response: %w", err)
		}
		if err := p.decode(full); err != nil {
			return err
		}
		p.rec.onResponse(p, t, version)
	}

	p.mu.Lock()
	if _, seen := p.initial[t]; !seen {
		p.initial[t] = size{resources: resp.resourceBytes, message: resp.size}
	}
	p.last[t] = size{resources: resp.resourceBytes, message: resp.size}
	p.versions[t] = version
	all := len(p.versions) == len(types)
	p.mu.Unlock()

	// An ACK of EDS or RDS names the resources again, as every SotW request
	// of those types must (xdsclient does): a request without names
	// unsubscribes from all of them.
	ack := &discovery.DiscoveryRequest{TypeUrl: t, VersionInfo: version, ResponseNonce: resp.nonce}
	switch t {
	case resource.EndpointType:
		ack.ResourceNames = p.edsNames
	case resource.RouteType:
		ack.ResourceNames = []string{meshxds.RouteConfigMesh}
	}
	at := time.Now()
	if err := p.stream.SendMsg(ack); err != nil {
		return fmt.Errorf("ACK: %w", err)
	}
	p.rec.onAck(p.idx, t, version, at)
	if all {
		select {
		case <-p.synced:
		default:
			close(p.synced)
		}
	}

	// The subscriptions that follow: EDS for exactly the clusters CDS
	// named (in ADS mode go-control-plane answers nothing less), RDS for
	// the route config the listeners use.
	switch {
	case t == resource.ClusterType && !slices.Equal(names, p.edsNames):
		p.edsNames = names
		return p.send(resource.EndpointType, names)
	case t == resource.ListenerType && !p.rdsSent:
		p.rdsSent = true
		return p.send(resource.RouteType, []string{meshxds.RouteConfigMesh})
	}
	return nil
}

func (p *proxy) send(t string, names []string) error {
	p.mu.Lock()
	version := p.versions[t]
	p.mu.Unlock()
	return p.stream.SendMsg(&discovery.DiscoveryRequest{TypeUrl: t, VersionInfo: version, ResponseNonce: p.nonces[t], ResourceNames: names})
}

// decode unpacks RDS and EDS (verify mode) into what the checks read.
func (p *proxy) decode(resp *discovery.DiscoveryResponse) error {
	switch resp.GetTypeUrl() {
	case resource.RouteType:
		weights := map[string]string{}
		for _, a := range resp.GetResources() {
			rc := &routev3.RouteConfiguration{}
			if err := anypb.UnmarshalTo(a, rc, proto.UnmarshalOptions{}); err != nil {
				return fmt.Errorf("RDS: %w", err)
			}
			for _, vh := range rc.GetVirtualHosts() {
				routes := vh.GetRoutes()
				if len(routes) == 0 {
					continue
				}
				var parts []string
				for _, wc := range routes[len(routes)-1].GetRoute().GetWeightedClusters().GetClusters() {
					_, v := meshxds.SplitClusterName(wc.GetName())
					parts = append(parts, fmt.Sprintf("%s=%d", v, wc.GetWeight().GetValue()))
				}
				weights[vh.GetName()] = strings.Join(parts, ",")
			}
		}
		// An RDS response carries the route config only when it changed
		// (internal/xdsserver: EDS and RDS responses carry what changed);
		// the mesh has one, "mesh", so a response with it is all of it.
		if len(resp.GetResources()) > 0 {
			p.mu.Lock()
			p.weights = weights
			p.mu.Unlock()
		}
	case resource.EndpointType:
		eps := map[string]int{}
		for _, a := range resp.GetResources() {
			cla := &endpointv3.ClusterLoadAssignment{}
			if err := anypb.UnmarshalTo(a, cla, proto.UnmarshalOptions{}); err != nil {
				return fmt.Errorf("EDS: %w", err)
			}
			n := 0
			for _, l := range cla.GetEndpoints() {
				n += len(l.GetLbEndpoints())
			}
			eps[cla.GetClusterName()] = n
		}
		// What changed, merged into what the proxy has, as a proxy does.
		p.mu.Lock()
		maps.Copy(p.eps, eps)
		p.mu.Unlock()
	}
	return nil
}

func (p *proxy) version(t string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.versions[t]
}

func (p *proxy) failure() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.err
}

// lastSize is the size of the latest response of type t.
func (p *proxy) lastSize(t string) size {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.last[t]
}

func (p *proxy) initialSize() size {
	p.mu.Lock()
	defer p.mu.Unlock()
	var s size
	for _, v := range p.initial {
		s.resources += v.resources
		s.message += v.message
	}
	return s
}

func (p *proxy) routeWeights(service string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.weights[service]
}

func (p *proxy) endpoints(cluster string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.eps[cluster]
}
