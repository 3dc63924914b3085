package model

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// Well-known names: the only network filter the proxy implements, and the
// terminal http filter (registered by its package, see HTTPFilterType).
const (
	filterHCM    = "envoy.filters.network.http_connection_manager"
	filterRouter = "envoy.filters.http.router"
)

var typeHCM = "type.googleapis.com/" + string(proto.MessageName(&hcmv3.HttpConnectionManager{}))

// ConvertListener converts a Listener: one filter chain whose only network
// filter is an HttpConnectionManager that takes its routes from RDS.
//
// The listener's address is not used: the proxy binds its sockets from its
// flags, and the Listener only says what to do with the connections.
func ConvertListener(l *listenerv3.Listener) (*Listener, error) {
	if l == nil {
		return nil, &ResourceError{Kind: KindListener, Reason: "nil resource"}
	}
	out, err := convertListener(l)
	if err != nil {
		return nil, resourceErr(KindListener, l.GetName(), err)
	}
	return out, nil
}

func convertListener(l *listenerv3.Listener) (*Listener, error) {
	// Rejected, among others: listener_filters (TLS/HTTP inspectors,
	// original_dst), use_original_dst, transparent, filter_chain_matcher,
	// fcds_config, api_listener, udp_listener_config.
	if err := onlyFields("", l, "name", "address", "additional_addresses", "stat_prefix", "filter_chains",
		"default_filter_chain", "per_connection_buffer_limit_bytes", "metadata", "drain_type",
		"traffic_direction", "bind_to_port", "enable_reuse_port", "reuse_port", "tcp_backlog_size",
		"tcp_keepalive", "access_log", "ignore_global_conn_limit", "max_connections_to_accept_per_socket_event"); err != nil {
		return nil, err
	}
	if l.GetName() == "" {
		return nil, errAt("name", "must not be empty")
	}
	chain, at := l.GetDefaultFilterChain(), "default_filter_chain"
	switch n := len(l.GetFilterChains()); {
	case n > 1 || (n == 1 && chain != nil):
		return nil, errAt("filter_chains", "more than one filter chain is not supported")
	case n == 1:
		chain, at = l.GetFilterChains()[0], "filter_chains[0]"
	case chain == nil:
		return nil, errAt("filter_chains", "no filter chain")
	}
	rds, filters, err := convertFilterChain(at, chain)
	if err != nil {
		return nil, err
	}
	return &Listener{Name: l.GetName(), RouteTable: rds, HTTPFilters: filters}, nil
}

// convertFilterChain returns the RDS route config name and the http
// filters of the chain's HTTP connection manager.
func convertFilterChain(at string, fc *listenerv3.FilterChain) (string, []HTTPFilter, error) {
	// transport_socket (TLS) is not implemented yet; use_proxy_proto neither.
	if err := onlyFields(at, fc, "name", "filters", "metadata", "filter_chain_match"); err != nil {
		return "", nil, err
	}
	if m := fc.GetFilterChainMatch(); m != nil && proto.Size(m) > 0 {
		return "", nil, errAt(join(at, "filter_chain_match"), "unsupported field")
	}
	filters := fc.GetFilters()
	if len(filters) != 1 {
		return "", nil, errAt(join(at, "filters"), "want exactly one filter, %s; got %d (the proxy only serves HTTP listeners)", filterHCM, len(filters))
	}
	fat := join(at, "filters[0]")
	hcm, err := unpackHCM(fat, filters[0])
	if err != nil {
		return "", nil, err
	}
	return convertHCM(join(fat, "typed_config"), hcm)
}

func unpackHCM(at string, f *listenerv3.Filter) (*hcmv3.HttpConnectionManager, error) {
	tc := f.GetTypedConfig()
	if tc == nil {
		// config_discovery (ECDS) is not supported either.
		return nil, errAt(at, "want an HttpConnectionManager (%s) in typed_config", filterHCM)
	}
	if tc.GetTypeUrl() != typeHCM {
		return nil, errAt(join(at, "typed_config"), "type %q is not an HttpConnectionManager; the proxy only serves HTTP listeners", tc.GetTypeUrl())
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := anypb.UnmarshalTo(tc, hcm, proto.UnmarshalOptions{}); err != nil {
		return nil, errAt(join(at, "typed_config"), "cannot decode: %v", err)
	}
	return hcm, nil
}

// convertHCM checks the HttpConnectionManager and returns its RDS name
// and its http filters.
// Connection-level tunables (timeouts, request ids, XFF handling, protocol
// options) are accepted: they do not change which route a request takes.
func convertHCM(at string, hcm *hcmv3.HttpConnectionManager) (string, []HTTPFilter, error) {
	if err := onlyFields(at, hcm, "stat_prefix", "codec_type", "rds", "route_config", "scoped_routes",
		"http_filters", "access_log", "tracing", "common_http_protocol_options", "http_protocol_options",
		"http2_protocol_options", "stream_idle_timeout", "request_timeout", "request_headers_timeout",
		"drain_timeout", "delayed_close_timeout", "use_remote_address", "xff_num_trusted_hops",
		"skip_xff_append", "via", "generate_request_id", "preserve_external_request_id",
		"always_set_request_id_in_response", "server_name", "server_header_transformation",
		"normalize_path", "merge_slashes", "strip_any_host_port"); err != nil {
		return "", nil, err
	}
	filters, err := convertHTTPFilters(join(at, "http_filters"), hcm.GetHttpFilters())
	if err != nil {
		return "", nil, err
	}
	switch spec := hcm.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		rds, err := convertRds(join(at, "rds"), spec.Rds)
		return rds, filters, err
	case *hcmv3.HttpConnectionManager_RouteConfig:
		return "", nil, errAt(join(at, "route_config"), "inline route config is not supported yet, only RDS (rds.route_config_name)")
	case *hcmv3.HttpConnectionManager_ScopedRoutes:
		return "", nil, errAt(join(at, "scoped_routes"), "scoped routes are not supported, only RDS (rds.route_config_name)")
	default:
		return "", nil, errAt(at, "no route specifier: want rds.route_config_name")
	}
}

func convertRds(at string, rds *hcmv3.Rds) (string, error) {
	if err := onlyFields(at, rds, "config_source", "route_config_name"); err != nil {
		return "", err
	}
	if rds.GetRouteConfigName() == "" {
		return "", errAt(join(at, "route_config_name"), "must not be empty")
	}
	if err := checkADS(join(at, "config_source"), rds.GetConfigSource()); err != nil {
		return "", err
	}
	return rds.GetRouteConfigName(), nil
}

// checkADS accepts a missing config source, ads or self: the proxy has
// exactly one xDS stream, the ADS one, so it cannot fetch from anywhere else.
func checkADS(at string, cs *corev3.ConfigSource) error {
	if cs == nil {
		return nil
	}
	// resource_api_version and initial_fetch_timeout do not change the source.
	if err := onlyFields(at, cs, "ads", "self", "resource_api_version", "initial_fetch_timeout", "authorities"); err != nil {
		fe := err.(*fieldError)
		fe.reason = "unsupported config source: only ads is supported"
		return fe
	}
	if cs.GetAds() == nil && cs.GetSelf() == nil {
		return errAt(at, "unsupported config source: only ads is supported")
	}
	return nil
}

func filterID(f *hcmv3.HttpFilter) string {
	if tc := f.GetTypedConfig(); tc != nil {
		return f.GetName() + " (" + tc.GetTypeUrl() + ")"
	}
	return f.GetName()
}
