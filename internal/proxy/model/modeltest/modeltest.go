// Package modeltest builds xDS resources shaped the way the Trellis control
// plane publishes them, for the proxy's tests.
package modeltest

import (
	"fmt"
	"maps"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/meshxds"
)

// Resources is one full set of xDS resources.
type Resources struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Loads     []*endpointv3.ClusterLoadAssignment
}

// Clone deep-copies r, so a test can change one copy.
func (r *Resources) Clone() *Resources {
	return &Resources{
		Listeners: cloneAll(r.Listeners),
		Routes:    cloneAll(r.Routes),
		Clusters:  cloneAll(r.Clusters),
		Loads:     cloneAll(r.Loads),
	}
}

func cloneAll[T proto.Message](in []T) []T {
	out := make([]T, len(in))
	for i, m := range in {
		out[i] = proto.Clone(m).(T)
	}
	return out
}

// Mesh is a small mesh: the outbound and gateway listeners, route config
// "mesh" with a canary of reviews (header gray=1 or query debug=true to v3,
// the rest 80/20 v1/v2) and a plain route to ratings, and EDS clusters with
// endpoints in two zones.
func Mesh() *Resources {
	reviews := &routev3.VirtualHost{
		Name:    "reviews",
		Domains: []string{"reviews", "reviews.*"},
		Routes: []*routev3.Route{
			{
				Match: &routev3.RouteMatch{
					PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
					Headers:       []*routev3.HeaderMatcher{HeaderExact("gray", "1")},
				},
				Action: ToCluster(meshxds.ClusterName("reviews", "v3")),
			},
			{
				Match: &routev3.RouteMatch{
					PathSpecifier:   &routev3.RouteMatch_Prefix{Prefix: "/"},
					QueryParameters: []*routev3.QueryParameterMatcher{QueryExact("debug", "true")},
				},
				Action: ToCluster(meshxds.ClusterName("reviews", "v3")),
			},
			{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: ToWeighted(map[string]uint32{
					meshxds.ClusterName("reviews", "v1"): 80,
					meshxds.ClusterName("reviews", "v2"): 20,
				}),
			},
		},
	}
	ratings := &routev3.VirtualHost{
		Name:    "ratings",
		Domains: []string{"ratings", "ratings.*"},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: ToCluster(meshxds.ClusterName("ratings", "")),
		}},
	}
	return &Resources{
		Listeners: []*listenerv3.Listener{
			Listener(meshxds.ListenerOutbound, meshxds.RouteConfigMesh),
			Listener(meshxds.ListenerGateway, meshxds.RouteConfigMesh),
		},
		Routes: []*routev3.RouteConfiguration{{
			Name:         meshxds.RouteConfigMesh,
			VirtualHosts: []*routev3.VirtualHost{reviews, ratings},
		}},
		Clusters: []*clusterv3.Cluster{
			EDSCluster("reviews|v1"), EDSCluster("reviews|v2"), EDSCluster("reviews|v3"), EDSCluster("ratings"),
		},
		Loads: []*endpointv3.ClusterLoadAssignment{
			Load("reviews|v1", "zone-a", Endpoint("10.0.0.1", 9080, "v1", "reviews-1", corev3.HealthStatus_HEALTHY)),
			Load("reviews|v2", "zone-b", Endpoint("10.0.0.2", 9080, "v2", "reviews-2", corev3.HealthStatus_UNKNOWN)),
			Load("reviews|v3", "zone-a",
				Endpoint("10.0.0.3", 9080, "v3", "reviews-3", corev3.HealthStatus_HEALTHY),
				Endpoint("10.0.0.4", 9080, "v3", "reviews-4", corev3.HealthStatus_UNHEALTHY)),
			Load("ratings", "", Endpoint("10.0.1.1", 9080, "", "ratings-1", corev3.HealthStatus_HEALTHY)),
		},
	}
}

// Listener is an HTTP listener routing with RDS route config rds over ADS.
func Listener(name, rds string) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: rds,
			ConfigSource:    ADS(),
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
		}},
	}
	return &listenerv3.Listener{
		Name: name,
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
			}},
		}},
	}
}

// HCM returns the HttpConnectionManager of a listener made by Listener.
func HCM(l *listenerv3.Listener) *hcmv3.HttpConnectionManager {
	hcm := &hcmv3.HttpConnectionManager{}
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		panic(err)
	}
	return hcm
}

// SetHCM replaces the HttpConnectionManager of a listener made by Listener.
func SetHCM(l *listenerv3.Listener, hcm *hcmv3.HttpConnectionManager) {
	l.GetFilterChains()[0].GetFilters()[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)}
}

// ADS is the config source "over the ADS stream".
func ADS() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

// EDSCluster is a round-robin EDS cluster over ADS.
func EDSCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ADS()},
		ConnectTimeout:       durationpb.New(1e9),
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
	}
}

// Load is a load assignment with one locality.
func Load(cluster, zone string, eps ...*endpointv3.LbEndpoint) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: cluster,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{
			Locality:    &corev3.Locality{Zone: zone},
			LbEndpoints: eps,
		}},
	}
}

// Endpoint is one instance with Trellis' version and instance labels.
func Endpoint(ip string, port uint32, version, instance string, health corev3.HealthStatus) *endpointv3.LbEndpoint {
	labels := map[string]any{}
	if version != "" {
		labels["version"] = version
	}
	if instance != "" {
		labels["instance"] = instance
	}
	md, err := structpb.NewStruct(labels)
	if err != nil {
		panic(err)
	}
	return &endpointv3.LbEndpoint{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address:       ip,
				PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
			}}},
		}},
		HealthStatus: health,
		Metadata:     &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"trellis": md}},
	}
}

// ToCluster is a route action to one cluster.
func ToCluster(name string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: name},
	}}
}

// ToWeighted is a route action splitting by weight, in cluster name order.
func ToWeighted(weights map[string]uint32) *routev3.Route_Route {
	wc := &routev3.WeightedCluster{}
	for _, name := range slices.Sorted(maps.Keys(weights)) {
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
			Name: name, Weight: wrapperspb.UInt32(weights[name]),
		})
	}
	return &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: wc},
	}}
}

// HeaderExact matches header name equal to value.
func HeaderExact(name, value string) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
		StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: value}},
	}}
}

// HeaderRegex matches header name against a whole-value regex.
func HeaderRegex(name, re string) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
		StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{
			SafeRegex: &matcherv3.RegexMatcher{Regex: re},
		}},
	}}
}

// QueryExact matches query parameter name equal to value.
func QueryExact(name, value string) *routev3.QueryParameterMatcher {
	return &routev3.QueryParameterMatcher{Name: name, QueryParameterMatchSpecifier: &routev3.QueryParameterMatcher_StringMatch{
		StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: value}},
	}}
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

// Mesh of n services shaped as internal/translate publishes them for a
// Route like the design brief's canary (header gray=1 to the last version,
// the rest split by weight): per service a virtual host (domains "svc" and
// "svc.*") with a header-match route and a weighted route, an EDS cluster
// of all its instances and one per version, and their load assignments;
// versions v1…vN with instances each, zones zone-a/zone-b, every endpoint
// HEALTHY with its version and instance labels. The memory benchmarks use
// it (n = 1,000, 2 versions, 2 instances: BenchmarkBuildScale and
// BenchmarkSidecarProcess).
func Scale(n, versions, instances int) *Resources {
	r := &Resources{
		Listeners: []*listenerv3.Listener{
			Listener(meshxds.ListenerOutbound, meshxds.RouteConfigMesh),
			Listener(meshxds.ListenerGateway, meshxds.RouteConfigMesh),
		},
	}
	rc := &routev3.RouteConfiguration{Name: meshxds.RouteConfigMesh}
	ip := 0
	for s := range n {
		svc := fmt.Sprintf("svc-%04d", s)
		weights := map[string]uint32{}
		var all []*endpointv3.LbEndpoint
		for v := 1; v <= versions; v++ {
			version := fmt.Sprintf("v%d", v)
			name := meshxds.ClusterName(svc, version)
			weights[name] = uint32(100 / versions)
			if v == 1 {
				weights[name] += uint32(100 % versions)
			}
			var eps []*endpointv3.LbEndpoint
			for i := range instances {
				ip++
				addr := fmt.Sprintf("10.%d.%d.%d", ip>>16&255, ip>>8&255, ip&255)
				eps = append(eps, Endpoint(addr, 9080, version, fmt.Sprintf("%s-%s-%d", svc, version, i), corev3.HealthStatus_HEALTHY))
			}
			all = append(all, eps...)
			r.Clusters = append(r.Clusters, EDSCluster(name))
			r.Loads = append(r.Loads, Load(name, "zone-a", eps...))
		}
		r.Clusters = append(r.Clusters, EDSCluster(meshxds.ClusterName(svc, "")))
		r.Loads = append(r.Loads, Load(meshxds.ClusterName(svc, ""), "zone-a", all...))
		last := meshxds.ClusterName(svc, fmt.Sprintf("v%d", versions))
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
			Name:    svc,
			Domains: []string{svc, svc + ".*"},
			Routes: []*routev3.Route{
				{
					Name: svc + "/rule0/match0",
					Match: &routev3.RouteMatch{
						PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"},
						Headers:       []*routev3.HeaderMatcher{HeaderExact("gray", "1")},
					},
					Action: ToCluster(last),
				},
				{
					Name:   svc + "/default",
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: ToWeighted(weights),
				},
			},
		})
	}
	r.Routes = []*routev3.RouteConfiguration{rc}
	return r
}
