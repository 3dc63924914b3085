// Package translate turns Trellis API resources and registered instances into
// Envoy xDS v3 resources. It is a pure function of its input: no I/O, no
// clock, no randomness, and every output slice is sorted, so the same input
// always yields byte-identical resources (and golden files can pin them).
package translate

import (
	"cmp"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"trellis.dev/trellis/internal/api"
)

// Input is everything the translator reads. Routes and TrafficPolicies
// are already validated.
type Input struct {
	Routes          []api.Route
	TrafficPolicies []api.TrafficPolicy
	Instances       []api.Instance
}

// Output is the Envoy configuration for the whole mesh. Every slice is sorted
// by resource name.
type Output struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment

	// Warnings are problems the translator worked around (for example two
	// Routes for one service); the output is still usable.
	Warnings []string
}

// Translate builds the mesh's Envoy resources from in.
func Translate(in Input) (*Output, error) {
	m := buildModel(in)
	out := &Output{
		Listeners: listeners(),
		Routes:    routeConfigs(m),
		Warnings:  m.warnings,
	}
	out.Clusters, out.Endpoints = clustersAndEndpoints(m)

	slices.SortFunc(out.Listeners, func(a, b *listenerv3.Listener) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(out.Routes, func(a, b *routev3.RouteConfiguration) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(out.Clusters, func(a, b *clusterv3.Cluster) int { return cmp.Compare(a.Name, b.Name) })
	slices.SortFunc(out.Endpoints, func(a, b *endpointv3.ClusterLoadAssignment) int {
		return cmp.Compare(a.ClusterName, b.ClusterName)
	})
	return out, nil
}

// Resources groups the output by xDS type URL, the shape
// cache.NewSnapshot takes.
func (o *Output) Resources() map[resource.Type][]types.Resource {
	res := map[resource.Type][]types.Resource{
		resource.ListenerType: make([]types.Resource, 0, len(o.Listeners)),
		resource.RouteType:    make([]types.Resource, 0, len(o.Routes)),
		resource.ClusterType:  make([]types.Resource, 0, len(o.Clusters)),
		resource.EndpointType: make([]types.Resource, 0, len(o.Endpoints)),
	}
	for _, r := range o.Listeners {
		res[resource.ListenerType] = append(res[resource.ListenerType], r)
	}
	for _, r := range o.Routes {
		res[resource.RouteType] = append(res[resource.RouteType], r)
	}
	for _, r := range o.Clusters {
		res[resource.ClusterType] = append(res[resource.ClusterType], r)
	}
	for _, r := range o.Endpoints {
		res[resource.EndpointType] = append(res[resource.EndpointType], r)
	}
	return res
}
