package xdsclient

import (
	"errors"
	"maps"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/proxy/model"
)

// state is the accepted configuration: per type, the resources the client
// ACKed and their version, and the EDS/RDS names it subscribes to.
//
// A state is never changed in place. A response yields a candidate state
// (with); the candidate replaces the current one only if it is accepted,
// so a rejected response leaves nothing behind. The state outlives
// streams: the last good config is kept across reconnects.
type state struct {
	versions  map[string]string                   // type URL → accepted version_info
	resources map[string]map[string]proto.Message // type URL → name → resource
	names     map[string][]string                 // EDS/RDS type URL → subscribed names, sorted
}

func newState() *state {
	return &state{
		versions:  map[string]string{},
		resources: map[string]map[string]proto.Message{},
		names:     map[string][]string{},
	}
}

// with returns the state after accepting resources got of typeURL at
// version, with the EDS/RDS subscriptions that follow from it.
//
// For LDS and CDS got is the full set. For EDS and RDS it adds to or
// replaces the named resources; resources nothing subscribes to any more
// are dropped (so are unrequested ones a server sent).
func (s *state) with(typeURL, version string, got map[string]proto.Message) *state {
	next := &state{
		versions:  maps.Clone(s.versions),
		resources: maps.Clone(s.resources),
		names:     map[string][]string{},
	}
	next.versions[typeURL] = version
	if wildcard(typeURL) {
		next.resources[typeURL] = got
	} else {
		merged := maps.Clone(s.resources[typeURL])
		if merged == nil {
			merged = map[string]proto.Message{}
		}
		maps.Copy(merged, got)
		next.resources[typeURL] = merged
	}
	next.names[resource.RouteType] = routeNames(next.resources[resource.ListenerType])
	next.names[resource.EndpointType] = endpointNames(next.resources[resource.ClusterType])
	for _, t := range []string{resource.RouteType, resource.EndpointType} {
		if kept := keep(next.resources[t], next.names[t]); len(kept) != len(next.resources[t]) {
			next.resources[t] = kept
		}
	}
	return next
}

// routeNames are the route configs the listeners use. A listener that does
// not convert is skipped: build rejects it anyway.
func routeNames(listeners map[string]proto.Message) []string {
	set := map[string]bool{}
	for _, m := range listeners {
		if l, err := model.ConvertListener(m.(*listenerv3.Listener)); err == nil {
			set[l.RouteTable] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// endpointNames are the load assignments the EDS clusters use.
func endpointNames(clusters map[string]proto.Message) []string {
	set := map[string]bool{}
	for _, m := range clusters {
		if n := model.EDSServiceName(m.(*clusterv3.Cluster)); n != "" {
			set[n] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

func keep(res map[string]proto.Message, names []string) map[string]proto.Message {
	out := make(map[string]proto.Message, len(names))
	for _, n := range names {
		if m, ok := res[n]; ok {
			out[n] = m
		}
	}
	return out
}

// build converts the whole state. When the state is valid but not
// complete, it returns no snapshot and no error, and says what it waits
// for: "LDS" or "CDS" until that type's first response, "RDS <name>" and
// "EDS <name>" for resources named but not received. An error is a reason
// to NACK (see model.Build).
func (s *state) build() (snap *model.Snapshot, waiting []string, err error) {
	snap, err = model.Build(s.versions,
		values[*listenerv3.Listener](s.resources[resource.ListenerType]),
		values[*routev3.RouteConfiguration](s.resources[resource.RouteType]),
		values[*clusterv3.Cluster](s.resources[resource.ClusterType]),
		values[*endpointv3.ClusterLoadAssignment](s.resources[resource.EndpointType]))
	var inc *model.IncompleteError
	if errors.As(err, &inc) {
		for _, n := range inc.RouteConfigs {
			waiting = append(waiting, "RDS "+n)
		}
		for _, n := range inc.Endpoints {
			waiting = append(waiting, "EDS "+n)
		}
		snap, err = nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	// Before the first CDS or LDS response "no clusters" or "no listeners"
	// means "not known yet", not "none": an empty proxy is not ready.
	var types []string
	for _, t := range typeURLs {
		if _, ok := s.versions[t]; wildcard(t) && !ok {
			types = append(types, shortName(t))
		}
	}
	if len(types) > 0 {
		return nil, append(types, waiting...), nil
	}
	return snap, waiting, nil
}

// values lists resources in name order, so that build is deterministic.
func values[T proto.Message](res map[string]proto.Message) []T {
	out := make([]T, 0, len(res))
	for _, name := range slices.Sorted(maps.Keys(res)) {
		out = append(out, res[name].(T))
	}
	return out
}

// equal says whether s and o hold the same versions and resources, i.e.
// whether accepting o changes nothing (a server resending what it sent
// before, as after a reconnect).
func (s *state) equal(o *state) bool {
	if !maps.Equal(s.versions, o.versions) {
		return false
	}
	for _, t := range typeURLs {
		a, b := s.resources[t], o.resources[t]
		if len(a) != len(b) || !maps.EqualFunc(a, b, proto.Equal) {
			return false
		}
	}
	return true
}
