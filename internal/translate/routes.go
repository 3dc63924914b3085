package translate

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/meshxds"
)

// routeConfigs returns the single RouteConfiguration every outbound and
// gateway listener uses: one virtual host per service.
func routeConfigs(m *model) []*routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: meshxds.RouteConfigMesh}
	for _, s := range m.services {
		rc.VirtualHosts = append(rc.VirtualHosts, virtualHost(s))
	}
	return []*routev3.RouteConfiguration{rc}
}

// virtualHost answers to the bare service name and to any host under it
// ("reviews.*", so the gateway can take "reviews.example.com"). The proxy
// strips ":port" from Host before matching, so no port variants are listed.
func virtualHost(s *service) *routev3.VirtualHost {
	vh := &routev3.VirtualHost{Name: s.name, Domains: []string{s.name, s.name + ".*"}}
	if s.route == nil {
		vh.Routes = []*routev3.Route{
			newRoute(s.name+"/default", prefixMatch("/"), clusterAction(meshxds.ClusterName(s.name, ""))),
		}
		setHashPolicies(s, vh.Routes)
		return vh
	}
	vh.Routes = append(matchRoutes(s), weightedRoutes(s)...)
	setHashPolicies(s, vh.Routes)
	setTimeout(s.route.Spec.TimeoutDuration(), vh.Routes)
	setRetries(s.route.Spec.Retries, vh.Routes)
	return vh
}

// PreviousHostsPredicate is the name of Envoy's retry host predicate that
// makes a retry choose another instance than the tries before it, which
// the Trellis proxy always does when it can.
const PreviousHostsPredicate = "envoy.retry_host_predicates.previous_hosts"

// setRetries gives every route of a Route with retries Envoy's
// retry_policy (each route its own message): retry_on (the conditions,
// defaults and retriable-status-codes filled in), num_retries,
// per_try_timeout when set, retriable_status_codes, retry_back_off with
// both intervals spelled out, and the previous_hosts host predicate so
// that an Envoy sidecar, like the Trellis proxy, retries on another
// instance. A Route without retries, and a service without Route, get no
// retry_policy: no retries.
func setRetries(r *api.Retries, routes []*routev3.Route) {
	if r == nil {
		return
	}
	predicate, err := anypb.New(&previoushostsv3.PreviousHostsPredicate{})
	if err != nil { // an empty message always marshals
		panic(err)
	}
	base, most := r.BackoffValues()
	for _, rt := range routes {
		p := &routev3.RetryPolicy{
			RetryOn:    strings.Join(r.Conditions(), ","),
			NumRetries: wrapperspb.UInt32(uint32(*r.Attempts)),
			RetryBackOff: &routev3.RetryPolicy_RetryBackOff{
				BaseInterval: durationpb.New(base),
				MaxInterval:  durationpb.New(most),
			},
			RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{
				Name:       PreviousHostsPredicate,
				ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: predicate},
			}},
		}
		if d := r.PerTryTimeoutDuration(); d > 0 {
			p.PerTryTimeout = durationpb.New(d)
		}
		for _, c := range r.Codes() {
			p.RetriableStatusCodes = append(p.RetriableStatusCodes, uint32(c))
		}
		rt.GetRoute().RetryPolicy = p
	}
}

// setTimeout gives every route of a Route with a timeout Envoy's route
// timeout, and max_stream_duration.grpc_timeout_header_max at the same
// value: a gRPC request's grpc-timeout, when shorter, is its limit (Envoy
// ignores the header without that field). A Route without timeout leaves
// both unset, and so does a service without Route: no limit (an Envoy
// sidecar would apply its default of 15 s; the Trellis proxy none).
func setTimeout(d time.Duration, routes []*routev3.Route) {
	if d <= 0 {
		return
	}
	for _, r := range routes {
		a := r.GetRoute()
		a.Timeout = durationpb.New(d)
		a.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{GrpcTimeoutHeaderMax: durationpb.New(d)}
	}
}

// setHashPolicies gives each route whose clusters hash consistently the
// hash_policy of their TrafficPolicies (Envoy reads the key from the
// route, the ring from the cluster). Distinct policies of a weighted
// route's versions are all listed, and Envoy (and the proxy) combine them
// into one key.
func setHashPolicies(s *service, routes []*routev3.Route) {
	for _, r := range routes {
		var clusters []string
		switch spec := r.GetRoute().GetClusterSpecifier().(type) {
		case *routev3.RouteAction_Cluster:
			clusters = []string{spec.Cluster}
		case *routev3.RouteAction_WeightedClusters:
			for _, c := range spec.WeightedClusters.GetClusters() {
				clusters = append(clusters, c.GetName())
			}
		}
		var seen []*api.ConsistentHashLB
		for _, name := range clusters {
			_, version := meshxds.SplitClusterName(name)
			lb := s.lbFor(version)
			if lb == nil || lb.ConsistentHash == nil || slices.ContainsFunc(seen, func(h *api.ConsistentHashLB) bool { return sameHashKey(h, lb.ConsistentHash) }) {
				continue
			}
			seen = append(seen, lb.ConsistentHash)
			r.GetRoute().HashPolicy = append(r.GetRoute().HashPolicy, hashPolicy(lb.ConsistentHash))
		}
	}
}

func sameHashKey(a, b *api.ConsistentHashLB) bool {
	return strings.EqualFold(a.Header, b.Header) && a.SourceIP == b.SourceIP &&
		(a.Cookie == nil) == (b.Cookie == nil) && (a.Cookie == nil || *a.Cookie == *b.Cookie)
}

func hashPolicy(h *api.ConsistentHashLB) *routev3.RouteAction_HashPolicy {
	switch {
	case h.Header != "":
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
			Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: strings.ToLower(h.Header)},
		}}
	case h.Cookie != nil:
		c := &routev3.RouteAction_HashPolicy_Cookie{Name: h.Cookie.Name}
		if h.Cookie.TTL != "" {
			d, _ := time.ParseDuration(h.Cookie.TTL) // validated
			c.Ttl = durationpb.New(d)
		}
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: c}}
	default:
		return &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
			ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true},
		}}
	}
}

// matchRoutes emits one Envoy route per match of every rule with matches,
// in rule then match order: Envoy takes the first route that matches, which
// gives "any one match selects the rule" and "rules are tried in order".
func matchRoutes(s *service) []*routev3.Route {
	var out []*routev3.Route
	for i, rule := range s.route.Spec.Rules {
		for j, m := range rule.Matches {
			name := fmt.Sprintf("%s/rule%d/match%d", s.name, i, j)
			out = append(out, newRoute(name, routeMatch(m), clusterAction(meshxds.ClusterName(s.name, rule.Version))))
		}
	}
	return out
}

// weightedRoutes splits what the match routes left by weight. With
// MAJOR.MINOR versions each major other than the lowest is reached by its
// context path /v<MAJOR> (not rewritten); everything else goes to the lowest
// major. Without weighted rules the rest goes to every instance.
func weightedRoutes(s *service) []*routev3.Route {
	var weighted []api.RouteRule
	for _, rule := range s.route.Spec.Rules {
		if rule.Weight != nil {
			weighted = append(weighted, rule)
		}
	}
	defaultName := s.name + "/default"
	if len(weighted) == 0 {
		return []*routev3.Route{newRoute(defaultName, prefixMatch("/"), clusterAction(meshxds.ClusterName(s.name, "")))}
	}

	majors, ok := majorGroups(s.route.Spec.Rules, weighted)
	if !ok {
		return []*routev3.Route{newRoute(defaultName, prefixMatch("/"), weightedAction(s.name, weighted))}
	}

	keys := make([]uint64, 0, len(majors))
	for k := range majors {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []*routev3.Route
	// Highest major first. The context paths of different majors never
	// overlap, so this order only makes the output predictable to read.
	for i := len(keys) - 1; i > 0; i-- {
		major := keys[i]
		base := fmt.Sprintf("/v%d", major)
		// Two actions, not one shared pointer: a message must not appear
		// twice in a tree that consumers may mutate.
		out = append(out,
			newRoute(fmt.Sprintf("%s/major%d/exact", s.name, major), exactMatch(base), weightedAction(s.name, majors[major])),
			newRoute(fmt.Sprintf("%s/major%d/prefix", s.name, major), prefixMatch(base+"/"), weightedAction(s.name, majors[major])),
		)
	}
	return append(out, newRoute(defaultName, prefixMatch("/"), weightedAction(s.name, majors[keys[0]])))
}

// majorGroups groups the weighted rules by major version when every version
// the Route names (in any rule) is MAJOR.MINOR; otherwise versions are
// opaque labels and ok is false. The rule itself lives in package api, so
// the validator and the translator cannot disagree on it.
func majorGroups(all, weighted []api.RouteRule) (groups map[uint64][]api.RouteRule, ok bool) {
	if !api.AllMajorMinor(all) {
		return nil, false
	}
	groups = map[uint64][]api.RouteRule{}
	for _, rule := range weighted {
		majorStr, ok := api.MajorOf(rule.Version)
		if !ok {
			return nil, false
		}
		major, err := strconv.ParseUint(majorStr, 10, 32)
		if err != nil { // absurdly long major: treat versions as opaque
			return nil, false
		}
		groups[major] = append(groups[major], rule)
	}
	return groups, true
}

// weightedAction routes to the rules' versions by weight. Weight-0 entries
// are dropped (Envoy rejects a weighted cluster whose weights are all zero,
// and a zero entry is noise); a single remaining entry is a plain cluster.
// A version listed twice gets the sum of its weights.
func weightedAction(svc string, rules []api.RouteRule) *routev3.Route_Route {
	var order []string
	weights := map[string]uint32{}
	for _, rule := range rules {
		if rule.Weight == nil || *rule.Weight <= 0 {
			continue
		}
		c := meshxds.ClusterName(svc, rule.Version)
		if _, seen := weights[c]; !seen {
			order = append(order, c)
		}
		weights[c] += uint32(*rule.Weight)
	}
	switch len(order) {
	case 0:
		// Validation makes every group sum to 100, so this is unreachable;
		// sending to every instance beats publishing an invalid route.
		return clusterAction(meshxds.ClusterName(svc, ""))
	case 1:
		return clusterAction(order[0])
	}
	wc := &routev3.WeightedCluster{}
	for _, c := range order {
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
			Name:   c,
			Weight: wrapperspb.UInt32(weights[c]),
		})
	}
	return &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: wc},
	}}
}

func newRoute(name string, match *routev3.RouteMatch, action *routev3.Route_Route) *routev3.Route {
	return &routev3.Route{Name: name, Match: match, Action: action}
}

func clusterAction(cluster string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
	}}
}

func prefixMatch(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
}

func exactMatch(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: p}}
}

// routeMatch converts one API match; all its conditions must hold, as in
// an Envoy RouteMatch. Header and query names are sorted so the output does
// not depend on map order.
func routeMatch(m api.RouteMatch) *routev3.RouteMatch {
	rm := prefixMatch("/")
	if p := m.Path; p != nil {
		switch {
		case p.Exact != "":
			rm = exactMatch(p.Exact)
		case p.Prefix != "":
			rm = prefixMatch(p.Prefix)
		case p.Regex != "":
			rm = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: regexMatcher(p.Regex)}}
		}
	}
	// HTTP header names are case-insensitive; the proxy (like Envoy)
	// compares them in lower case, so they are lowered before sorting.
	headers := make(map[string]api.StringMatch, len(m.Headers))
	for name, sm := range m.Headers {
		headers[strings.ToLower(name)] = sm
	}
	for _, name := range sortedKeys(headers) {
		sm := headers[name]
		hm := &routev3.HeaderMatcher{Name: name}
		if sm.Present {
			hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
		} else {
			hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: stringMatcher(sm)}
		}
		rm.Headers = append(rm.Headers, hm)
	}
	for _, name := range sortedKeys(m.QueryParams) {
		sm := m.QueryParams[name]
		qm := &routev3.QueryParameterMatcher{Name: name}
		if sm.Present {
			qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}
		} else {
			qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{StringMatch: stringMatcher(sm)}
		}
		rm.QueryParameters = append(rm.QueryParameters, qm)
	}
	return rm
}

// stringMatcher converts a non-"present" StringMatch. An empty one means
// "exactly the empty string".
func stringMatcher(sm api.StringMatch) *matcherv3.StringMatcher {
	switch {
	case sm.Prefix != "":
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: sm.Prefix}}
	case sm.Regex != "":
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: regexMatcher(sm.Regex)}}
	default:
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: sm.Exact}}
	}
}

// regexMatcher leaves engine_type unset: google_re2 is deprecated and RE2
// is the default engine (and what Go's regexp implements).
func regexMatcher(re string) *matcherv3.RegexMatcher {
	return &matcherv3.RegexMatcher{Regex: re}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
