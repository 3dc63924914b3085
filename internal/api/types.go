// Package api holds the user-facing resource types of Trellis
// (apiVersion trellis.dev/v1alpha1), their decoding from YAML or JSON, and
// their validation. The same types are read by the control plane's store and
// translator; nothing outside this package interprets raw user bytes.
package api

import "time"

// APIVersion is the only apiVersion this release accepts.
const APIVersion = "trellis.dev/v1alpha1"

// DefaultNamespace is used when metadata.namespace is empty.
const DefaultNamespace = "default"

// Kinds this release knows.
const (
	KindRoute         = "Route"
	KindTrafficPolicy = "TrafficPolicy"
)

// Metadata names a resource.
type Metadata struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace,omitempty"`
	// Generation counts accepted changes to the spec; set by the store.
	Generation int64 `json:"generation,omitempty"`
}

// Route sends a service's traffic to its versions: first by ordered match
// rules, then by weight. It is the one resource a canary needs.
type Route struct {
	APIVersion string    `json:"apiVersion"`
	Kind       string    `json:"kind"`
	Metadata   Metadata  `json:"metadata"`
	Spec       RouteSpec `json:"spec"`
}

// RouteSpec is what a Route says.
type RouteSpec struct {
	// Service is the mesh service whose traffic this Route directs.
	Service string `json:"service"`
	// Rules are tried in order: rules with matches first (any one match
	// selects the rule), then the weighted rules split what is left.
	Rules []RouteRule `json:"rules"`
	// Timeout, a Go duration ("2s", "150ms"), bounds each request to the
	// service: from the request's arrival at the proxy until the
	// instance's answer is whole. Past it the proxy answers 504
	// upstream_timeout (gRPC: DEADLINE_EXCEEDED). It applies to every rule
	// of the Route (Envoy's route timeout on each generated route). Empty:
	// no limit (Envoy's default of 15 s is not applied).
	Timeout string `json:"timeout,omitempty"`
	// Retries sends a failed request again, to another instance when
	// there is one; nil: no retries (a failed connect still moves on to
	// another instance).
	Retries *Retries `json:"retries,omitempty"`
}

// Retries is a Route's retry policy (Envoy's route retry_policy, on every
// route the Route generates).
type Retries struct {
	// Attempts, 1..10, required, is how many retries may follow the first
	// try (Envoy's num_retries): a request is tried at most Attempts+1
	// times.
	Attempts *int `json:"attempts,omitempty"`
	// PerTryTimeout, a Go duration (whole milliseconds, 1ms..1h, less than
	// the Route's timeout when both are set), bounds each try until the
	// answer's head arrives; a try past it is abandoned and counts as a
	// reset. Empty: each try is bounded only by the Route's timeout.
	PerTryTimeout string `json:"perTryTimeout,omitempty"`
	// On lists what is retried: RetryOn5xx, RetryOnGatewayError,
	// RetryOnReset, RetryOnConnectFailure, RetryOnStatusCodes (the last
	// needs StatusCodes). Empty: DefaultRetryOn. Repeats are ignored.
	On []string `json:"on,omitempty"`
	// StatusCodes, 100..599 each, are answers retried as well; they turn
	// on RetryOnStatusCodes whether On lists it or not.
	StatusCodes []int `json:"statusCodes,omitempty"`
	// Backoff spaces the retries out; nil: the defaults.
	Backoff *RetryBackoff `json:"backoff,omitempty"`
}

// RetryBackoff is a jittered exponential backoff: the n-th retry waits a
// random time below min(Base·2^(n-1), Max).
type RetryBackoff struct {
	// Base, a Go duration (whole milliseconds, 1ms..10s), default 25ms.
	Base string `json:"base,omitempty"`
	// Max, a Go duration (whole milliseconds, at least Base, at most
	// 100s), default 10 times Base.
	Max string `json:"max,omitempty"`
}

// TimeoutDuration is Timeout parsed; 0 when empty or invalid (Validate
// refuses an invalid one).
func (s RouteSpec) TimeoutDuration() time.Duration {
	d, err := time.ParseDuration(s.Timeout)
	if err != nil {
		return 0
	}
	return d
}

// RouteRule sends traffic to one version, either because a request matches
// (Matches) or by share (Weight). A rule has one or the other.
type RouteRule struct {
	Version string       `json:"version"`
	Weight  *int         `json:"weight,omitempty"`
	Matches []RouteMatch `json:"matches,omitempty"`
}

// RouteMatch is one way a request can select a rule; all of its conditions
// must hold.
type RouteMatch struct {
	Path        *StringMatch           `json:"path,omitempty"`
	Headers     map[string]StringMatch `json:"headers,omitempty"`
	QueryParams map[string]StringMatch `json:"queryParams,omitempty"`
}

// StringMatch matches a string value; exactly one field is set.
type StringMatch struct {
	Exact   string `json:"exact,omitempty"`
	Prefix  string `json:"prefix,omitempty"`
	Regex   string `json:"regex,omitempty"`
	Present bool   `json:"present,omitempty"`
}

// TrafficPolicy says how a service's traffic is spread over its
// instances: the load balancer, a connection limit, outlier detection and
// active health checks. Without Version it applies to every
// cluster of the service; with Version only to that version's cluster, and
// there it wins over a policy without version.
type TrafficPolicy struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   Metadata          `json:"metadata"`
	Spec       TrafficPolicySpec `json:"spec"`
}

// TrafficPolicySpec is what a TrafficPolicy says. Fields for the other
// connection limits come later; until then strict decoding rejects them as
// unknown.
type TrafficPolicySpec struct {
	// Service is the mesh service the policy applies to.
	Service string `json:"service"`
	// Version narrows the policy to one version's cluster.
	Version string `json:"version,omitempty"`
	// LoadBalancer chooses the instance of each request.
	LoadBalancer *LoadBalancer `json:"loadBalancer,omitempty"`
	// OutlierDetection ejects an instance that keeps failing for a while.
	OutlierDetection *OutlierDetection `json:"outlierDetection,omitempty"`
	// ConnectionPool limits the traffic to the cluster (a circuit breaker)
	// and the retries to it (a retry budget).
	ConnectionPool *ConnectionPool `json:"connectionPool,omitempty"`
	// HealthCheck probes every instance actively and takes the ones that
	// keep failing out of the balancer.
	HealthCheck *HealthCheck `json:"healthCheck,omitempty"`
}

// HealthCheck probes each instance of the cluster every Interval, from
// every proxy that has the cluster, with exactly one of HTTP, GRPC and TCP.
// An instance is marked unhealthy after UnhealthyThreshold failed probes in
// a row, and healthy again after HealthyThreshold successful ones; a new
// instance starts healthy. Unset fields take the defaults.
type HealthCheck struct {
	HTTP *HTTPHealthCheck `json:"http,omitempty"`
	GRPC *GRPCHealthCheck `json:"grpc,omitempty"`
	TCP  *TCPHealthCheck  `json:"tcp,omitempty"`
	// Interval, a Go duration, is the time between two probes of an
	// instance; default 10s, 100ms..1h.
	Interval string `json:"interval,omitempty"`
	// Timeout, a Go duration, bounds one probe; default 1s, less than
	// Interval.
	Timeout string `json:"timeout,omitempty"`
	// UnhealthyThreshold, 1..1000, is how many failed probes in a row mark
	// an instance unhealthy; default 3.
	UnhealthyThreshold *int `json:"unhealthyThreshold,omitempty"`
	// HealthyThreshold, 1..1000, is how many successful probes in a row
	// mark an unhealthy instance healthy again; default 2.
	HealthyThreshold *int `json:"healthyThreshold,omitempty"`
}

// HTTPHealthCheck is a GET of Path; an answer with a status in
// ExpectedStatuses (default: any 2xx) is a success.
type HTTPHealthCheck struct {
	// Path, starting with "/", may carry a query.
	Path string `json:"path"`
	// ExpectedStatuses lists the statuses (100..599) that count as a
	// success, replacing the default 200..299.
	ExpectedStatuses []int `json:"expectedStatuses,omitempty"`
}

// GRPCHealthCheck calls grpc.health.v1.Health/Check for Service (empty:
// the server as a whole); SERVING is a success.
type GRPCHealthCheck struct {
	Service string `json:"service,omitempty"`
}

// TCPHealthCheck connects; a connection accepted is a success.
type TCPHealthCheck struct{}

// ConnectionPool limits what each proxy sends to a cluster at once; a
// request over MaxRequests is answered 503 overloaded at once, a retry
// over RetryBudget is not made. Unset MaxRequests is unlimited; unset
// RetryBudget is the default budget.
type ConnectionPool struct {
	// MaxRequests, 1..1,000,000, caps the requests in flight to the
	// cluster on each proxy.
	MaxRequests *int `json:"maxRequests,omitempty"`
	// RetryBudget caps the retries in flight to the cluster on each proxy
	// (a retry over it is not made); nil: the default budget, 20 % of the
	// requests in flight and at least 3.
	RetryBudget *RetryBudget `json:"retryBudget,omitempty"`
}

// RetryBudget lets each proxy have at most Percent of the requests in
// flight to a cluster be retries, and MinConcurrency retries whatever the
// share (Envoy's circuit_breakers retry_budget). Unset fields take the
// defaults (Envoy's): 20 and 3.
type RetryBudget struct {
	// Percent, 0..100, an integer.
	Percent *int `json:"percent,omitempty"`
	// MinConcurrency, 0..10000.
	MinConcurrency *int `json:"minConcurrency,omitempty"`
}

// OutlierDetection ejects an instance whose exchanges keep failing
// (passively: judged by the requests it serves) for BaseEjectionTime times
// the number of times it was ejected, and never more than
// MaxEjectionPercent of the cluster's instances at once. Unset fields take
// the defaults (Envoy's).
type OutlierDetection struct {
	// Consecutive5xx ejects after that many 5xx answers in a row
	// (including gateway errors and connect failures); default 5.
	Consecutive5xx *int `json:"consecutive5xx,omitempty"`
	// ConsecutiveGatewayErrors ejects after that many 502, 503, 504 or
	// connect failures in a row; default 5.
	ConsecutiveGatewayErrors *int `json:"consecutiveGatewayErrors,omitempty"`
	// Interval, a Go duration, is Envoy's analysis interval (the Trellis
	// proxy ejects at once on consecutive failures); default 10s.
	Interval string `json:"interval,omitempty"`
	// BaseEjectionTime, a Go duration, is the first ejection's length;
	// default 30s.
	BaseEjectionTime string `json:"baseEjectionTime,omitempty"`
	// MaxEjectionPercent, 0..100, caps the share of ejected instances;
	// default 10.
	MaxEjectionPercent *int `json:"maxEjectionPercent,omitempty"`
}

// LoadBalancer sets exactly one balancing algorithm.
type LoadBalancer struct {
	RoundRobin     *RoundRobinLB     `json:"roundRobin,omitempty"`
	LeastRequest   *LeastRequestLB   `json:"leastRequest,omitempty"`
	Random         *RandomLB         `json:"random,omitempty"`
	ConsistentHash *ConsistentHashLB `json:"consistentHash,omitempty"`
}

// RoundRobinLB cycles through the healthy instances (the default).
type RoundRobinLB struct{}

// RandomLB picks a healthy instance at random.
type RandomLB struct{}

// LeastRequestLB draws ChoiceCount healthy instances at random and sends to
// the one with the fewest requests in flight (power of two choices).
type LeastRequestLB struct {
	// ChoiceCount is how many instances are drawn, 2..10 (default 2).
	ChoiceCount *int `json:"choiceCount,omitempty"`
}

// ConsistentHashLB sends the requests with the same key to the same
// instance (a ring hash): the key is one header's value, one cookie's
// value, or the client's IP address. Exactly one of Header, Cookie and
// SourceIP is set.
type ConsistentHashLB struct {
	Header   string      `json:"header,omitempty"`
	Cookie   *HashCookie `json:"cookie,omitempty"`
	SourceIP bool        `json:"sourceIP,omitempty"`
	// MinimumRingSize is the least number of ring entries, 64..65536
	// (default 1024); more entries spread keys more evenly.
	MinimumRingSize *int `json:"minimumRingSize,omitempty"`
}

// HashCookie names the cookie whose value is the hash key.
type HashCookie struct {
	Name string `json:"name"`
	// TTL, a Go duration ("1h"), asks the proxy to create the cookie when
	// the request has none (Envoy does; the Trellis proxy does not yet).
	TTL string `json:"ttl,omitempty"`
}

// Instance is one running copy of a service version, as registered by its
// sidecar. Address:Port is the sidecar's inbound listener.
type Instance struct {
	ID      string `json:"id"`
	Service string `json:"service"`
	Version string `json:"version"`
	Address string `json:"address"`
	Port    int    `json:"port"`
	Zone    string `json:"zone,omitempty"`
}

// ServiceSummary is what `trellis get services` shows: a service and how
// many instances each of its versions has.
type ServiceSummary struct {
	Name     string         `json:"name"`
	Versions map[string]int `json:"versions"`
	Route    string         `json:"route,omitempty"`
}
