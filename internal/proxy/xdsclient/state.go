package xdsclient

import (
	"errors"
	"maps"
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"trellis.dev/trellis/internal/proxy/model"
)

// state is the accepted configuration: per type, the resources the client
// ACKed (converted: see entry) and their version, and the EDS/RDS names it
// subscribes to.
//
// A state is never changed in place. A response yields a candidate state
// (with); the candidate replaces the current one only if it is accepted,
// so a rejected response leaves nothing behind. The state outlives
// streams: the last good config is kept across reconnects.
type state struct {
	versions  map[string]string            // type URL → accepted version_info
	resources map[string]map[string]*entry // type URL → name → resource
	names     map[string][]string          // EDS/RDS type URL → subscribed names, sorted
}

func newState() *state {
	return &state{
		versions:  map[string]string{},
		resources: map[string]map[string]*entry{},
		names:     map[string][]string{},
	}
}

// with returns the state after accepting resources got of typeURL at
// version, with the EDS/RDS subscriptions that follow from it.
//
// For LDS and CDS got is the full set. For EDS and RDS it adds to or
// replaces the named resources; resources nothing subscribes to any more
// are dropped (so are unrequested ones a server sent).
func (s *state) with(typeURL, version string, got map[string]*entry) *state {
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
			merged = map[string]*entry{}
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
func routeNames(listeners map[string]*entry) []string {
	set := map[string]bool{}
	for _, e := range listeners {
		if e.err == nil {
			set[e.listener.RouteTable] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

// endpointNames are the load assignments the EDS clusters use.
func endpointNames(clusters map[string]*entry) []string {
	set := map[string]bool{}
	for _, e := range clusters {
		if n := e.cluster.EDSName; n != "" {
			set[n] = true
		}
	}
	return slices.Sorted(maps.Keys(set))
}

func keep(res map[string]*entry, names []string) map[string]*entry {
	out := make(map[string]*entry, len(names))
	for _, n := range names {
		if e, ok := res[n]; ok {
			out[n] = e
		}
	}
	return out
}

// buildOrder is model.Build's: the first resource that does not convert,
// in this order of types and by name, is the one a NACK names.
var buildOrder = []string{resource.ListenerType, resource.RouteType, resource.ClusterType, resource.EndpointType}

// build assembles the whole state. When the state is valid but not
// complete, it returns no snapshot and no error, and says what it waits
// for: "LDS" or "CDS" until that type's first response, "RDS <name>" and
// "EDS <name>" for resources named but not received. An error is a reason
// to NACK (see model.Build).
func (s *state) build() (snap *model.Snapshot, waiting []string, err error) {
	if err := s.firstError(); err != nil {
		return nil, nil, err
	}
	r := model.Resources{
		Listeners:   map[string]*model.Listener{},
		RouteTables: map[string]*model.RouteTable{},
		Clusters:    map[string]model.ClusterResource{},
		Endpoints:   map[string][]model.Endpoint{},
	}
	for n, e := range s.resources[resource.ListenerType] {
		r.Listeners[n] = e.listener
	}
	for n, e := range s.resources[resource.RouteType] {
		r.RouteTables[n] = e.routes
	}
	for n, e := range s.resources[resource.ClusterType] {
		r.Clusters[n] = e.cluster
	}
	for n, e := range s.resources[resource.EndpointType] {
		r.Endpoints[n] = e.endpoints
	}
	snap, err = model.Assemble(s.versions, r)
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

// firstError is the conversion error model.Build would have returned for
// the state's resources: the first in buildOrder, by name.
func (s *state) firstError() error {
	for _, t := range buildOrder {
		var first string
		var err error
		for name, e := range s.resources[t] {
			if e.err != nil && (err == nil || name < first) {
				first, err = name, e.err
			}
		}
		if err != nil {
			return err
		}
	}
	return nil
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
		if len(a) != len(b) || !maps.EqualFunc(a, b, func(x, y *entry) bool { return x.digest == y.digest }) {
			return false
		}
	}
	return true
}
