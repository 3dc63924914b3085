package model

import (
	"math"
	"net/textproto"
	"slices"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// ConvertRouteConfig converts a RouteConfiguration into a RouteTable.
//
// Routes may only forward to a cluster or to weighted clusters; redirects,
// direct responses, cluster_header and any route or virtual host feature
// the proxy does not implement yet (rewrites, header mutation,
// per-filter config, retry options other than those convertRetryPolicy
// takes…) are rejected with the field that asks for it.
func ConvertRouteConfig(rc *routev3.RouteConfiguration) (*RouteTable, error) {
	if rc == nil {
		return nil, &ResourceError{Kind: KindRouteConfig, Reason: "nil resource"}
	}
	rt, err := convertRouteConfig(rc)
	if err != nil {
		return nil, resourceErr(KindRouteConfig, rc.GetName(), err)
	}
	return rt, nil
}

func convertRouteConfig(rc *routev3.RouteConfiguration) (*RouteTable, error) {
	// validate_clusters and ignore_port_in_host_matching do not change how
	// a request is routed here: the proxy always ignores the port in the
	// host, and a missing cluster is an explained error at request time.
	if err := onlyFields("", rc, "name", "virtual_hosts", "validate_clusters", "ignore_port_in_host_matching",
		"max_direct_response_body_size_bytes", "metadata"); err != nil {
		return nil, err
	}
	if rc.GetName() == "" {
		return nil, errAt("name", "must not be empty")
	}
	out := &RouteTable{Name: rc.GetName(), VirtualHosts: []*VirtualHost{}}
	seenDomain := map[string]string{} // lower-cased domain → field that declared it
	for i, vh := range rc.GetVirtualHosts() {
		at := index("virtual_hosts", i)
		v, err := convertVirtualHost(at, vh)
		if err != nil {
			return nil, err
		}
		for j, d := range v.Domains {
			key := strings.ToLower(d)
			if prev, dup := seenDomain[key]; dup {
				return nil, errAt(index(join(at, "domains"), j), "domain %q already used by %s", d, prev)
			}
			seenDomain[key] = index(join(at, "domains"), j)
		}
		out.VirtualHosts = append(out.VirtualHosts, v)
	}
	out.Domains = NewDomainIndex(out.VirtualHosts)
	return out, nil
}

func convertVirtualHost(at string, vh *routev3.VirtualHost) (*VirtualHost, error) {
	// virtual_clusters only name request classes for stats.
	if err := onlyFields(at, vh, "name", "domains", "routes", "virtual_clusters", "metadata"); err != nil {
		return nil, err
	}
	if vh.GetName() == "" {
		return nil, errAt(join(at, "name"), "must not be empty")
	}
	if len(vh.GetDomains()) == 0 {
		return nil, errAt(join(at, "domains"), "must not be empty")
	}
	for j, d := range vh.GetDomains() {
		if err := checkDomain(d); err != "" {
			return nil, errAt(index(join(at, "domains"), j), "invalid domain %q: %s", d, err)
		}
	}
	out := &VirtualHost{
		Name:    vh.GetName(),
		Domains: append([]string(nil), vh.GetDomains()...),
		Routes:  []*Route{},
	}
	for j, r := range vh.GetRoutes() {
		route, err := convertRoute(index(join(at, "routes"), j), r)
		if err != nil {
			return nil, err
		}
		out.Routes = append(out.Routes, route)
	}
	return out, nil
}

// checkDomain applies Envoy's rule: "*" alone, or one wildcard at the start
// ("*.example.com") or at the end ("reviews.*").
func checkDomain(d string) string {
	switch n := strings.Count(d, "*"); {
	case d == "":
		return "empty"
	case n == 0 || d == "*":
		return ""
	case n > 1:
		return "more than one wildcard"
	case !strings.HasPrefix(d, "*") && !strings.HasSuffix(d, "*"):
		return "wildcard must be the first or last character"
	}
	return ""
}

func convertRoute(at string, r *routev3.Route) (*Route, error) {
	// The action first: "redirect is unsupported" says more than
	// "unsupported field".
	var action *routev3.RouteAction
	switch a := r.GetAction().(type) {
	case *routev3.Route_Route:
		action = a.Route
	case nil:
		return nil, errAt(at, "no action (want route)")
	default:
		return nil, errAt(join(at, actionField(r)), "unsupported route action: only route.cluster and route.weighted_clusters are supported")
	}
	// decorator, tracing and stat_prefix only affect observability.
	if err := onlyFields(at, r, "name", "match", "route", "metadata", "decorator", "tracing", "stat_prefix"); err != nil {
		return nil, err
	}
	route := &Route{Name: r.GetName()}
	match, err := convertMatch(join(at, "match"), r.GetMatch())
	if err != nil {
		return nil, err
	}
	route.Match = match
	if err := convertRouteAction(join(at, "route"), action, route); err != nil {
		return nil, err
	}
	return route, nil
}

// actionField names the set member of the action oneof (redirect,
// direct_response, …) for the error path.
func actionField(r *routev3.Route) string {
	m := r.ProtoReflect()
	if fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("action")); fd != nil {
		return string(fd.Name())
	}
	return "action"
}

func convertRouteAction(at string, a *routev3.RouteAction, out *Route) error {
	// Everything else in RouteAction changes what happens to the request
	// (idle_timeout, prefix_rewrite, host rewrites, mirrors,
	// metadata_match…) and is not implemented yet.
	if err := onlyFields(at, a, "cluster", "weighted_clusters", "hash_policy", "timeout", "max_stream_duration", "retry_policy"); err != nil {
		return err
	}
	if rp := a.GetRetryPolicy(); rp != nil {
		r, err := convertRetryPolicy(join(at, "retry_policy"), rp)
		if err != nil {
			return err
		}
		out.Retry = r
	}
	if a.GetTimeout() != nil {
		d, err := duration(join(at, "timeout"), a.GetTimeout())
		if err != nil {
			return err
		}
		out.Timeout, out.TimeoutText = d, textOf(d)
	}
	if msd := a.GetMaxStreamDuration(); msd != nil {
		// max_stream_duration itself and grpc_timeout_header_offset are
		// not implemented.
		if err := onlyFields(join(at, "max_stream_duration"), msd, "grpc_timeout_header_max"); err != nil {
			return err
		}
		if m := msd.GetGrpcTimeoutHeaderMax(); m != nil {
			d, err := duration(join(at, "max_stream_duration.grpc_timeout_header_max"), m)
			if err != nil {
				return err
			}
			out.GRPCTimeout, out.GRPCTimeoutMax = true, d
			out.GRPCTimeoutMaxText = textOf(d)
			if d == 0 {
				out.GRPCTimeoutMaxText = "unlimited"
			}
		}
	}
	for i, hp := range a.GetHashPolicy() {
		h, err := convertHashPolicy(index(join(at, "hash_policy"), i), hp)
		if err != nil {
			return err
		}
		out.HashPolicies = append(out.HashPolicies, h)
	}
	switch spec := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		if spec.Cluster == "" {
			return errAt(join(at, "cluster"), "must not be empty")
		}
		out.Clusters = []WeightedCluster{{Name: spec.Cluster, Weight: 1}}
		out.TotalWeight = 1
		return nil
	case *routev3.RouteAction_WeightedClusters:
		return convertWeighted(join(at, "weighted_clusters"), spec.WeightedClusters, out)
	case nil:
		return errAt(at, "needs cluster or weighted_clusters")
	default:
		// cluster_header, cluster_specifier_plugin… are caught by
		// onlyFields above; this is for future oneof members.
		return errAt(at, "unsupported cluster specifier")
	}
}

func convertWeighted(at string, wc *routev3.WeightedCluster, out *Route) error {
	// total_weight is deprecated but still honoured as a check, as Envoy
	// does; runtime_key_prefix, header_name and use_hash_policy change how
	// the split is drawn.
	if err := onlyFields(at, wc, "clusters", "total_weight"); err != nil {
		return err
	}
	if len(wc.GetClusters()) == 0 {
		return errAt(join(at, "clusters"), "must not be empty")
	}
	var sum uint64
	for i, c := range wc.GetClusters() {
		cat := index(join(at, "clusters"), i)
		// Per-cluster header mutation, rewrites and filter config are not
		// supported, nor cluster_header.
		if err := onlyFields(cat, c, "name", "weight"); err != nil {
			return err
		}
		if c.GetName() == "" {
			return errAt(join(cat, "name"), "must not be empty")
		}
		w := c.GetWeight().GetValue()
		sum += uint64(w)
		out.Clusters = append(out.Clusters, WeightedCluster{Name: c.GetName(), Weight: w})
	}
	if sum == 0 {
		return errAt(at, "weights sum to 0")
	}
	if sum > math.MaxUint32 {
		return errAt(at, "weights sum to %d, more than %d", sum, uint32(math.MaxUint32))
	}
	if tw := wc.GetTotalWeight(); tw != nil && uint64(tw.GetValue()) != sum {
		return errAt(join(at, "total_weight"), "is %d but the weights sum to %d", tw.GetValue(), sum)
	}
	out.TotalWeight = uint32(sum)
	return nil
}

// convertHashPolicy converts one hash_policy entry: a header, a cookie or
// the source IP. Query parameters, filter state, header regex rewrites and
// cookie path or attributes are rejected.
func convertHashPolicy(at string, hp *routev3.RouteAction_HashPolicy) (HashPolicy, error) {
	out := HashPolicy{Terminal: hp.GetTerminal()}
	switch spec := hp.GetPolicySpecifier().(type) {
	case *routev3.RouteAction_HashPolicy_Header_:
		h := spec.Header
		if err := onlyFields(join(at, "header"), h, "header_name"); err != nil {
			return out, err
		}
		name := strings.ToLower(h.GetHeaderName())
		if name == "" || strings.HasPrefix(name, ":") {
			return out, errAt(join(at, "header.header_name"), "%q: want a header name (pseudo-headers are not supported)", h.GetHeaderName())
		}
		out.Kind, out.Name, out.HeaderKey = HashHeader, name, textproto.CanonicalMIMEHeaderKey(name)
	case *routev3.RouteAction_HashPolicy_Cookie_:
		c := spec.Cookie
		if err := onlyFields(join(at, "cookie"), c, "name", "ttl"); err != nil {
			return out, err
		}
		if c.GetName() == "" {
			return out, errAt(join(at, "cookie.name"), "must not be empty")
		}
		out.Kind, out.Name = HashCookie, c.GetName()
		if c.GetTtl() != nil {
			if err := c.GetTtl().CheckValid(); err != nil || c.GetTtl().AsDuration() < 0 {
				return out, errAt(join(at, "cookie.ttl"), "invalid duration")
			}
			out.CookieTTL = c.GetTtl().AsDuration()
			out.CookieTTLText = out.CookieTTL.String()
		}
	case *routev3.RouteAction_HashPolicy_ConnectionProperties_:
		if !spec.ConnectionProperties.GetSourceIp() {
			return out, errAt(join(at, "connection_properties.source_ip"), "false hashes nothing")
		}
		out.Kind = HashSourceIP
	case nil:
		return out, errAt(at, "needs header, cookie or connection_properties")
	default:
		return out, errAt(join(at, hashField(hp)), "unsupported hash policy: only header, cookie and connection_properties are supported")
	}
	return out, nil
}

// duration converts a non-negative protobuf duration (0: none).
func duration(at string, d *durationpb.Duration) (time.Duration, error) {
	if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
		return 0, errAt(at, "invalid duration")
	}
	return d.AsDuration(), nil
}

// textOf is a duration in config dumps: empty for none.
func textOf(d time.Duration) string {
	if d == 0 {
		return ""
	}
	return d.String()
}

// hashField names the set member of the policy_specifier oneof.
func hashField(hp *routev3.RouteAction_HashPolicy) string {
	m := hp.ProtoReflect()
	if fd := m.WhichOneof(m.Descriptor().Oneofs().ByName("policy_specifier")); fd != nil {
		return string(fd.Name())
	}
	return "policy_specifier"
}

type retryCondition struct {
	name string
	bit  RetryOn
}

// Retry conditions as Envoy spells them in retry_on, and the RetryOn bit
// of each; any other condition is refused.
var retryConditions = []retryCondition{
	{"5xx", Retry5xx},
	{"gateway-error", RetryGatewayError},
	{"reset", RetryReset},
	{"connect-failure", RetryConnectFailure},
	{"retriable-status-codes", RetryStatusCodes},
}

// Retry host predicates: the proxy always retries on another instance
// when there is one, which is what Envoy's previous_hosts predicate asks
// for, so that one (and only it) is accepted.
const (
	previousHostsName = "envoy.retry_host_predicates.previous_hosts"
	previousHostsType = "envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate"
)

// MaxNumRetries bounds a retry policy's num_retries, so that no config
// makes one request fan out into thousands of tries (Trellis Routes allow
// 10).
const MaxNumRetries = 100

// convertRetryPolicy converts a route's retry_policy: retry_on (5xx,
// gateway-error, reset, connect-failure, retriable-status-codes,
// comma-separated, spaces around them ignored as in Envoy), num_retries
// (default 1), per_try_timeout, retriable_status_codes (100..599; kept only
// with retriable-status-codes, sorted without repeats), retry_back_off
// (base_interval required when it is set, as in Envoy; defaults 25 ms and
// 10 times the base) and the previous_hosts host predicate. Every other
// field is NACKed by name. A policy that retries nothing (empty retry_on,
// or num_retries 0) is nil: Envoy's retry_on may come from request
// headers, which the proxy does not read, so such a policy retries nothing
// in either.
func convertRetryPolicy(at string, rp *routev3.RetryPolicy) (*RetryPolicy, error) {
	if err := onlyFields(at, rp, "retry_on", "num_retries", "per_try_timeout", "retriable_status_codes",
		"retry_back_off", "retry_host_predicate"); err != nil {
		return nil, err
	}
	out := &RetryPolicy{NumRetries: DefaultNumRetries, BackoffBase: DefaultBackoffBase, BackoffMax: 10 * DefaultBackoffBase}
	for _, c := range strings.Split(rp.GetRetryOn(), ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		i := slices.IndexFunc(retryConditions, func(rc retryCondition) bool { return rc.name == c })
		if i < 0 {
			return nil, errAt(join(at, "retry_on"), "%q is not supported (supported: 5xx, gateway-error, reset, connect-failure, retriable-status-codes)", c)
		}
		out.On |= retryConditions[i].bit
	}
	if n := rp.GetNumRetries(); n != nil {
		if n.GetValue() > MaxNumRetries {
			return nil, errAt(join(at, "num_retries"), "%d is more than %d", n.GetValue(), MaxNumRetries)
		}
		out.NumRetries = int(n.GetValue())
	}
	if d := rp.GetPerTryTimeout(); d != nil {
		var err error
		if out.PerTryTimeout, err = duration(join(at, "per_try_timeout"), d); err != nil {
			return nil, err
		}
	}
	for i, c := range rp.GetRetriableStatusCodes() {
		if c < 100 || c > 599 {
			return nil, errAt(index(join(at, "retriable_status_codes"), i), "%d is out of range 100..599", c)
		}
		if out.On&RetryStatusCodes != 0 {
			out.Codes = append(out.Codes, int(c))
		}
	}
	if len(out.Codes) > 0 {
		slices.Sort(out.Codes)
		out.Codes = slices.Compact(out.Codes)
	}
	if b := rp.GetRetryBackOff(); b != nil {
		bat := join(at, "retry_back_off")
		if err := onlyFields(bat, b, "base_interval", "max_interval"); err != nil {
			return nil, err
		}
		if b.GetBaseInterval() == nil {
			return nil, errAt(join(bat, "base_interval"), "required")
		}
		base, err := duration(join(bat, "base_interval"), b.GetBaseInterval())
		if err != nil {
			return nil, err
		}
		if base == 0 {
			return nil, errAt(join(bat, "base_interval"), "must be more than 0")
		}
		out.BackoffBase, out.BackoffMax = base, 10*base
		if m := b.GetMaxInterval(); m != nil {
			most, err := duration(join(bat, "max_interval"), m)
			if err != nil {
				return nil, err
			}
			if most < base {
				return nil, errAt(join(bat, "max_interval"), "%s is less than base_interval %s", most, base)
			}
			out.BackoffMax = most
		}
	}
	for i, hp := range rp.GetRetryHostPredicate() {
		if err := checkRetryHostPredicate(index(join(at, "retry_host_predicate"), i), hp); err != nil {
			return nil, err
		}
	}
	if out.On == 0 || out.NumRetries == 0 {
		return nil, nil
	}
	return out, nil
}

// checkRetryHostPredicate accepts Envoy's previous_hosts predicate (its
// typed_config, when set, says which extension it is; else its name).
func checkRetryHostPredicate(at string, hp *routev3.RetryPolicy_RetryHostPredicate) error {
	if err := onlyFields(at, hp, "name", "typed_config"); err != nil {
		return err
	}
	if tc := hp.GetTypedConfig(); tc != nil {
		// The type is what follows the URL's last '/', as in Envoy.
		if u := tc.GetTypeUrl(); u[strings.LastIndexByte(u, '/')+1:] != previousHostsType {
			return errAt(join(at, "typed_config"), "type %q is not supported (only %s)", u, previousHostsType)
		}
		return nil
	}
	if hp.GetName() != previousHostsName {
		return errAt(join(at, "name"), "%q is not supported (only %s)", hp.GetName(), previousHostsName)
	}
	return nil
}
