package model_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/proxy/model/modeltest"
)

// In modeltest.Mesh: virtual_hosts[0] is reviews with routes [0] header
// gray=1, [1] query debug=true, [2] weighted 80/20; Clusters[0] and
// Loads[0] are reviews|v1.

func route(r *modeltest.Resources, i int) *routev3.Route {
	return r.Routes[0].VirtualHosts[0].Routes[i]
}

func action(r *modeltest.Resources, i int) *routev3.RouteAction { return route(r, i).GetRoute() }

func editHCM(r *modeltest.Resources, edit func(*hcmv3.HttpConnectionManager)) {
	hcm := modeltest.HCM(r.Listeners[0])
	edit(hcm)
	modeltest.SetHCM(r.Listeners[0], hcm)
}

func lbEndpoint(r *modeltest.Resources) *endpointv3.LbEndpoint {
	return r.Loads[0].Endpoints[0].LbEndpoints[0]
}

func socket(r *modeltest.Resources) *corev3.SocketAddress {
	return lbEndpoint(r).GetEndpoint().GetAddress().GetSocketAddress()
}

func stringMatch(sm *matcherv3.StringMatcher) *routev3.HeaderMatcher_StringMatch {
	return &routev3.HeaderMatcher_StringMatch{StringMatch: sm}
}

// TestRejections checks that what the proxy cannot honour is rejected with
// the resource, the field and the reason, rather than ignored.
func TestRejections(t *testing.T) {
	tcp, _ := anypb.New(&tcpv3.TcpProxy{StatPrefix: "tcp", ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: "x"}})
	fault, _ := anypb.New(&faultv3.HTTPFault{})
	strictRouter, _ := anypb.New(&routerv3.Router{RespectExpectedRqTimeout: true})

	tests := []struct {
		name   string
		mutate func(r *modeltest.Resources)
		want   string
	}{
		// Listeners.
		{"listener without HCM", func(r *modeltest.Resources) {
			r.Listeners[0].FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: tcp}
		}, `listener "outbound": filter_chains[0].filters[0].typed_config: type "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy" is not an HttpConnectionManager`},
		{"listener with two network filters", func(r *modeltest.Resources) {
			fc := r.Listeners[0].FilterChains[0]
			fc.Filters = append(fc.Filters, fc.Filters[0])
		}, `listener "outbound": filter_chains[0].filters: want exactly one filter`},
		{"listener without filter chain", func(r *modeltest.Resources) {
			r.Listeners[0].FilterChains = nil
		}, `listener "outbound": filter_chains: no filter chain`},
		{"listener with two filter chains", func(r *modeltest.Resources) {
			l := r.Listeners[0]
			l.FilterChains = append(l.FilterChains, l.FilterChains[0])
		}, `listener "outbound": filter_chains: more than one filter chain is not supported`},
		{"listener filter chain match", func(r *modeltest.Resources) {
			r.Listeners[0].FilterChains[0].FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: []string{"x"}}
		}, `listener "outbound": filter_chains[0].filter_chain_match: unsupported field`},
		{"listener TLS", func(r *modeltest.Resources) {
			r.Listeners[0].FilterChains[0].TransportSocket = &corev3.TransportSocket{Name: "tls"}
		}, `listener "outbound": filter_chains[0].transport_socket: unsupported field`},
		{"listener filters", func(r *modeltest.Resources) {
			r.Listeners[0].ListenerFilters = []*listenerv3.ListenerFilter{{Name: "envoy.filters.listener.tls_inspector"}}
		}, `listener "outbound": listener_filters: unsupported field`},
		{"inline route config", func(r *modeltest.Resources) {
			editHCM(r, func(h *hcmv3.HttpConnectionManager) {
				h.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: r.Routes[0]}
			})
		}, `listener "outbound": filter_chains[0].filters[0].typed_config.route_config: inline route config is not supported yet, only RDS`},
		{"scoped routes", func(r *modeltest.Resources) {
			editHCM(r, func(h *hcmv3.HttpConnectionManager) {
				h.RouteSpecifier = &hcmv3.HttpConnectionManager_ScopedRoutes{ScopedRoutes: &hcmv3.ScopedRoutes{Name: "s"}}
			})
		}, `typed_config.scoped_routes: scoped routes are not supported`},
		{"empty RDS name", func(r *modeltest.Resources) {
			editHCM(r, func(h *hcmv3.HttpConnectionManager) { h.GetRds().RouteConfigName = "" })
		}, `typed_config.rds.route_config_name: must not be empty`},
		{"RDS not over ADS", func(r *modeltest.Resources) {
			editHCM(r, func(h *hcmv3.HttpConnectionManager) {
				h.GetRds().ConfigSource = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Path{Path: "/etc/routes.yaml"}}
			})
		}, `typed_config.rds.config_source.path: unsupported config source: only ads is supported`},
		{"unsupported http filter", func(r *modeltest.Resources) {
			editHCM(r, func(h *hcmv3.HttpConnectionManager) {
				h.HttpFilters = append([]*hcmv3.HttpFilter{{Name: "envoy.filters.http.fault",
					ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: fault}}}, h.HttpFilters...)
			})
		}, `typed_config.http_filters[0]: unsupported http filter "envoy.filters.http.fault (type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault)"`},
		{"no router", func(r *modeltest.Resources) {
			editHCM(r, func(h *hcmv3.HttpConnectionManager) { h.HttpFilters = nil })
		}, `typed_config.http_filters: no terminal filter (envoy.filters.http.router) at the end`},
		{"filter after the router", func(r *modeltest.Resources) {
			editHCM(r, func(h *hcmv3.HttpConnectionManager) { h.HttpFilters = append(h.HttpFilters, h.HttpFilters[0]) })
		}, `typed_config.http_filters[1]: filter "envoy.filters.http.router (type.googleapis.com/envoy.extensions.filters.http.router.v3.Router)" comes after the terminal filter envoy.filters.http.router; it would never run`},
		{"router setting the proxy does not implement", func(r *modeltest.Resources) {
			editHCM(r, func(h *hcmv3.HttpConnectionManager) {
				h.HttpFilters[0].ConfigType = &hcmv3.HttpFilter_TypedConfig{TypedConfig: strictRouter}
			})
		}, `typed_config.http_filters[0].typed_config: respect_expected_rq_timeout: unsupported field`},
		{"HCM feature", func(r *modeltest.Resources) {
			editHCM(r, func(h *hcmv3.HttpConnectionManager) {
				h.UpgradeConfigs = []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: "websocket"}}
			})
		}, `typed_config.upgrade_configs: unsupported field`},

		// Route configurations.
		{"redirect", func(r *modeltest.Resources) {
			route(r, 0).Action = &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{HostRedirect: "x"}}
		}, `route config "mesh": virtual_hosts[0].routes[0].redirect: unsupported route action: only route.cluster and route.weighted_clusters are supported`},
		{"direct response", func(r *modeltest.Resources) {
			route(r, 1).Action = &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 200}}
		}, `virtual_hosts[0].routes[1].direct_response: unsupported route action`},
		{"no action", func(r *modeltest.Resources) { route(r, 0).Action = nil },
			`virtual_hosts[0].routes[0]: no action`},
		{"cluster header", func(r *modeltest.Resources) {
			action(r, 0).ClusterSpecifier = &routev3.RouteAction_ClusterHeader{ClusterHeader: "x-cluster"}
		}, `virtual_hosts[0].routes[0].route.cluster_header: unsupported field`},
		{"empty cluster", func(r *modeltest.Resources) {
			action(r, 0).ClusterSpecifier = &routev3.RouteAction_Cluster{}
		}, `virtual_hosts[0].routes[0].route.cluster: must not be empty`},
		{"weights sum to 0", func(r *modeltest.Resources) {
			for _, c := range action(r, 2).GetWeightedClusters().GetClusters() {
				c.Weight = wrapperspb.UInt32(0)
			}
		}, `route config "mesh": virtual_hosts[0].routes[2].route.weighted_clusters: weights sum to 0`},
		{"weights overflow", func(r *modeltest.Resources) {
			for _, c := range action(r, 2).GetWeightedClusters().GetClusters() {
				c.Weight = wrapperspb.UInt32(1 << 31)
			}
		}, `weighted_clusters: weights sum to 4294967296`},
		{"total weight mismatch", func(r *modeltest.Resources) {
			action(r, 2).GetWeightedClusters().TotalWeight = wrapperspb.UInt32(1000)
		}, `weighted_clusters.total_weight: is 1000 but the weights sum to 100`},
		{"weighted cluster header", func(r *modeltest.Resources) {
			action(r, 2).GetWeightedClusters().Clusters[1].ClusterHeader = "x"
		}, `weighted_clusters.clusters[1].cluster_header: unsupported field`},
		{"weighted runtime key", func(r *modeltest.Resources) {
			action(r, 2).GetWeightedClusters().RuntimeKeyPrefix = "x"
		}, `weighted_clusters.runtime_key_prefix: unsupported field`},
		{"route idle timeout", func(r *modeltest.Resources) { action(r, 2).IdleTimeout = durationpb.New(1e9) },
			`virtual_hosts[0].routes[2].route.idle_timeout: unsupported field`},
		{"negative route timeout", func(r *modeltest.Resources) { action(r, 2).Timeout = durationpb.New(-1e9) },
			`virtual_hosts[0].routes[2].route.timeout: invalid duration`},
		{"max stream duration", func(r *modeltest.Resources) {
			action(r, 2).MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: durationpb.New(1e9)}
		}, `routes[2].route.max_stream_duration.max_stream_duration: unsupported field`},
		{"grpc timeout header offset", func(r *modeltest.Resources) {
			action(r, 2).MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{GrpcTimeoutHeaderOffset: durationpb.New(1e6)}
		}, `routes[2].route.max_stream_duration.grpc_timeout_header_offset: unsupported field`},
		{"route retry condition", func(r *modeltest.Resources) {
			action(r, 2).RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx,refused-stream"}
		}, `routes[2].route.retry_policy.retry_on: "refused-stream" is not supported`},
		{"route retry priority", func(r *modeltest.Resources) {
			action(r, 2).RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx", RetryPriority: &routev3.RetryPolicy_RetryPriority{Name: "envoy.retry_priorities.previous_priorities"}}
		}, `routes[2].route.retry_policy.retry_priority: unsupported field`},
		{"route rewrite", func(r *modeltest.Resources) { action(r, 2).PrefixRewrite = "/x" },
			`routes[2].route.prefix_rewrite: unsupported field`},
		{"route header mutation", func(r *modeltest.Resources) { route(r, 2).RequestHeadersToRemove = []string{"x"} },
			`routes[2].request_headers_to_remove: unsupported field`},
		{"route per-filter config", func(r *modeltest.Resources) {
			route(r, 2).TypedPerFilterConfig = map[string]*anypb.Any{"envoy.filters.http.fault": fault}
		}, `routes[2].typed_per_filter_config: unsupported field`},
		{"virtual host retries", func(r *modeltest.Resources) {
			r.Routes[0].VirtualHosts[1].RetryPolicy = &routev3.RetryPolicy{RetryOn: "5xx"}
		}, `route config "mesh": virtual_hosts[1].retry_policy: unsupported field`},
		{"no domains", func(r *modeltest.Resources) { r.Routes[0].VirtualHosts[1].Domains = nil },
			`virtual_hosts[1].domains: must not be empty`},
		{"bad wildcard", func(r *modeltest.Resources) { r.Routes[0].VirtualHosts[1].Domains = []string{"rat*ings"} },
			`virtual_hosts[1].domains[0]: invalid domain "rat*ings": wildcard must be the first or last character`},
		{"duplicate domain", func(r *modeltest.Resources) { r.Routes[0].VirtualHosts[1].Domains = []string{"Reviews"} },
			`virtual_hosts[1].domains[0]: domain "Reviews" already used by virtual_hosts[0].domains[0]`},
		{"bad path regex", func(r *modeltest.Resources) {
			route(r, 2).Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/v[0-9"}}
		}, `virtual_hosts[0].routes[2].match.safe_regex: invalid regex "/v[0-9": missing closing ]`},
		{"regex that only compiles once wrapped", func(r *modeltest.Resources) {
			route(r, 2).Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "a)|(b"}}
		}, `match.safe_regex: invalid regex "a)|(b": unexpected )`},
		{"empty regex", func(r *modeltest.Resources) {
			route(r, 2).Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{}}
		}, `match.safe_regex: empty regex`},
		{"Perl lookahead is not RE2", func(r *modeltest.Resources) {
			route(r, 0).Match.Headers[0] = modeltest.HeaderRegex("gray", "(?=1)")
		}, `virtual_hosts[0].routes[0].match.headers[0].string_match.safe_regex: invalid regex "(?=1)": invalid or unsupported Perl syntax`},
		{"bad query regex", func(r *modeltest.Resources) {
			route(r, 1).Match.QueryParameters[0].QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{
				StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "*"}}},
			}
		}, `virtual_hosts[0].routes[1].match.query_parameters[0].string_match.safe_regex: invalid regex "*": missing argument to repetition operator`},
		{"invert match", func(r *modeltest.Resources) { route(r, 0).Match.Headers[0].InvertMatch = true },
			`routes[0].match.headers[0].invert_match: unsupported field`},
		{"range match", func(r *modeltest.Resources) {
			route(r, 0).Match.Headers[0].HeaderMatchSpecifier = &routev3.HeaderMatcher_RangeMatch{RangeMatch: &typev3.Int64Range{Start: 1, End: 9}}
		}, `routes[0].match.headers[0].range_match: unsupported field`},
		{"deprecated safe_regex_match", func(r *modeltest.Resources) {
			route(r, 0).Match.Headers[0].HeaderMatchSpecifier = &routev3.HeaderMatcher_SafeRegexMatch{SafeRegexMatch: &matcherv3.RegexMatcher{Regex: "1"}}
		}, `routes[0].match.headers[0].safe_regex_match: unsupported field (deprecated)`},
		{"deprecated exact match", func(r *modeltest.Resources) {
			route(r, 0).Match.Headers[0].HeaderMatchSpecifier = &routev3.HeaderMatcher_ExactMatch{ExactMatch: "1"}
		}, `routes[0].match.headers[0].exact_match: unsupported field (deprecated)`},
		{"header absent", func(r *modeltest.Resources) {
			route(r, 0).Match.Headers[0].HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: false}
		}, `routes[0].match.headers[0].present_match: false (match on absence) is not supported`},
		{"header without matcher", func(r *modeltest.Resources) {
			route(r, 0).Match.Headers[0].HeaderMatchSpecifier = nil
		}, `routes[0].match.headers[0]: needs string_match or present_match`},
		{"header without name", func(r *modeltest.Resources) { route(r, 0).Match.Headers[0].Name = "" },
			`routes[0].match.headers[0].name: must not be empty`},
		{"treat missing header as empty", func(r *modeltest.Resources) {
			route(r, 0).Match.Headers[0].TreatMissingHeaderAsEmpty = true
		}, `routes[0].match.headers[0].treat_missing_header_as_empty: unsupported field`},
		{"ignore case", func(r *modeltest.Resources) {
			route(r, 0).Match.Headers[0].HeaderMatchSpecifier = stringMatch(&matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "1"}, IgnoreCase: true})
		}, `routes[0].match.headers[0].string_match.ignore_case: unsupported field`},
		{"suffix", func(r *modeltest.Resources) {
			route(r, 0).Match.Headers[0].HeaderMatchSpecifier = stringMatch(&matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: "1"}})
		}, `routes[0].match.headers[0].string_match.suffix: unsupported field`},
		{"case-insensitive path", func(r *modeltest.Resources) { route(r, 2).Match.CaseSensitive = wrapperspb.Bool(false) },
			`routes[2].match.case_sensitive: case-insensitive path matching is not supported`},
		{"runtime fraction", func(r *modeltest.Resources) {
			route(r, 2).Match.RuntimeFraction = &corev3.RuntimeFractionalPercent{}
		}, `routes[2].match.runtime_fraction: unsupported field`},
		{"path separated prefix", func(r *modeltest.Resources) {
			route(r, 2).Match.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/api"}
		}, `routes[2].match.path_separated_prefix: unsupported field`},
		{"query absent", func(r *modeltest.Resources) {
			route(r, 1).Match.QueryParameters[0].QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{}
		}, `routes[1].match.query_parameters[0].present_match: false (match on absence) is not supported`},

		// Clusters.
		{"strict DNS", func(r *modeltest.Resources) {
			r.Clusters[0].ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
			r.Clusters[0].EdsClusterConfig = nil
		}, `cluster "reviews|v1": type: unsupported discovery type STRICT_DNS (only EDS and STATIC)`},
		{"custom cluster type", func(r *modeltest.Resources) {
			r.Clusters[0].ClusterDiscoveryType = &clusterv3.Cluster_ClusterType{ClusterType: &clusterv3.Cluster_CustomClusterType{Name: "x"}}
		}, `cluster "reviews|v1": cluster_type: unsupported field`},
		{"maglev", func(r *modeltest.Resources) { r.Clusters[1].LbPolicy = clusterv3.Cluster_MAGLEV },
			`cluster "reviews|v2": lb_policy: unsupported lb_policy MAGLEV (supported: ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH)`},
		{"ring hash config on round robin", func(r *modeltest.Resources) {
			r.Clusters[0].LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{}}
		}, `cluster "reviews|v1": ring_hash_lb_config: only with lb_policy RING_HASH`},
		{"least request config on ring hash", func(r *modeltest.Resources) {
			r.Clusters[0].LbPolicy = clusterv3.Cluster_RING_HASH
			r.Clusters[0].LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{}}
		}, `cluster "reviews|v1": least_request_lb_config: only with lb_policy LEAST_REQUEST`},
		{"least request choice count", func(r *modeltest.Resources) {
			r.Clusters[0].LbPolicy = clusterv3.Cluster_LEAST_REQUEST
			r.Clusters[0].LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{ChoiceCount: wrapperspb.UInt32(1)}}
		}, `cluster "reviews|v1": least_request_lb_config.choice_count: 1 is out of range 2..100`},
		{"least request bias", func(r *modeltest.Resources) {
			r.Clusters[0].LbPolicy = clusterv3.Cluster_LEAST_REQUEST
			r.Clusters[0].LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{SlowStartConfig: &clusterv3.Cluster_SlowStartConfig{}}}
		}, `cluster "reviews|v1": least_request_lb_config.slow_start_config: unsupported field`},
		{"ring too large", func(r *modeltest.Resources) {
			r.Clusters[0].LbPolicy = clusterv3.Cluster_RING_HASH
			r.Clusters[0].LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(1 << 21)}}
		}, `cluster "reviews|v1": ring_hash_lb_config.minimum_ring_size: 2097152 is out of range 1..1048576`},
		{"ring min over max", func(r *modeltest.Resources) {
			r.Clusters[0].LbPolicy = clusterv3.Cluster_RING_HASH
			r.Clusters[0].LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{
				MinimumRingSize: wrapperspb.UInt64(2048), MaximumRingSize: wrapperspb.UInt64(1024)}}
		}, `cluster "reviews|v1": ring_hash_lb_config.minimum_ring_size: 2048 is larger than maximum_ring_size 1024`},
		{"hash policy on query", func(r *modeltest.Resources) {
			action(r, 2).HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{
				QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: "u"}}}}
		}, `virtual_hosts[0].routes[2].route.hash_policy[0].query_parameter: unsupported hash policy: only header, cookie and connection_properties are supported`},
		{"hash header rewrite", func(r *modeltest.Resources) {
			action(r, 2).HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
				Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user", RegexRewrite: &matcherv3.RegexMatchAndSubstitute{}}}}}
		}, `virtual_hosts[0].routes[2].route.hash_policy[0].header.regex_rewrite: unsupported field`},
		{"hash cookie path", func(r *modeltest.Resources) {
			action(r, 2).HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{
				Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: "s", Path: "/"}}}}
		}, `virtual_hosts[0].routes[2].route.hash_policy[0].cookie.path: unsupported field`},
		{"hash empty header", func(r *modeltest.Resources) {
			action(r, 2).HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
				Header: &routev3.RouteAction_HashPolicy_Header{}}}}
		}, `virtual_hosts[0].routes[2].route.hash_policy[0].header.header_name: "": want a header name`},
		{"hash source ip false", func(r *modeltest.Resources) {
			action(r, 2).HashPolicy = []*routev3.RouteAction_HashPolicy{{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
				ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{}}}}
		}, `virtual_hosts[0].routes[2].route.hash_policy[0].connection_properties.source_ip: false hashes nothing`},
		{"slow start", func(r *modeltest.Resources) {
			r.Clusters[0].LbConfig = &clusterv3.Cluster_RoundRobinLbConfig_{RoundRobinLbConfig: &clusterv3.Cluster_RoundRobinLbConfig{}}
		}, `cluster "reviews|v1": round_robin_lb_config: unsupported field`},
		{"circuit breakers max connections", func(r *modeltest.Resources) {
			r.Clusters[0].CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{MaxConnections: wrapperspb.UInt32(1)}}}
		}, `cluster "reviews|v1": circuit_breakers.thresholds[0].max_connections: unsupported field`},
		{"outlier detection success rate", func(r *modeltest.Resources) {
			r.Clusters[0].OutlierDetection = &clusterv3.OutlierDetection{EnforcingSuccessRate: wrapperspb.UInt32(100)}
		}, `cluster "reviews|v1": outlier_detection.enforcing_success_rate: unsupported field`},
		{"upstream TLS", func(r *modeltest.Resources) { r.Clusters[0].TransportSocket = &corev3.TransportSocket{Name: "tls"} },
			`cluster "reviews|v1": transport_socket: unsupported field`},
		{"EDS without config", func(r *modeltest.Resources) { r.Clusters[0].EdsClusterConfig = nil },
			`cluster "reviews|v1": eds_cluster_config: required for an EDS cluster`},
		{"EDS not over ADS", func(r *modeltest.Resources) {
			r.Clusters[0].EdsClusterConfig.EdsConfig = &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{
				ApiConfigSource: &corev3.ApiConfigSource{}}}
		}, `cluster "reviews|v1": eds_cluster_config.eds_config.api_config_source: unsupported config source: only ads is supported`},
		{"empty cluster name", func(r *modeltest.Resources) { r.Clusters[0].Name = "" },
			`cluster "": name: must not be empty`},
		{"static cluster with bad endpoint", func(r *modeltest.Resources) {
			r.Clusters = append(r.Clusters, &clusterv3.Cluster{Name: "static", LoadAssignment: modeltest.Load("static", "",
				modeltest.Endpoint("localhost", 80, "", "", corev3.HealthStatus_HEALTHY))})
		}, `cluster "static": load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address: "localhost" is not an IP address`},

		// Endpoints.
		{"priority", func(r *modeltest.Resources) { r.Loads[0].Endpoints[0].Priority = 1 },
			`cluster load assignment "reviews|v1": endpoints[0].priority: priority 1 is not supported`},
		{"drop overloads", func(r *modeltest.Resources) {
			r.Loads[0].Policy = &endpointv3.ClusterLoadAssignment_Policy{DropOverloads: []*endpointv3.ClusterLoadAssignment_Policy_DropOverload{{Category: "x"}}}
		}, `cluster load assignment "reviews|v1": policy.drop_overloads: unsupported field`},
		{"empty cluster name in load", func(r *modeltest.Resources) { r.Loads[0].ClusterName = "" },
			`cluster load assignment "": cluster_name: must not be empty`},

		// Across resources.
		{"duplicate listener", func(r *modeltest.Resources) { r.Listeners[1].Name = r.Listeners[0].Name },
			`listener "outbound": duplicate name`},
		{"duplicate load assignment", func(r *modeltest.Resources) { r.Loads = append(r.Loads, r.Loads[0]) },
			`cluster load assignment "reviews|v1": duplicate name`},
		{"nil route config", func(r *modeltest.Resources) { r.Routes = append(r.Routes, nil) },
			`route config "": nil resource`},
	}
	base := modeltest.Mesh()
	if _, err := build(base); err != nil {
		t.Fatalf("base mesh does not build: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base.Clone()
			tt.mutate(r)
			_, err := build(r)
			var re *model.ResourceError
			if !errors.As(err, &re) {
				t.Fatalf("got error %v (%T), want a *model.ResourceError containing %q", err, err, tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got  %s\nwant it to contain %s", err, tt.want)
			}
		})
	}
}

func build(r *modeltest.Resources) (*model.Snapshot, error) {
	return model.Build(nil, r.Listeners, r.Routes, r.Clusters, r.Loads)
}

// An endpoint that does not convert is left out, with its reason, and the
// rest of the resource is taken: one bad registration must not make every
// proxy reject a service's endpoint updates.
func TestBadEndpointDropped(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*modeltest.Resources)
		want   string
	}{
		{"hostname endpoint", func(r *modeltest.Resources) { socket(r).Address = "reviews.default.svc" },
			`cluster load assignment "reviews|v1": endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address: "reviews.default.svc" is not an IP address`},
		{"ip:port in address", func(r *modeltest.Resources) { socket(r).Address = "10.0.0.1:80" },
			`socket_address.address: "10.0.0.1:80" is not an IP address`},
		{"port 0", func(r *modeltest.Resources) {
			socket(r).PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: 0}
		}, `socket_address.port_value: port 0 out of range 1..65535`},
		{"port too big", func(r *modeltest.Resources) {
			socket(r).PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: 65536}
		}, `socket_address.port_value: port 65536 out of range 1..65535`},
		{"named port", func(r *modeltest.Resources) {
			socket(r).PortSpecifier = &corev3.SocketAddress_NamedPort{NamedPort: "http"}
		}, `socket_address.named_port: unsupported field`},
		{"UDP", func(r *modeltest.Resources) { socket(r).Protocol = corev3.SocketAddress_UDP },
			`socket_address.protocol: UDP is not supported, only TCP`},
		{"pipe", func(r *modeltest.Resources) {
			lbEndpoint(r).GetEndpoint().Address = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/tmp/s"}}}
		}, `endpoints[0].lb_endpoints[0].endpoint.address: want socket_address`},
		{"no endpoint", func(r *modeltest.Resources) { lbEndpoint(r).HostIdentifier = nil },
			`endpoints[0].lb_endpoints[0].endpoint: missing`},
		{"named endpoint", func(r *modeltest.Resources) {
			lbEndpoint(r).HostIdentifier = &endpointv3.LbEndpoint_EndpointName{EndpointName: "x"}
		}, `endpoints[0].lb_endpoints[0].endpoint_name: unsupported field`},
		{"endpoint weight", func(r *modeltest.Resources) { lbEndpoint(r).LoadBalancingWeight = wrapperspb.UInt32(5) },
			`endpoints[0].lb_endpoints[0].load_balancing_weight: weight 5 is not supported`},
		{"version label not a string", func(r *modeltest.Resources) {
			lbEndpoint(r).Metadata.FilterMetadata["trellis"].Fields["version"] = structpb.NewNumberValue(1)
		}, `endpoints[0].lb_endpoints[0].metadata.filter_metadata.trellis.version: must be a string`},
	}
	base := modeltest.Mesh()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base.Clone()
			good, _, err := model.ConvertEndpoints(base.Loads[0])
			if err != nil {
				t.Fatal(err)
			}
			tt.mutate(r)
			eps, dropped, err := model.ConvertEndpoints(r.Loads[0])
			if err != nil {
				t.Fatalf("the resource was rejected: %v", err)
			}
			if len(eps) != len(good)-1 || len(dropped) != 1 {
				t.Fatalf("got %d endpoints and %d dropped, want %d and 1", len(eps), len(dropped), len(good)-1)
			}
			var re *model.ResourceError
			if !errors.As(dropped[0], &re) || !strings.Contains(dropped[0].Error(), tt.want) {
				t.Errorf("dropped because %v, want a *model.ResourceError containing %s", dropped[0], tt.want)
			}
			if _, err := build(r); err != nil {
				t.Errorf("the snapshot does not build: %v", err)
			}
		})
	}
}

// A route's timeout and grpc_timeout_header_max are taken (0 in the
// latter: the header uncapped).
func TestRouteTimeouts(t *testing.T) {
	r := modeltest.Mesh()
	action(r, 0).Timeout = durationpb.New(250e6)
	action(r, 0).MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{GrpcTimeoutHeaderMax: durationpb.New(250e6)}
	action(r, 1).MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{GrpcTimeoutHeaderMax: durationpb.New(0)}
	rt, err := model.ConvertRouteConfig(r.Routes[0])
	if err != nil {
		t.Fatal(err)
	}
	routes := rt.VirtualHosts[0].Routes
	type timeouts struct {
		d           time.Duration
		grpc        bool
		grpcMax     time.Duration
		text, gtext string
	}
	for i, want := range []timeouts{
		{250 * time.Millisecond, true, 250 * time.Millisecond, "250ms", "250ms"},
		{0, true, 0, "", "unlimited"},
		{},
	} {
		r := routes[i]
		if got := (timeouts{r.Timeout, r.GRPCTimeout, r.GRPCTimeoutMax, r.TimeoutText, r.GRPCTimeoutMaxText}); got != want {
			t.Errorf("routes[%d]: %+v, want %+v", i, got, want)
		}
	}
}
