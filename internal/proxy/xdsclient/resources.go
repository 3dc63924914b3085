package xdsclient

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"trellis.dev/trellis/internal/proxy/model"
)

// typeURLs are the types the client subscribes to, in the order requests
// are sent: the wildcard types first, then the ones they name, so that an
// ACK of CDS/LDS goes out before the EDS/RDS subscription it changes.
var typeURLs = []string{resource.ClusterType, resource.ListenerType, resource.EndpointType, resource.RouteType}

// wildcard says whether a type is subscribed to as a whole (LDS, CDS) and
// its responses carry the full set: a resource left out is removed.
func wildcard(typeURL string) bool {
	return typeURL == resource.ClusterType || typeURL == resource.ListenerType
}

// shortName is the type's name in logs.
func shortName(typeURL string) string {
	switch typeURL {
	case resource.ClusterType:
		return "CDS"
	case resource.ListenerType:
		return "LDS"
	case resource.EndpointType:
		return "EDS"
	case resource.RouteType:
		return "RDS"
	}
	return typeURL
}

func newResource(typeURL string) (proto.Message, bool) {
	switch typeURL {
	case resource.ClusterType:
		return &clusterv3.Cluster{}, true
	case resource.ListenerType:
		return &listenerv3.Listener{}, true
	case resource.EndpointType:
		return &endpointv3.ClusterLoadAssignment{}, true
	case resource.RouteType:
		return &routev3.RouteConfiguration{}, true
	}
	return nil, false
}

func resourceName(m proto.Message) string {
	switch r := m.(type) {
	case *clusterv3.Cluster:
		return r.GetName()
	case *listenerv3.Listener:
		return r.GetName()
	case *endpointv3.ClusterLoadAssignment:
		return r.GetClusterName()
	case *routev3.RouteConfiguration:
		return r.GetName()
	}
	return ""
}

// decode unpacks and converts the resources of a response, by name. Each
// xDS message is dropped as soon as it is converted, so that what stays is
// the proxy's model of it (about a tenth of the memory) and at most one
// message is alive at a time. Its errors, which become NACK messages, are
// those of the response's envelope; a resource that does not convert is
// returned with its error (entry.err), which build reports if the
// resource is used.
func decode(resp *discoveryv3.DiscoveryResponse) (map[string]*entry, error) {
	out := make(map[string]*entry, len(resp.GetResources()))
	strs := interner{}
	for i, a := range resp.GetResources() {
		a, err := unwrap(a)
		if err != nil {
			return nil, fmt.Errorf("resources[%d]: %w", i, err)
		}
		if a.GetTypeUrl() != resp.GetTypeUrl() {
			return nil, fmt.Errorf("resources[%d]: type %q in a response of type %q", i, a.GetTypeUrl(), resp.GetTypeUrl())
		}
		m, _ := newResource(a.GetTypeUrl())
		if err := proto.Unmarshal(a.GetValue(), m); err != nil {
			return nil, fmt.Errorf("resources[%d]: cannot decode %s: %w", i, a.GetTypeUrl(), err)
		}
		name := resourceName(m)
		if name == "" {
			return nil, fmt.Errorf("resources[%d]: resource without a name", i)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("resources[%d]: duplicate resource %q", i, name)
		}
		e := convert(m, a.GetValue())
		strs.endpoints(e.endpoints)
		out[name] = e
	}
	return out, nil
}

// interner makes equal strings one: an endpoint is in its service's
// cluster and in its version's, and every endpoint of a version carries the
// version and its zone; decoded, each is a small string of its own, kept
// among the decoding's garbage.
type interner map[string]string

func (in interner) str(s string) string {
	if v, ok := in[s]; ok {
		return v
	}
	in[s] = s
	return s
}

// endpoints interns the strings of eps, which are not shared yet.
func (in interner) endpoints(eps []model.Endpoint) {
	for i := range eps {
		ep := &eps[i]
		ep.Address, ep.Zone = in.str(ep.Address), in.str(ep.Zone)
		ep.Version, ep.Instance = in.str(ep.Version), in.str(ep.Instance)
	}
}

var typeResource = "type.googleapis.com/" + string(proto.MessageName(&discoveryv3.Resource{}))

// unwrap opens the envoy.service.discovery.v3.Resource envelope a control
// plane uses to give a resource a TTL. The TTL itself is not honoured: the
// proxy keeps its last config while it cannot reach the control plane.
func unwrap(a *anypb.Any) (*anypb.Any, error) {
	if a.GetTypeUrl() != typeResource {
		return a, nil
	}
	r := &discoveryv3.Resource{}
	if err := a.UnmarshalTo(r); err != nil {
		return nil, fmt.Errorf("cannot decode %s: %w", typeResource, err)
	}
	if r.GetResource() == nil {
		return nil, fmt.Errorf("resource %q without a body (TTL heartbeats are not supported)", r.GetName())
	}
	return r.GetResource(), nil
}
