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
//
// Build is Convert* on every resource, then Assemble.
func Build(versions map[string]string, listeners []*listenerv3.Listener, routes []*routev3.RouteConfiguration,
	clusters []*clusterv3.Cluster, loads []*endpointv3.ClusterLoadAssignment) (*Snapshot, error) {
	r := Resources{
		Listeners:   make(map[string]*Listener, len(listeners)),
		RouteTables: make(map[string]*RouteTable, len(routes)),
		Clusters:    make(map[string]ClusterResource, len(clusters)),
		Endpoints:   make(map[string][]Endpoint, len(loads)),
	}
	for _, l := range listeners {
		ml, err := ConvertListener(l)
		if err != nil {
			return nil, err
		}
		if _, dup := r.Listeners[ml.Name]; dup {
			return nil, duplicate(KindListener, ml.Name)
		}
		r.Listeners[ml.Name] = ml
	}
	for _, rc := range routes {
		rt, err := ConvertRouteConfig(rc)
		if err != nil {
			return nil, err
		}
		if _, dup := r.RouteTables[rt.Name]; dup {
			return nil, duplicate(KindRouteConfig, rt.Name)
		}
		r.RouteTables[rt.Name] = rt
	}
	for _, c := range clusters {
		mc, err := ConvertCluster(c)
		if err != nil {
			return nil, err
		}
		if _, dup := r.Clusters[mc.Name]; dup {
			return nil, duplicate(KindCluster, mc.Name)
		}
		r.Clusters[mc.Name] = ClusterResource{Cluster: mc, EDSName: EDSServiceName(c)}
	}
	for _, cla := range loads {
		eps, _, err := ConvertEndpoints(cla) // bad endpoints dropped, as the xDS client does
		if err != nil {
			return nil, err
		}
		if _, dup := r.Endpoints[cla.GetClusterName()]; dup {
			return nil, duplicate(KindEndpoints, cla.GetClusterName())
		}
		r.Endpoints[cla.GetClusterName()] = eps
	}
	return Assemble(versions, r)
}

// Resources are converted xDS resources by name: what a Snapshot is
// assembled from. Each piece is immutable once converted, so an xDS client
// can keep these, rather than the xDS messages (which take about ten times
// the memory: see BenchmarkBuildScale), and assemble a new Snapshot from
// them whenever one resource changes, without converting the others again.
type Resources struct {
	Listeners   map[string]*Listener
	RouteTables map[string]*RouteTable
	Clusters    map[string]ClusterResource
	// Endpoints by ClusterLoadAssignment name.
	Endpoints map[string][]Endpoint
}

// ClusterResource is a converted Cluster and, for an EDS cluster, the
// ClusterLoadAssignment it takes its endpoints from (EDSServiceName).
type ClusterResource struct {
	Cluster *Cluster
	EDSName string
}

// Assemble makes a Snapshot of r: it joins every EDS cluster with its load
// assignment, and checks that every route config a listener names and every
// load assignment an EDS cluster names is present (else an
// *IncompleteError). It does not modify r or anything in it: EDS clusters
// are copied into the snapshot, listeners, route tables and endpoint
// slices are shared with it.
func Assemble(versions map[string]string, r Resources) (*Snapshot, error) {
	snap := &Snapshot{
		Versions:    maps.Clone(versions),
		Listeners:   maps.Clone(r.Listeners),
		RouteTables: maps.Clone(r.RouteTables),
		Clusters:    make(map[string]*Cluster, len(r.Clusters)),
	}
	if snap.Versions == nil {
		snap.Versions = map[string]string{}
	}
	if snap.Listeners == nil {
		snap.Listeners = map[string]*Listener{}
	}
	if snap.RouteTables == nil {
		snap.RouteTables = map[string]*RouteTable{}
	}
	missingRoutes, missingLoads := map[string]bool{}, map[string]bool{}
	for _, l := range snap.Listeners {
		if _, ok := snap.RouteTables[l.RouteTable]; !ok {
			missingRoutes[l.RouteTable] = true
		}
	}
	for name, c := range r.Clusters {
		if c.EDSName == "" {
			snap.Clusters[name] = c.Cluster
			continue
		}
		eps, ok := r.Endpoints[c.EDSName]
		if !ok {
			missingLoads[c.EDSName] = true
			continue
		}
		// Clusters sharing a service_name share the (read-only) slice.
		joined := *c.Cluster
		joined.Endpoints = eps
		snap.Clusters[name] = &joined
	}
	if len(missingRoutes)+len(missingLoads) > 0 {
		return nil, &IncompleteError{RouteConfigs: sortedKeys(missingRoutes), Endpoints: sortedKeys(missingLoads)}
	}
	return snap, nil
}

func duplicate(kind, name string) error {
	return &ResourceError{Kind: kind, Name: name, Reason: "duplicate name"}
}
