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
// instances: the load balancer (later also connection limits, outlier
// detection and health checks). Without Version it applies to every
// cluster of the service; with Version only to that version's cluster, and
// there it wins over a policy without version.
type TrafficPolicy struct {
	APIVersion string            `json:"apiVersion"`
	Kind       string            `json:"kind"`
	Metadata   Metadata          `json:"metadata"`
	Spec       TrafficPolicySpec `json:"spec"`
}

// TrafficPolicySpec is what a TrafficPolicy says. Fields for health checks
// and the other connection limits come later; until then strict decoding
// rejects them as unknown.
type TrafficPolicySpec struct {
	// Service is the mesh service the policy applies to.
	Service string `json:"service"`
	// Version narrows the policy to one version's cluster.
	Version string `json:"version,omitempty"`
	// LoadBalancer chooses the instance of each request.
	LoadBalancer *LoadBalancer `json:"loadBalancer,omitempty"`
	// OutlierDetection ejects an instance that keeps failing for a while.
	OutlierDetection *OutlierDetection `json:"outlierDetection,omitempty"`
	// ConnectionPool limits the traffic to the cluster (a circuit breaker).
	ConnectionPool *ConnectionPool `json:"connectionPool,omitempty"`
}

// ConnectionPool limits what each proxy sends to a cluster at once; a
// request over a limit is answered 503 overloaded at once. Unset fields
// are unlimited.
type ConnectionPool struct {
	// MaxRequests, 1..1,000,000, caps the requests in flight to the
	// cluster on each proxy.
	MaxRequests *int `json:"maxRequests,omitempty"`
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
