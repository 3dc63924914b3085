package model

import (
	"slices"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// ConvertCluster converts a Cluster. An EDS cluster comes back without
// endpoints (they arrive as a ClusterLoadAssignment, see EDSServiceName
// and Build); a STATIC cluster gets the endpoints of its load_assignment.
//
// ROUND_ROBIN, LEAST_REQUEST, RANDOM and RING_HASH balancing are
// supported (not MAGLEV, slow start or active request bias), outlier
// detection on consecutive 5xx and gateway failures, a circuit breaker's
// max_requests and retry_budget, and one active health check (HTTP, gRPC or TCP connect);
// the other circuit-breaker limits, TLS and upstream protocol options are
// rejected until the proxy implements them.
func ConvertCluster(c *clusterv3.Cluster) (*Cluster, error) {
	if c == nil {
		return nil, &ResourceError{Kind: KindCluster, Reason: "nil resource"}
	}
	out, err := convertCluster(c)
	if err != nil {
		return nil, resourceErr(KindCluster, c.GetName(), err)
	}
	return out, nil
}

func convertCluster(c *clusterv3.Cluster) (*Cluster, error) {
	if err := onlyFields("", c, "name", "alt_stat_name", "type", "eds_cluster_config", "connect_timeout",
		"per_connection_buffer_limit_bytes", "lb_policy", "least_request_lb_config", "ring_hash_lb_config",
		"load_assignment", "metadata", "outlier_detection", "circuit_breakers", "health_checks",
		"wait_for_warm_on_init", "cleanup_interval", "dns_lookup_family", "track_cluster_stats"); err != nil {
		return nil, err
	}
	if c.GetName() == "" {
		return nil, errAt("name", "must not be empty")
	}
	lb, err := convertLB(c)
	if err != nil {
		return nil, err
	}
	out := &Cluster{Name: c.GetName(), LB: lb, Endpoints: []Endpoint{}}
	if od := c.GetOutlierDetection(); od != nil {
		if out.Outlier, err = convertOutlier("outlier_detection", od); err != nil {
			return nil, err
		}
	}
	if cb := c.GetCircuitBreakers(); cb != nil {
		if out.MaxRequests, out.RetryBudget, err = convertCircuitBreakers("circuit_breakers", cb); err != nil {
			return nil, err
		}
	}
	if hcs := c.GetHealthChecks(); len(hcs) > 0 {
		if out.HealthCheck, err = convertHealthChecks("health_checks", hcs); err != nil {
			return nil, err
		}
	}
	// An unset discovery type is STATIC, as in Envoy; GetType says so.
	switch t := c.GetType(); t {
	case clusterv3.Cluster_EDS:
		if c.GetLoadAssignment() != nil {
			return nil, errAt("load_assignment", "an EDS cluster gets its endpoints from EDS")
		}
		eds := c.GetEdsClusterConfig()
		if eds == nil {
			return nil, errAt("eds_cluster_config", "required for an EDS cluster")
		}
		if err := onlyFields("eds_cluster_config", eds, "eds_config", "service_name"); err != nil {
			return nil, err
		}
		if eds.GetEdsConfig() == nil {
			return nil, errAt("eds_cluster_config.eds_config", "required (ads)")
		}
		if err := checkADS("eds_cluster_config.eds_config", eds.GetEdsConfig()); err != nil {
			return nil, err
		}
	case clusterv3.Cluster_STATIC:
		if c.GetEdsClusterConfig() != nil {
			return nil, errAt("eds_cluster_config", "only for EDS clusters")
		}
		if la := c.GetLoadAssignment(); la != nil {
			// A STATIC cluster's endpoints are its definition, not a
			// registry's: one that does not convert rejects the cluster.
			eps, dropped, err := convertEndpoints("load_assignment", la)
			if err != nil {
				return nil, err
			}
			if len(dropped) > 0 {
				return nil, dropped[0]
			}
			out.Endpoints = eps
		}
	default:
		return nil, errAt("type", "unsupported discovery type %s (only EDS and STATIC)", t)
	}
	return out, nil
}

// EDSServiceName is the ClusterLoadAssignment name an EDS cluster takes its
// endpoints from: eds_cluster_config.service_name, or else the cluster's
// name. It is "" for any other cluster.
func EDSServiceName(c *clusterv3.Cluster) string {
	if c.GetType() != clusterv3.Cluster_EDS || c.GetClusterType() != nil {
		return ""
	}
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
		return n
	}
	return c.GetName()
}

// Ring sizes: Envoy's defaults, and the largest ring the proxy builds.
const (
	DefaultMinRingSize = 1024
	DefaultMaxRingSize = 8 << 20 // Envoy's default maximum
	// MaxRingEntries caps the ring the proxy builds whatever the config
	// says (16 bytes an entry: 16 MiB per cluster at the cap).
	MaxRingEntries = 1 << 20
	// MaxChoiceCount bounds least request's draws.
	MaxChoiceCount = 100
)

func convertLB(c *clusterv3.Cluster) (LBPolicy, error) {
	lr, rh := c.GetLeastRequestLbConfig(), c.GetRingHashLbConfig()
	switch p := c.GetLbPolicy(); p {
	case clusterv3.Cluster_ROUND_ROBIN, clusterv3.Cluster_RANDOM:
		if lr != nil {
			return LBPolicy{}, errAt("least_request_lb_config", "only with lb_policy LEAST_REQUEST")
		}
		if rh != nil {
			return LBPolicy{}, errAt("ring_hash_lb_config", "only with lb_policy RING_HASH")
		}
		if p == clusterv3.Cluster_RANDOM {
			return LBPolicy{Kind: LBRandom}, nil
		}
		return LBPolicy{Kind: LBRoundRobin}, nil
	case clusterv3.Cluster_LEAST_REQUEST:
		if rh != nil {
			return LBPolicy{}, errAt("ring_hash_lb_config", "only with lb_policy RING_HASH")
		}
		out := LBPolicy{Kind: LBLeastRequest, ChoiceCount: 2}
		if lr != nil {
			if err := onlyFields("least_request_lb_config", lr, "choice_count"); err != nil {
				return LBPolicy{}, err
			}
			if n := lr.GetChoiceCount(); n != nil {
				if n.GetValue() < 2 || n.GetValue() > MaxChoiceCount {
					return LBPolicy{}, errAt("least_request_lb_config.choice_count", "%d is out of range 2..%d", n.GetValue(), MaxChoiceCount)
				}
				out.ChoiceCount = int(n.GetValue())
			}
		}
		return out, nil
	case clusterv3.Cluster_RING_HASH:
		if lr != nil {
			return LBPolicy{}, errAt("least_request_lb_config", "only with lb_policy LEAST_REQUEST")
		}
		out := LBPolicy{Kind: LBRingHash, MinRingSize: DefaultMinRingSize, MaxRingSize: DefaultMaxRingSize}
		if rh != nil {
			// hash_function only changes which endpoint a key lands on:
			// the proxy uses its own hash either way.
			if err := onlyFields("ring_hash_lb_config", rh, "minimum_ring_size", "maximum_ring_size", "hash_function"); err != nil {
				return LBPolicy{}, err
			}
			if v := rh.GetMinimumRingSize(); v != nil {
				if v.GetValue() < 1 || v.GetValue() > MaxRingEntries {
					return LBPolicy{}, errAt("ring_hash_lb_config.minimum_ring_size", "%d is out of range 1..%d", v.GetValue(), MaxRingEntries)
				}
				out.MinRingSize = int(v.GetValue())
			}
			if v := rh.GetMaximumRingSize(); v != nil {
				if v.GetValue() < 1 || v.GetValue() > DefaultMaxRingSize {
					return LBPolicy{}, errAt("ring_hash_lb_config.maximum_ring_size", "%d is out of range 1..%d", v.GetValue(), DefaultMaxRingSize)
				}
				out.MaxRingSize = int(v.GetValue())
			}
			if out.MinRingSize > out.MaxRingSize {
				return LBPolicy{}, errAt("ring_hash_lb_config.minimum_ring_size", "%d is larger than maximum_ring_size %d", out.MinRingSize, out.MaxRingSize)
			}
		}
		return out, nil
	default:
		return LBPolicy{}, errAt("lb_policy", "unsupported lb_policy %s (supported: ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH)", p)
	}
}

// Outlier detection defaults (Envoy's).
const (
	DefaultConsecutive5xx     = 5
	DefaultConsecutiveGateway = 5
	DefaultOutlierInterval    = 10 * time.Second
	DefaultBaseEjection       = 30 * time.Second
	DefaultMaxEjection        = 300 * time.Second
	DefaultMaxEjectionPercent = 10
)

// convertOutlier converts outlier_detection: consecutive 5xx and gateway
// failures with Envoy's defaults and enforcing either 0 or 100 (Envoy's
// defaults: 100 for 5xx, 0 for gateway failures). Success rate, failure
// percentage, local-origin splitting, max_ejection_time and jitter are
// NACKed by name.
func convertOutlier(at string, od *clusterv3.OutlierDetection) (*OutlierPolicy, error) {
	if err := onlyFields(at, od, "consecutive_5xx", "consecutive_gateway_failure", "interval", "base_ejection_time",
		"max_ejection_percent", "enforcing_consecutive_5xx", "enforcing_consecutive_gateway_failure"); err != nil {
		return nil, err
	}
	out := &OutlierPolicy{
		Consecutive5xx: DefaultConsecutive5xx, ConsecutiveGateway: DefaultConsecutiveGateway,
		Interval: DefaultOutlierInterval, BaseEjection: DefaultBaseEjection, MaxEjection: DefaultMaxEjection,
		MaxEjectionPercent: DefaultMaxEjectionPercent,
	}
	if v := od.GetConsecutive_5Xx(); v != nil {
		out.Consecutive5xx = int(min(v.GetValue(), 1<<20))
	}
	if v := od.GetConsecutiveGatewayFailure(); v != nil {
		out.ConsecutiveGateway = int(min(v.GetValue(), 1<<20))
	}
	enforcing := func(field string, v *wrapperspb.UInt32Value, def uint32) (bool, error) {
		n := def
		if v != nil {
			n = v.GetValue()
		}
		if n != 0 && n != 100 {
			return false, errAt(join(at, field), "%d is not supported (only 0 or 100)", n)
		}
		return n == 100, nil
	}
	on, err := enforcing("enforcing_consecutive_5xx", od.GetEnforcingConsecutive_5Xx(), 100)
	if err != nil {
		return nil, err
	}
	if !on {
		out.Consecutive5xx = 0
	}
	if on, err = enforcing("enforcing_consecutive_gateway_failure", od.GetEnforcingConsecutiveGatewayFailure(), 0); err != nil {
		return nil, err
	}
	if !on {
		out.ConsecutiveGateway = 0
	}
	if d := od.GetInterval(); d != nil {
		if out.Interval, err = duration(join(at, "interval"), d); err != nil {
			return nil, err
		}
	}
	if d := od.GetBaseEjectionTime(); d != nil {
		if out.BaseEjection, err = duration(join(at, "base_ejection_time"), d); err != nil {
			return nil, err
		}
		if out.BaseEjection == 0 {
			return nil, errAt(join(at, "base_ejection_time"), "must be more than 0")
		}
	}
	// Envoy: a base ejection time above max_ejection_time is the maximum.
	out.MaxEjection = max(out.MaxEjection, out.BaseEjection)
	if v := od.GetMaxEjectionPercent(); v != nil {
		if v.GetValue() > 100 {
			return nil, errAt(join(at, "max_ejection_percent"), "%d is out of range 0..100", v.GetValue())
		}
		out.MaxEjectionPercent = int(v.GetValue())
	}
	return out, nil
}

// convertCircuitBreakers converts circuit_breakers: at most one threshold,
// of priority DEFAULT, with max_requests (more than 0; its value, or 0
// (unlimited) without one) and retry_budget (budget_percent 0..100,
// default 20, min_retry_concurrency, default 3, as in Envoy; nil without
// one, which is DefaultRetryBudget). max_retries is refused: Envoy applies
// it only without a retry_budget, and the proxy always limits retries by a
// budget. Envoy's other limits (connections, pending requests, per-host
// thresholds) are NACKed by name until the proxy enforces them.
func convertCircuitBreakers(at string, cb *clusterv3.CircuitBreakers) (int, *RetryBudget, error) {
	if err := onlyFields(at, cb, "thresholds"); err != nil {
		return 0, nil, err
	}
	ts := cb.GetThresholds()
	if len(ts) > 1 {
		return 0, nil, errAt(join(at, "thresholds"), "%d thresholds, only one (priority DEFAULT) is supported", len(ts))
	}
	if len(ts) == 0 {
		return 0, nil, nil
	}
	t, tat := ts[0], join(at, index("thresholds", 0))
	if t.GetMaxRetries() != nil {
		return 0, nil, errAt(join(tat, "max_retries"), "unsupported field: the proxy limits concurrent retries by retry_budget (default %g %% of the requests in flight, at least %d)",
			DefaultRetryBudget.Percent, DefaultRetryBudget.MinConcurrency)
	}
	if err := onlyFields(tat, t, "priority", "max_requests", "retry_budget"); err != nil {
		return 0, nil, err
	}
	if p := t.GetPriority(); p != corev3.RoutingPriority_DEFAULT {
		return 0, nil, errAt(join(tat, "priority"), "unsupported priority %s (only DEFAULT)", p)
	}
	var budget *RetryBudget
	if rb := t.GetRetryBudget(); rb != nil {
		var err error
		if budget, err = convertRetryBudget(join(tat, "retry_budget"), rb); err != nil {
			return 0, nil, err
		}
	}
	v := t.GetMaxRequests()
	if v == nil {
		return 0, budget, nil
	}
	if v.GetValue() == 0 {
		return 0, nil, errAt(join(tat, "max_requests"), "must be more than 0")
	}
	return int(v.GetValue()), budget, nil
}

// MaxRetryConcurrency caps a retry budget's min_retry_concurrency.
const MaxRetryConcurrency = 1 << 20

// convertRetryBudget converts a threshold's retry_budget with Envoy's
// defaults (DefaultRetryBudget); budget_interval is NACKed.
func convertRetryBudget(at string, rb *clusterv3.CircuitBreakers_Thresholds_RetryBudget) (*RetryBudget, error) {
	if err := onlyFields(at, rb, "budget_percent", "min_retry_concurrency"); err != nil {
		return nil, err
	}
	out := DefaultRetryBudget
	if p := rb.GetBudgetPercent(); p != nil {
		if err := onlyFields(join(at, "budget_percent"), p, "value"); err != nil {
			return nil, err
		}
		if v := p.GetValue(); !(v >= 0 && v <= 100) { // NaN too
			return nil, errAt(join(at, "budget_percent.value"), "%g is out of range 0..100", v)
		}
		out.Percent = p.GetValue()
	}
	if v := rb.GetMinRetryConcurrency(); v != nil {
		if v.GetValue() > MaxRetryConcurrency {
			return nil, errAt(join(at, "min_retry_concurrency"), "%d is more than %d", v.GetValue(), MaxRetryConcurrency)
		}
		out.MinConcurrency = int(v.GetValue())
	}
	return &out, nil
}

// HealthCheckPolicy probes every endpoint of a cluster actively (Envoy's
// health_checks, of which the proxy supports one): an endpoint is marked
// unhealthy after UnhealthyThreshold failed probes in a row and healthy
// again after HealthyThreshold successful ones.
type HealthCheckPolicy struct {
	Kind HealthCheckKind `json:"kind"`
	// Interval is the time from the end of one probe of an endpoint to the
	// start of the next, plus a random jitter up to IntervalJitter and
	// IntervalJitterPercent of Interval.
	Interval              time.Duration `json:"interval"`
	IntervalJitter        time.Duration `json:"intervalJitter,omitempty"`
	IntervalJitterPercent int           `json:"intervalJitterPercent,omitempty"`
	// Timeout bounds one probe; running out is a failure.
	Timeout            time.Duration `json:"timeout"`
	UnhealthyThreshold int           `json:"unhealthyThreshold"`
	HealthyThreshold   int           `json:"healthyThreshold"`
	// Host is the Host of an HTTP check and the :authority of a gRPC one
	// (empty: the cluster's name, as in Envoy).
	Host string `json:"host,omitempty"`
	// Path is what an HTTP check GETs.
	Path string `json:"path,omitempty"`
	// ExpectedStatuses are the HTTP statuses that count as a success,
	// half-open ranges (Envoy's default: 200 alone).
	ExpectedStatuses []StatusRange `json:"expectedStatuses,omitempty"`
	// GRPCService is the service a gRPC check asks about ("" the server).
	GRPCService string `json:"grpcService,omitempty"`
}

// HealthCheckKind is what a health check probes with.
type HealthCheckKind string

// Kinds of health checks.
const (
	HealthCheckHTTP HealthCheckKind = "http" // GET path, a status in ExpectedStatuses
	HealthCheckGRPC HealthCheckKind = "grpc" // grpc.health.v1.Health/Check answers SERVING
	HealthCheckTCP  HealthCheckKind = "tcp"  // the connection is accepted
)

// StatusRange is the HTTP statuses from Start up to, not including, End.
type StatusRange struct {
	Start int `json:"start"`
	End   int `json:"end"`
}

// Expects reports whether status counts as a success of p's HTTP check.
func (p *HealthCheckPolicy) Expects(status int) bool {
	for _, r := range p.ExpectedStatuses {
		if status >= r.Start && status < r.End {
			return true
		}
	}
	return false
}

// MinHealthCheckInterval bounds a health check's interval from below, so
// that no config makes the proxy probe in a tight loop.
const MinHealthCheckInterval = 10 * time.Millisecond

// convertHealthChecks converts health_checks: one check, with its timing
// and thresholds (all four required, as in Envoy) and an HTTP check (path,
// host, expected_statuses; HTTP/1.1 only), a gRPC check (service_name,
// authority) or a TCP connect check (without send and receive payloads).
// Everything else is NACKed by name: custom checkers, TLS options, alternate
// ports, the no-traffic, unhealthy and edge intervals, initial jitter,
// event logs, request headers, retriable statuses.
func convertHealthChecks(at string, hcs []*corev3.HealthCheck) (*HealthCheckPolicy, error) {
	if len(hcs) > 1 {
		return nil, errAt(at, "%d health checks, only one is supported", len(hcs))
	}
	at = index(at, 0)
	hc := hcs[0]
	if err := onlyFields(at, hc, "timeout", "interval", "interval_jitter", "interval_jitter_percent",
		"unhealthy_threshold", "healthy_threshold", "http_health_check", "grpc_health_check", "tcp_health_check"); err != nil {
		return nil, err
	}
	out := &HealthCheckPolicy{}
	var err error
	if hc.GetTimeout() == nil {
		return nil, errAt(join(at, "timeout"), "required")
	}
	if out.Timeout, err = duration(join(at, "timeout"), hc.GetTimeout()); err != nil {
		return nil, err
	}
	if out.Timeout == 0 {
		return nil, errAt(join(at, "timeout"), "must be more than 0")
	}
	if hc.GetInterval() == nil {
		return nil, errAt(join(at, "interval"), "required")
	}
	if out.Interval, err = duration(join(at, "interval"), hc.GetInterval()); err != nil {
		return nil, err
	}
	if out.Interval < MinHealthCheckInterval {
		return nil, errAt(join(at, "interval"), "%s is less than %s", out.Interval, MinHealthCheckInterval)
	}
	if d := hc.GetIntervalJitter(); d != nil {
		if out.IntervalJitter, err = duration(join(at, "interval_jitter"), d); err != nil {
			return nil, err
		}
	}
	if pct := hc.GetIntervalJitterPercent(); pct > 100 {
		return nil, errAt(join(at, "interval_jitter_percent"), "%d is out of range 0..100", pct)
	}
	out.IntervalJitterPercent = int(hc.GetIntervalJitterPercent())
	for _, f := range []struct {
		name string
		v    *wrapperspb.UInt32Value
		to   *int
	}{{"unhealthy_threshold", hc.GetUnhealthyThreshold(), &out.UnhealthyThreshold}, {"healthy_threshold", hc.GetHealthyThreshold(), &out.HealthyThreshold}} {
		if f.v == nil {
			return nil, errAt(join(at, f.name), "required")
		}
		// 0 acts as 1 in Envoy: the first probe decides.
		*f.to = int(min(max(f.v.GetValue(), 1), 1<<20))
	}
	switch {
	case hc.GetHttpHealthCheck() != nil:
		h, hat := hc.GetHttpHealthCheck(), join(at, "http_health_check")
		if err := onlyFields(hat, h, "host", "path", "expected_statuses"); err != nil {
			return nil, err
		}
		if !strings.HasPrefix(h.GetPath(), "/") {
			return nil, errAt(join(hat, "path"), "%q must start with /", h.GetPath())
		}
		if strings.ContainsFunc(h.GetPath(), func(r rune) bool { return r <= ' ' || r == 0x7f }) {
			return nil, errAt(join(hat, "path"), "%q must not contain spaces or control characters", h.GetPath())
		}
		if strings.ContainsFunc(h.GetHost(), func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			return nil, errAt(join(hat, "host"), "%q must not contain spaces or control characters", h.GetHost())
		}
		out.Kind, out.Path, out.Host = HealthCheckHTTP, h.GetPath(), h.GetHost()
		out.ExpectedStatuses = []StatusRange{{Start: 200, End: 201}}
		if rs := h.GetExpectedStatuses(); len(rs) > 0 {
			if out.ExpectedStatuses, err = statusRanges(join(hat, "expected_statuses"), rs); err != nil {
				return nil, err
			}
		}
	case hc.GetGrpcHealthCheck() != nil:
		g, gat := hc.GetGrpcHealthCheck(), join(at, "grpc_health_check")
		if err := onlyFields(gat, g, "service_name", "authority"); err != nil {
			return nil, err
		}
		out.Kind, out.GRPCService, out.Host = HealthCheckGRPC, g.GetServiceName(), g.GetAuthority()
	case hc.GetTcpHealthCheck() != nil:
		if err := onlyFields(join(at, "tcp_health_check"), hc.GetTcpHealthCheck()); err != nil {
			return nil, err
		}
		out.Kind = HealthCheckTCP
	default:
		return nil, errAt(at, "set one of http_health_check, grpc_health_check, tcp_health_check")
	}
	return out, nil
}

// statusRanges converts expected_statuses: half-open ranges within
// [100, 600), as Envoy requires.
func statusRanges(at string, rs []*typev3.Int64Range) ([]StatusRange, error) {
	out := make([]StatusRange, 0, len(rs))
	for i, r := range rs {
		if r.GetStart() < 100 || r.GetEnd() > 600 || r.GetStart() >= r.GetEnd() {
			return nil, errAt(index(at, i), "[%d, %d) is not a range of statuses within [100, 600)", r.GetStart(), r.GetEnd())
		}
		out = append(out, StatusRange{Start: int(r.GetStart()), End: int(r.GetEnd())})
	}
	return out, nil
}

// WithUnhealthy is c as a balancer should see it when down says which
// endpoint addresses are not to get traffic now (ejected, failing their
// health checks): c itself when down marks none of c's healthy endpoints,
// or when it would mark them all (the balancer then chooses among every
// healthy endpoint, as Envoy's panic threshold does); else a copy of every
// field of c with its own endpoints, those marked not healthy. c is never
// changed.
func WithUnhealthy(c *Cluster, down func(addr string) bool) *Cluster {
	if c == nil {
		return nil
	}
	marked, healthy := 0, 0
	for _, ep := range c.Endpoints {
		if !ep.Healthy {
			continue
		}
		if down(ep.Address) {
			marked++
		} else {
			healthy++
		}
	}
	if marked == 0 || healthy == 0 {
		return c
	}
	cp := *c
	cp.Endpoints = slices.Clone(c.Endpoints)
	for i := range cp.Endpoints {
		if ep := &cp.Endpoints[i]; ep.Healthy && down(ep.Address) {
			ep.Healthy = false
		}
	}
	return &cp
}
