package model

import (
	"maps"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// Build converts a full set of xDS resources into a Snapshot and checks
// that it is complete, as go-control-plane's Snapshot.Consistent does:
// every route config a listener names and every load assignment an EDS
// cluster names must be present.
//
// It returns a *ResourceError for the first resource that cannot be
// converted (or whose name is repeated), and otherwise an *IncompleteError
// if references are missing. Resources nothing refers to are kept (route
// tables) or dropped (load assignments of no cluster). A route naming a
// cluster that does not exist is not an error here: as in Envoy, it is an
// error at request time, and in SotW xDS clusters and routes may briefly
// disagree while an update is under way.
func Build(versions map[string]string, listeners []*listenerv3.Listener, routes []*routev3.RouteConfiguration,
	clusters []*clusterv3.Cluster, loads []*endpointv3.ClusterLoadAssignment) (*Snapshot, error) {
	snap := &Snapshot{
		Versions:    maps.Clone(versions),
		Listeners:   make(map[string]*Listener, len(listeners)),
		RouteTables: make(map[string]*RouteTable, len(routes)),
		Clusters:    make(map[string]*Cluster, len(clusters)),
	}
	if snap.Versions == nil {
		snap.Versions = map[string]string{}
	}
	for _, l := range listeners {
		ml, err := ConvertListener(l)
		if err != nil {
			return nil, err
		}
		if _, dup := snap.Listeners[ml.Name]; dup {
			return nil, duplicate(KindListener, ml.Name)
		}
		snap.Listeners[ml.Name] = ml
	}
	for _, r := range routes {
		rt, err := ConvertRouteConfig(r)
		if err != nil {
			return nil, err
		}
		if _, dup := snap.RouteTables[rt.Name]; dup {
			return nil, duplicate(KindRouteConfig, rt.Name)
		}
		snap.RouteTables[rt.Name] = rt
	}
	edsName := map[string]string{} // cluster → load assignment it takes endpoints from
	for _, c := range clusters {
		mc, err := ConvertCluster(c)
		if err != nil {
			return nil, err
		}
		if _, dup := snap.Clusters[mc.Name]; dup {
			return nil, duplicate(KindCluster, mc.Name)
		}
		snap.Clusters[mc.Name] = mc
		if n := EDSServiceName(c); n != "" {
			edsName[mc.Name] = n
		}
	}
	endpoints := make(map[string][]Endpoint, len(loads))
	for _, cla := range loads {
		eps, err := ConvertEndpoints(cla)
		if err != nil {
			return nil, err
		}
		if _, dup := endpoints[cla.GetClusterName()]; dup {
			return nil, duplicate(KindEndpoints, cla.GetClusterName())
		}
		endpoints[cla.GetClusterName()] = eps
	}

	missing := &IncompleteError{}
	missingRoutes, missingLoads := map[string]bool{}, map[string]bool{}
	for _, l := range snap.Listeners {
		if _, ok := snap.RouteTables[l.RouteTable]; !ok {
			missingRoutes[l.RouteTable] = true
		}
	}
	for cluster, load := range edsName {
		eps, ok := endpoints[load]
		if !ok {
			missingLoads[load] = true
			continue
		}
		// Clusters sharing a service_name share the (read-only) slice.
		snap.Clusters[cluster].Endpoints = eps
	}
	if len(missingRoutes)+len(missingLoads) > 0 {
		missing.RouteConfigs = sortedKeys(missingRoutes)
		missing.Endpoints = sortedKeys(missingLoads)
		return nil, missing
	}
	return snap, nil
}

func duplicate(kind, name string) error {
	return &ResourceError{Kind: kind, Name: name, Reason: "duplicate name"}
}
