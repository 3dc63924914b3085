// Package model is the proxy's own picture of its configuration: what it
// routes and where, converted from xDS by pure functions. A Snapshot is
// immutable once built; the data plane swaps whole snapshots atomically, so
// a request keeps the snapshot it started with.
//
// State that must outlive a snapshot (round-robin counters, connection
// pools, health) is kept elsewhere, keyed by cluster or endpoint name.
package model

import (
	"regexp"
	"time"
)

// Snapshot is a complete, consistent configuration.
type Snapshot struct {
	// Versions holds the xDS version_info accepted per type URL.
	Versions map[string]string `json:"versions"`
	// Listeners by name (meshxds.ListenerOutbound, meshxds.ListenerGateway).
	Listeners map[string]*Listener `json:"listeners"`
	// RouteTables by RouteConfiguration name.
	RouteTables map[string]*RouteTable `json:"routeTables"`
	// Clusters by name (meshxds.ClusterName).
	Clusters map[string]*Cluster `json:"clusters"`
}

// Listener says which route table a listener routes with, and the http
// filters every request on it goes through, in order, the terminal one
// (the router) last.
type Listener struct {
	Name        string       `json:"name"`
	RouteTable  string       `json:"routeTable"`
	HTTPFilters []HTTPFilter `json:"httpFilters"`
}

// RouteTable is a RouteConfiguration: virtual hosts tried by domain.
type RouteTable struct {
	Name         string         `json:"name"`
	VirtualHosts []*VirtualHost `json:"virtualHosts"`
	// Domains indexes VirtualHosts' domains (ConvertRouteConfig builds it);
	// without it the router scans them.
	Domains *DomainIndex `json:"-"`
}

// VirtualHost groups the routes of one service.
type VirtualHost struct {
	Name string `json:"name"`
	// Domains as in Envoy: exact "reviews", prefix wildcard "reviews.*",
	// suffix wildcard "*.example.com", or "*". Matched against the request
	// host with any ":port" removed, case-insensitively.
	Domains []string `json:"domains"`
	Routes  []*Route `json:"routes"`
}

// Route is one ordered rule: the first route whose Match holds is used.
type Route struct {
	Name  string `json:"name,omitempty"`
	Match Match  `json:"match"`
	// Clusters to send to; one entry means no split. Weights are relative.
	Clusters    []WeightedCluster `json:"clusters"`
	TotalWeight uint32            `json:"totalWeight"`
	// HashPolicies make the key of a consistent-hash cluster (RING_HASH)
	// from the request, as Envoy's route hash_policy; other balancers
	// ignore it.
	HashPolicies []HashPolicy `json:"hashPolicies,omitempty"`
	// Timeout bounds a request from its arrival until the answer is whole
	// (Envoy's route timeout); 0 is none.
	Timeout time.Duration `json:"-"`
	// GRPCTimeout: a gRPC request's grpc-timeout header, capped by
	// GRPCTimeoutMax (0: uncapped), bounds it too, the shorter limit
	// winning (Envoy's max_stream_duration.grpc_timeout_header_max; the
	// header is ignored without it).
	GRPCTimeout    bool          `json:"-"`
	GRPCTimeoutMax time.Duration `json:"-"`
	// Retry is the route's retry policy (Envoy's retry_policy); nil: no
	// retries (failed connects still go to other instances).
	Retry *RetryPolicy `json:"retry,omitempty"`
	// TimeoutText and GRPCTimeoutMaxText are the above for people, in
	// config dumps ("250ms").
	TimeoutText        string `json:"timeout,omitempty"`
	GRPCTimeoutMaxText string `json:"grpcTimeoutHeaderMax,omitempty"`
}

// HashPolicy is one source of a request's hash key. Keys of several
// policies are combined; a Terminal policy that yields a key ends the list.
type HashPolicy struct {
	Kind HashKind `json:"kind"`
	// Name is the header (lower case) or cookie name.
	Name string `json:"name,omitempty"`
	// HeaderKey is Name in http.Header's canonical form (for a header).
	HeaderKey string `json:"-"`
	// CookieTTL, when set, is Envoy's "create the cookie if absent": a
	// request without it gets a new random value as its key, and the
	// answer sets the cookie (balancer.KeyOfCreating).
	CookieTTL time.Duration `json:"-"`
	// CookieTTLText is CookieTTL for people ("1h0m0s"), in config dumps.
	CookieTTLText string `json:"cookieTTL,omitempty"`
	Terminal      bool   `json:"terminal,omitempty"`
}

// HashKind says where a hash key comes from.
type HashKind string

// Hash key sources.
const (
	HashHeader   HashKind = "header"
	HashCookie   HashKind = "cookie"
	HashSourceIP HashKind = "source_ip"
)

// WeightedCluster is one destination of a route with its share.
type WeightedCluster struct {
	Name   string `json:"name"`
	Weight uint32 `json:"weight"`
}

// Match is what a request must satisfy; all set parts must hold.
type Match struct {
	Path        PathMatch     `json:"path"`
	Headers     []StringMatch `json:"headers,omitempty"`
	QueryParams []StringMatch `json:"queryParams,omitempty"`
}

// PathMatch matches the request path (without query).
type PathMatch struct {
	Kind  MatchKind      `json:"kind"` // Exact, Prefix or Regex
	Value string         `json:"value"`
	Regex *regexp.Regexp `json:"-"`
}

// StringMatch matches one named header or query parameter.
type StringMatch struct {
	Name string `json:"name"`
	// HeaderKey is Name in the canonical form of http.Header's keys, for a
	// header condition (the converter sets it), so that the router looks
	// the header up without canonicalizing, which allocates, per request.
	HeaderKey string         `json:"-"`
	Kind      MatchKind      `json:"kind"`
	Value     string         `json:"value,omitempty"`
	Regex     *regexp.Regexp `json:"-"`
}

// MatchKind says how a value is compared.
type MatchKind string

// Match kinds.
const (
	Exact   MatchKind = "exact"
	Prefix  MatchKind = "prefix"
	Regex   MatchKind = "regex" // whole-value match, RE2 syntax
	Present MatchKind = "present"
)

// Cluster is a set of endpoints the balancer picks from.
type Cluster struct {
	Name      string     `json:"name"`
	LB        LBPolicy   `json:"lb"`
	Endpoints []Endpoint `json:"endpoints"`
	// Outlier is the cluster's outlier detection (Envoy's
	// outlier_detection); nil when it has none.
	Outlier *OutlierPolicy `json:"outlier,omitempty"`
	// MaxRequests caps the requests in flight to the cluster on this proxy
	// (Envoy's circuit_breakers DEFAULT threshold max_requests); 0 is
	// unlimited.
	MaxRequests int `json:"maxRequests,omitempty"`
	// HealthCheck is the cluster's active health check (Envoy's
	// health_checks, one); nil when it has none.
	HealthCheck *HealthCheckPolicy `json:"healthCheck,omitempty"`
	// RetryBudget caps the retries to the cluster (Envoy's circuit_breakers
	// retry_budget); nil means DefaultRetryBudget.
	RetryBudget *RetryBudget `json:"retryBudget,omitempty"`
}

// OutlierPolicy ejects an endpoint after consecutive failures.
type OutlierPolicy struct {
	// Consecutive5xx and ConsecutiveGateway are the thresholds of
	// consecutive 5xx answers and of consecutive gateway errors (502, 503,
	// 504, connect failures); 0 means that detector does not eject.
	Consecutive5xx     int `json:"consecutive5xx"`
	ConsecutiveGateway int `json:"consecutiveGatewayFailure"`
	// Interval is Envoy's analysis interval (informational here: the
	// proxy ejects as soon as a threshold is reached).
	Interval time.Duration `json:"interval"`
	// BaseEjection is the first ejection's length; the n-th lasts n times
	// as long, up to MaxEjection.
	BaseEjection time.Duration `json:"baseEjectionTime"`
	MaxEjection  time.Duration `json:"maxEjectionTime"`
	// MaxEjectionPercent caps the share of the cluster's endpoints ejected
	// at once (0..100).
	MaxEjectionPercent int `json:"maxEjectionPercent"`
}

// LBPolicy is a cluster's balancer (Envoy's lb_policy and its config).
type LBPolicy struct {
	Kind LBKind `json:"kind"`
	// ChoiceCount: how many endpoints least request draws (≥ 2).
	ChoiceCount int `json:"choiceCount,omitempty"`
	// MinRingSize and MaxRingSize bound a ring hash's entries.
	MinRingSize int `json:"minRingSize,omitempty"`
	MaxRingSize int `json:"maxRingSize,omitempty"`
}

// LBKind names a balancing algorithm.
type LBKind string

// Balancing algorithms.
const (
	LBRoundRobin   LBKind = "round_robin"
	LBLeastRequest LBKind = "least_request"
	LBRandom       LBKind = "random"
	LBRingHash     LBKind = "ring_hash"
)

// Endpoint is one instance's inbound listener.
type Endpoint struct {
	Address  string `json:"address"` // host:port
	Zone     string `json:"zone,omitempty"`
	Version  string `json:"version,omitempty"`
	Instance string `json:"instance,omitempty"`
	Healthy  bool   `json:"healthy"`
}
