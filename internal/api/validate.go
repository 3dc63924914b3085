package api

import (
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Validate checks one resource and returns the first problem as
// "field.path: reason". It never changes the resource.
func Validate(r Resource) error {
	switch r := r.(type) {
	case *Route:
		return validateRoute(r)
	case *TrafficPolicy:
		return validateTrafficPolicy(r)
	}
	return fmt.Errorf("kind: unknown kind %q", r.GetKind())
}

var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// versionLabel is what a version may look like: "v1", "canary", "1.0".
var versionLabel = regexp.MustCompile(`^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$`)

var majorMinor = regexp.MustCompile(`^(\d+)\.(\d+)$`)

func validateName(path, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s: required", path)
	case len(s) > 63:
		return fmt.Errorf("%s: %q is longer than 63 characters", path, s)
	case !dnsLabel.MatchString(s):
		return fmt.Errorf("%s: %q must be lower-case letters, digits and '-', starting and ending with a letter or digit", path, s)
	}
	return nil
}

func validateMeta(kind string, apiVersion string, m Metadata) error {
	if apiVersion != APIVersion {
		return fmt.Errorf("apiVersion: must be %q, got %q", APIVersion, apiVersion)
	}
	if err := validateName("metadata.name", m.Name); err != nil {
		return err
	}
	if m.Namespace != "" {
		if err := validateName("metadata.namespace", m.Namespace); err != nil {
			return err
		}
	}
	return nil
}

func validateRoute(r *Route) error {
	if r.Kind != KindRoute {
		return fmt.Errorf("kind: must be %q, got %q", KindRoute, r.Kind)
	}
	if err := validateMeta(r.Kind, r.APIVersion, r.Metadata); err != nil {
		return err
	}
	s := r.Spec
	if err := validateName("spec.service", s.Service); err != nil {
		return err
	}
	if len(s.Rules) == 0 {
		return errors.New("spec.rules: at least one rule is required")
	}
	weighted := map[string]bool{}
	for i, rule := range s.Rules {
		p := fmt.Sprintf("spec.rules[%d]", i)
		if rule.Version == "" {
			return fmt.Errorf("%s.version: required", p)
		}
		if !versionLabel.MatchString(rule.Version) || len(rule.Version) > 63 {
			return fmt.Errorf("%s.version: %q must be letters, digits, '-', '_' and '.', at most 63 characters", p, rule.Version)
		}
		switch {
		case rule.Weight != nil && len(rule.Matches) > 0:
			return fmt.Errorf("%s: a rule has either matches or a weight, not both", p)
		case rule.Weight == nil && len(rule.Matches) == 0:
			return fmt.Errorf("%s: a rule needs matches (rule-based) or a weight (weighted)", p)
		case rule.Weight != nil:
			if w := *rule.Weight; w < 0 || w > 100 {
				return fmt.Errorf("%s.weight: %d is out of range 0..100", p, w)
			}
			if weighted[rule.Version] {
				return fmt.Errorf("%s.version: %q has a weight in an earlier rule already", p, rule.Version)
			}
			weighted[rule.Version] = true
		default:
			for j, m := range rule.Matches {
				if err := validateMatch(fmt.Sprintf("%s.matches[%d]", p, j), m); err != nil {
					return err
				}
			}
		}
	}
	if err := validateWeights(s.Rules); err != nil {
		return err
	}
	if err := validateTimeout("spec.timeout", s.Timeout); err != nil {
		return err
	}
	if s.Retries != nil {
		return validateRetries("spec.retries", s.Retries, s.TimeoutDuration())
	}
	return nil
}

// Retry conditions, as Envoy spells them in retry_on.
const (
	// RetryOn5xx: any 5xx answer, and a try that got no answer (connect
	// failure, reset, per-try timeout).
	RetryOn5xx = "5xx"
	// RetryOnGatewayError: 502, 503 or 504, and a try that got no answer.
	RetryOnGatewayError = "gateway-error"
	// RetryOnReset: the instance reset or closed the exchange before its
	// answer's head, or the per-try timeout passed.
	RetryOnReset = "reset"
	// RetryOnConnectFailure: connecting to the instance failed.
	RetryOnConnectFailure = "connect-failure"
	// RetryOnStatusCodes: an answer whose status is in statusCodes.
	RetryOnStatusCodes = "retriable-status-codes"
)

// RetryConditions are the valid values of retries.on, in the order the
// translator writes them.
var RetryConditions = []string{RetryOn5xx, RetryOnGatewayError, RetryOnReset, RetryOnConnectFailure, RetryOnStatusCodes}

// DefaultRetryOn is what a Route's retries are made on when on is left
// out: a try that got no answer, and 502, 503 and 504 (gateway-error
// alone covers the other two; they are listed as Envoy users write them).
var DefaultRetryOn = []string{RetryOnGatewayError, RetryOnReset, RetryOnConnectFailure}

// Bounds and defaults of a Route's retries.
const (
	MinRetryAttempts   = 1
	MaxRetryAttempts   = 10
	DefaultBackoffBase = 25 * time.Millisecond
	MinBackoffBase     = time.Millisecond
	MaxBackoffBase     = 10 * time.Second
	// MaxBackoffMax bounds backoff.max: ten times the largest base.
	MaxBackoffMax = 10 * MaxBackoffBase
	// backoffMaxFactor: backoff.max defaults to this many times the base.
	backoffMaxFactor = 10
)

func validateRetries(p string, r *Retries, routeTimeout time.Duration) error {
	if r.Attempts == nil {
		return fmt.Errorf("%s.attempts: required (retries after the first try, %d..%d)", p, MinRetryAttempts, MaxRetryAttempts)
	}
	if n := *r.Attempts; n < MinRetryAttempts || n > MaxRetryAttempts {
		return fmt.Errorf("%s.attempts: %d is out of range %d..%d", p, n, MinRetryAttempts, MaxRetryAttempts)
	}
	if r.PerTryTimeout != "" {
		if err := validateTimeout(p+".perTryTimeout", r.PerTryTimeout); err != nil {
			return err
		}
		if d := r.PerTryTimeoutDuration(); routeTimeout > 0 && d >= routeTimeout {
			return fmt.Errorf("%s.perTryTimeout: %s must be less than spec.timeout %s", p, r.PerTryTimeout, routeTimeout)
		}
	}
	if r.On != nil && len(r.On) == 0 {
		return fmt.Errorf("%s.on: empty; leave it out for the default (%s)", p, strings.Join(DefaultRetryOn, ", "))
	}
	for i, on := range r.On {
		if !slices.Contains(RetryConditions, on) {
			return fmt.Errorf("%s.on[%d]: %q is not one of %s", p, i, on, strings.Join(RetryConditions, ", "))
		}
		if on == RetryOnStatusCodes && len(r.StatusCodes) == 0 {
			return fmt.Errorf("%s.on[%d]: %s needs statusCodes", p, i, on)
		}
	}
	for i, c := range r.StatusCodes {
		if c < 100 || c > 599 {
			return fmt.Errorf("%s.statusCodes[%d]: %d is out of range 100..599", p, i, c)
		}
	}
	if b := r.Backoff; b != nil {
		parse := func(name, v string, least, most time.Duration) error {
			if v == "" {
				return nil
			}
			d, err := time.ParseDuration(v)
			if err != nil {
				return fmt.Errorf("%s.backoff.%s: %q is not a duration (like 25ms or 1s)", p, name, v)
			}
			if d < least || d > most || d%time.Millisecond != 0 {
				return fmt.Errorf("%s.backoff.%s: %s must be whole milliseconds, from %s to %s", p, name, v, least, most)
			}
			return nil
		}
		if err := parse("base", b.Base, MinBackoffBase, MaxBackoffBase); err != nil {
			return err
		}
		if err := parse("max", b.Max, MinBackoffBase, MaxBackoffMax); err != nil {
			return err
		}
		if base, most := r.BackoffValues(); most < base {
			if b.Base == "" {
				return fmt.Errorf("%s.backoff.max: %s must be at least the default base %s", p, b.Max, base)
			}
			return fmt.Errorf("%s.backoff.max: %s must be at least base %s", p, b.Max, b.Base)
		}
	}
	return nil
}

// PerTryTimeoutDuration is PerTryTimeout parsed; 0 when empty or invalid
// (Validate refuses an invalid one).
func (r *Retries) PerTryTimeoutDuration() time.Duration {
	d, err := time.ParseDuration(r.PerTryTimeout)
	if err != nil {
		return 0
	}
	return d
}

// Conditions returns what the retries are made on: On, or DefaultRetryOn
// when it is empty, with RetryOnStatusCodes added when StatusCodes is set,
// without repeats and in the order of RetryConditions.
func (r *Retries) Conditions() []string {
	on := r.On
	if len(on) == 0 {
		on = DefaultRetryOn
	}
	var out []string
	for _, c := range RetryConditions {
		if slices.Contains(on, c) || c == RetryOnStatusCodes && len(r.StatusCodes) > 0 {
			out = append(out, c)
		}
	}
	return out
}

// Codes returns StatusCodes sorted and without repeats (nil when none).
func (r *Retries) Codes() []int {
	if len(r.StatusCodes) == 0 {
		return nil
	}
	return slices.Compact(slices.Sorted(slices.Values(r.StatusCodes)))
}

// BackoffValues returns the backoff's base and maximum with the defaults
// filled in: base 25ms, maximum 10 times the base.
func (r *Retries) BackoffValues() (base, most time.Duration) {
	base = DefaultBackoffBase
	if r.Backoff != nil {
		if d, err := time.ParseDuration(r.Backoff.Base); err == nil && d > 0 {
			base = d
		}
		if d, err := time.ParseDuration(r.Backoff.Max); err == nil && d > 0 {
			return base, d
		}
	}
	return base, backoffMaxFactor * base
}

// Bounds of a Route's timeout.
const (
	MinRouteTimeout = time.Millisecond
	MaxRouteTimeout = time.Hour
)

func validateTimeout(p, s string) error {
	if s == "" {
		return nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%s: %q is not a duration (like 2s or 150ms)", p, s)
	}
	if d < MinRouteTimeout || d > MaxRouteTimeout || d%time.Millisecond != 0 {
		return fmt.Errorf("%s: %s must be whole milliseconds, from %s to %s", p, s, MinRouteTimeout, MaxRouteTimeout)
	}
	return nil
}

func validateMatch(p string, m RouteMatch) error {
	if m.Path == nil && len(m.Headers) == 0 && len(m.QueryParams) == 0 {
		return fmt.Errorf("%s: a match needs at least one of path, headers, queryParams", p)
	}
	if m.Path != nil {
		if m.Path.Present {
			return fmt.Errorf("%s.path: present is not meaningful for a path; use exact, prefix or regex", p)
		}
		if err := validateStringMatch(p+".path", *m.Path); err != nil {
			return err
		}
		if v := m.Path.Exact + m.Path.Prefix; v != "" && !strings.HasPrefix(v, "/") {
			return fmt.Errorf("%s.path: %q must start with /", p, v)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(m.Headers)) {
		hp := fmt.Sprintf("%s.headers.%s", p, name)
		if !validHeaderName(name) {
			return fmt.Errorf("%s: %q is not a valid header name", hp, name)
		}
		if err := validateStringMatch(hp, m.Headers[name]); err != nil {
			return err
		}
	}
	for _, name := range slices.Sorted(maps.Keys(m.QueryParams)) {
		qp := fmt.Sprintf("%s.queryParams.%s", p, name)
		if name == "" {
			return fmt.Errorf("%s: a query parameter name is required", qp)
		}
		if err := validateStringMatch(qp, m.QueryParams[name]); err != nil {
			return err
		}
	}
	return nil
}

func validateStringMatch(p string, sm StringMatch) error {
	set := 0
	for _, on := range []bool{sm.Exact != "", sm.Prefix != "", sm.Regex != "", sm.Present} {
		if on {
			set++
		}
	}
	if set != 1 {
		return fmt.Errorf("%s: set exactly one of exact, prefix, regex, present (got %d)", p, set)
	}
	if sm.Regex != "" {
		if _, err := regexp.Compile(sm.Regex); err != nil {
			return fmt.Errorf("%s.regex: %q is not a valid RE2 expression: %s", p, sm.Regex, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
		}
	}
	return nil
}

// validHeaderName accepts RFC 9110 token characters, lower or upper case.
func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("!#$%&'*+-.^_`|~", c)) {
			return false
		}
	}
	return true
}

// validateWeights checks that the weighted rules add up to 100: over all
// versions when versions are opaque labels, per major version when every
// version is written MAJOR.MINOR.
func validateWeights(rules []RouteRule) error {
	if !AllMajorMinor(rules) {
		for i, r := range rules {
			if majorMinor.MatchString(r.Version) {
				return fmt.Errorf("spec.rules[%d].version: %q is MAJOR.MINOR but other versions are not; use one style in a Route", i, r.Version)
			}
		}
	}
	groups := map[string][]RouteRule{} // group key → weighted rules
	var order []string
	for _, r := range rules {
		if r.Weight == nil {
			continue
		}
		key := ""
		if AllMajorMinor(rules) {
			key, _ = MajorOf(r.Version)
		}
		if _, ok := groups[key]; !ok {
			order = append(order, key)
		}
		groups[key] = append(groups[key], r)
	}
	for _, key := range order {
		sum := 0
		var names []string
		for _, r := range groups[key] {
			sum += *r.Weight
			names = append(names, r.Version)
		}
		if sum != 100 {
			group := ""
			if key != "" {
				group = fmt.Sprintf(" (major version %s)", key)
			}
			return fmt.Errorf("spec.rules: weights of %s add up to %d, must be 100%s", strings.Join(names, ", "), sum, group)
		}
	}
	return nil
}

// AllMajorMinor reports whether every version in the rules is written
// MAJOR.MINOR, which turns on per-major weight groups and context paths.
func AllMajorMinor(rules []RouteRule) bool {
	for _, r := range rules {
		if !majorMinor.MatchString(r.Version) {
			return false
		}
	}
	return len(rules) > 0
}

// MajorOf returns the MAJOR of a MAJOR.MINOR version, without leading zeros.
func MajorOf(version string) (string, bool) {
	m := majorMinor.FindStringSubmatch(version)
	if m == nil {
		return "", false
	}
	n, err := strconv.Atoi(m[1])
	if err != nil {
		return "", false
	}
	return strconv.Itoa(n), true
}

// Bounds of the load balancer's parameters.
const (
	MinChoiceCount     = 2
	MaxChoiceCount     = 10
	DefaultChoiceCount = 2
	MinRingSize        = 64
	MaxRingSize        = 65536
	DefaultRingSize    = 1024
	// maxHashNameLen bounds a hash header's or cookie's name.
	maxHashNameLen = 256
	// MaxCookieTTL bounds a hash cookie's lifetime (a year).
	MaxCookieTTL = 365 * 24 * time.Hour
)

func validateTrafficPolicy(p *TrafficPolicy) error {
	if p.Kind != KindTrafficPolicy {
		return fmt.Errorf("kind: must be %q, got %q", KindTrafficPolicy, p.Kind)
	}
	if err := validateMeta(p.Kind, p.APIVersion, p.Metadata); err != nil {
		return err
	}
	s := p.Spec
	if err := validateName("spec.service", s.Service); err != nil {
		return err
	}
	if s.Version != "" && (!versionLabel.MatchString(s.Version) || len(s.Version) > 63) {
		return fmt.Errorf("spec.version: %q must be letters, digits, '-', '_' and '.', at most 63 characters", s.Version)
	}
	if s.LoadBalancer == nil && s.OutlierDetection == nil && s.ConnectionPool == nil && s.HealthCheck == nil {
		return errors.New("spec: set at least one of loadBalancer, outlierDetection, connectionPool, healthCheck")
	}
	if s.LoadBalancer != nil {
		if err := validateLoadBalancer("spec.loadBalancer", s.LoadBalancer); err != nil {
			return err
		}
	}
	if s.OutlierDetection != nil {
		if err := validateOutlierDetection("spec.outlierDetection", s.OutlierDetection); err != nil {
			return err
		}
	}
	if s.ConnectionPool != nil {
		if err := validateConnectionPool("spec.connectionPool", s.ConnectionPool); err != nil {
			return err
		}
	}
	if s.HealthCheck != nil {
		return validateHealthCheck("spec.healthCheck", s.HealthCheck)
	}
	return nil
}

// Health check defaults and bounds.
const (
	DefaultHealthInterval     = 10 * time.Second
	DefaultHealthTimeout      = time.Second
	DefaultUnhealthyThreshold = 3
	DefaultHealthyThreshold   = 2
	MinHealthInterval         = 100 * time.Millisecond
	MaxHealthInterval         = time.Hour
	MaxHealthThreshold        = 1000
	maxHealthPathLen          = 1024
	maxHealthServiceLen       = 256
)

// grpcServiceName is what a gRPC health check's service may look like
// ("", "grpc.health.v1.Health", "trellis.sample.Echo").
var grpcServiceName = regexp.MustCompile(`^[A-Za-z0-9_.\-/]*$`)

func validateHealthCheck(p string, hc *HealthCheck) error {
	set := 0
	for _, on := range []bool{hc.HTTP != nil, hc.GRPC != nil, hc.TCP != nil} {
		if on {
			set++
		}
	}
	if set != 1 {
		return fmt.Errorf("%s: set exactly one of http, grpc, tcp (got %d)", p, set)
	}
	if h := hc.HTTP; h != nil {
		switch {
		case h.Path == "":
			return fmt.Errorf("%s.http.path: required", p)
		case !strings.HasPrefix(h.Path, "/"):
			return fmt.Errorf("%s.http.path: %q must start with /", p, h.Path)
		case len(h.Path) > maxHealthPathLen:
			return fmt.Errorf("%s.http.path: longer than %d characters", p, maxHealthPathLen)
		case strings.ContainsFunc(h.Path, func(r rune) bool { return r <= ' ' || r == 0x7f || r == '#' }):
			return fmt.Errorf("%s.http.path: %q must not contain spaces, control characters or #", p, h.Path)
		}
		for i, st := range h.ExpectedStatuses {
			if st < 100 || st > 599 {
				return fmt.Errorf("%s.http.expectedStatuses[%d]: %d is out of range 100..599", p, i, st)
			}
		}
	}
	if g := hc.GRPC; g != nil && (len(g.Service) > maxHealthServiceLen || !grpcServiceName.MatchString(g.Service)) {
		return fmt.Errorf("%s.grpc.service: %q must be letters, digits, '.', '_', '-' and '/', at most %d characters", p, g.Service, maxHealthServiceLen)
	}
	for _, f := range []struct {
		name string
		v    *int
	}{{"unhealthyThreshold", hc.UnhealthyThreshold}, {"healthyThreshold", hc.HealthyThreshold}} {
		if f.v != nil && (*f.v < 1 || *f.v > MaxHealthThreshold) {
			return fmt.Errorf("%s.%s: %d is out of range 1..%d", p, f.name, *f.v, MaxHealthThreshold)
		}
	}
	parse := func(name, v string, least time.Duration) error {
		if v == "" {
			return nil
		}
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("%s.%s: %q is not a duration (like 1s or 10s)", p, name, v)
		}
		if d < least || d > MaxHealthInterval || d%time.Millisecond != 0 {
			return fmt.Errorf("%s.%s: %s must be whole milliseconds, at least %s and at most %s", p, name, v, least, MaxHealthInterval)
		}
		return nil
	}
	if err := parse("interval", hc.Interval, MinHealthInterval); err != nil {
		return err
	}
	if err := parse("timeout", hc.Timeout, time.Millisecond); err != nil {
		return err
	}
	interval, timeout, _, _ := hc.Values()
	if timeout >= interval {
		if hc.Timeout == "" {
			return fmt.Errorf("%s.timeout: the default %s must be less than interval %s: set a shorter timeout", p, timeout, interval)
		}
		return fmt.Errorf("%s.timeout: %s must be less than interval %s", p, timeout, interval)
	}
	return nil
}

// Values returns hc's timing and thresholds with the defaults filled in.
func (hc *HealthCheck) Values() (interval, timeout time.Duration, unhealthy, healthy int) {
	interval, timeout = DefaultHealthInterval, DefaultHealthTimeout
	unhealthy, healthy = DefaultUnhealthyThreshold, DefaultHealthyThreshold
	if d, err := time.ParseDuration(hc.Interval); err == nil && d > 0 {
		interval = d
	}
	if d, err := time.ParseDuration(hc.Timeout); err == nil && d > 0 {
		timeout = d
	}
	if hc.UnhealthyThreshold != nil {
		unhealthy = *hc.UnhealthyThreshold
	}
	if hc.HealthyThreshold != nil {
		healthy = *hc.HealthyThreshold
	}
	return
}

// Statuses returns the HTTP statuses a health check accepts, sorted
// and without repeats; nil means the default, 200..299.
func (h *HTTPHealthCheck) Statuses() []int {
	if len(h.ExpectedStatuses) == 0 {
		return nil
	}
	return slices.Compact(slices.Sorted(slices.Values(h.ExpectedStatuses)))
}

// MaxMaxRequests bounds connectionPool.maxRequests.
const MaxMaxRequests = 1_000_000

// Retry budget defaults (Envoy's) and bounds.
const (
	DefaultRetryBudgetPercent        = 20
	DefaultRetryBudgetMinConcurrency = 3
	MaxRetryBudgetMinConcurrency     = 10_000
)

func validateConnectionPool(p string, cp *ConnectionPool) error {
	if cp.MaxRequests == nil && cp.RetryBudget == nil {
		return fmt.Errorf("%s: set maxRequests, retryBudget or both", p)
	}
	if cp.MaxRequests != nil {
		if n := *cp.MaxRequests; n < 1 || n > MaxMaxRequests {
			return fmt.Errorf("%s.maxRequests: %d is out of range 1..%d", p, n, MaxMaxRequests)
		}
	}
	if rb := cp.RetryBudget; rb != nil {
		if n := rb.Percent; n != nil && (*n < 0 || *n > 100) {
			return fmt.Errorf("%s.retryBudget.percent: %d is out of range 0..100", p, *n)
		}
		if n := rb.MinConcurrency; n != nil && (*n < 0 || *n > MaxRetryBudgetMinConcurrency) {
			return fmt.Errorf("%s.retryBudget.minConcurrency: %d is out of range 0..%d", p, *n, MaxRetryBudgetMinConcurrency)
		}
	}
	return nil
}

// Values returns rb's fields with the defaults filled in.
func (rb *RetryBudget) Values() (percent, minConcurrency int) {
	percent, minConcurrency = DefaultRetryBudgetPercent, DefaultRetryBudgetMinConcurrency
	if rb.Percent != nil {
		percent = *rb.Percent
	}
	if rb.MinConcurrency != nil {
		minConcurrency = *rb.MinConcurrency
	}
	return
}

// Outlier detection defaults (Envoy's) and bounds.
const (
	DefaultConsecutive5xx           = 5
	DefaultConsecutiveGatewayErrors = 5
	DefaultOutlierInterval          = 10 * time.Second
	DefaultBaseEjectionTime         = 30 * time.Second
	DefaultMaxEjectionPercent       = 10
	// MaxConsecutiveErrors bounds both consecutive counts.
	MaxConsecutiveErrors = 1000
	// MaxOutlierDuration bounds interval and baseEjectionTime.
	MaxOutlierDuration = time.Hour
)

func validateOutlierDetection(p string, od *OutlierDetection) error {
	for _, f := range []struct {
		name string
		v    *int
	}{{"consecutive5xx", od.Consecutive5xx}, {"consecutiveGatewayErrors", od.ConsecutiveGatewayErrors}} {
		if f.v != nil && (*f.v < 1 || *f.v > MaxConsecutiveErrors) {
			return fmt.Errorf("%s.%s: %d is out of range 1..%d", p, f.name, *f.v, MaxConsecutiveErrors)
		}
	}
	for _, f := range []struct{ name, v string }{{"interval", od.Interval}, {"baseEjectionTime", od.BaseEjectionTime}} {
		if f.v == "" {
			continue
		}
		d, err := time.ParseDuration(f.v)
		if err != nil {
			return fmt.Errorf("%s.%s: %q is not a duration (like 10s or 1m)", p, f.name, f.v)
		}
		if d < time.Millisecond || d > MaxOutlierDuration || d%time.Millisecond != 0 {
			return fmt.Errorf("%s.%s: %s must be whole milliseconds, at least 1ms and at most %s", p, f.name, f.v, MaxOutlierDuration)
		}
	}
	if n := od.MaxEjectionPercent; n != nil && (*n < 0 || *n > 100) {
		return fmt.Errorf("%s.maxEjectionPercent: %d is out of range 0..100", p, *n)
	}
	return nil
}

// Values returns od's fields with the defaults filled in.
func (od *OutlierDetection) Values() (consecutive5xx, consecutiveGateway int, interval, baseEjection time.Duration, maxPercent int) {
	consecutive5xx, consecutiveGateway = DefaultConsecutive5xx, DefaultConsecutiveGatewayErrors
	interval, baseEjection, maxPercent = DefaultOutlierInterval, DefaultBaseEjectionTime, DefaultMaxEjectionPercent
	if od.Consecutive5xx != nil {
		consecutive5xx = *od.Consecutive5xx
	}
	if od.ConsecutiveGatewayErrors != nil {
		consecutiveGateway = *od.ConsecutiveGatewayErrors
	}
	if d, err := time.ParseDuration(od.Interval); err == nil && d > 0 {
		interval = d
	}
	if d, err := time.ParseDuration(od.BaseEjectionTime); err == nil && d > 0 {
		baseEjection = d
	}
	if od.MaxEjectionPercent != nil {
		maxPercent = *od.MaxEjectionPercent
	}
	return
}

func validateLoadBalancer(p string, lb *LoadBalancer) error {
	set := 0
	for _, on := range []bool{lb.RoundRobin != nil, lb.LeastRequest != nil, lb.Random != nil, lb.ConsistentHash != nil} {
		if on {
			set++
		}
	}
	if set != 1 {
		return fmt.Errorf("%s: set exactly one of roundRobin, leastRequest, random, consistentHash (got %d)", p, set)
	}
	if lr := lb.LeastRequest; lr != nil && lr.ChoiceCount != nil {
		if n := *lr.ChoiceCount; n < MinChoiceCount || n > MaxChoiceCount {
			return fmt.Errorf("%s.leastRequest.choiceCount: %d is out of range %d..%d", p, n, MinChoiceCount, MaxChoiceCount)
		}
	}
	if ch := lb.ConsistentHash; ch != nil {
		return validateConsistentHash(p+".consistentHash", ch)
	}
	return nil
}

func validateConsistentHash(p string, ch *ConsistentHashLB) error {
	set := 0
	for _, on := range []bool{ch.Header != "", ch.Cookie != nil, ch.SourceIP} {
		if on {
			set++
		}
	}
	if set != 1 {
		return fmt.Errorf("%s: set exactly one of header, cookie, sourceIP (got %d)", p, set)
	}
	if ch.Header != "" && (!validHeaderName(ch.Header) || len(ch.Header) > maxHashNameLen) {
		return fmt.Errorf("%s.header: %q is not a valid header name (at most %d characters)", p, ch.Header, maxHashNameLen)
	}
	if c := ch.Cookie; c != nil {
		if c.Name == "" {
			return fmt.Errorf("%s.cookie.name: required", p)
		}
		if !validHeaderName(c.Name) || len(c.Name) > maxHashNameLen { // a cookie name is an RFC 6265 token
			return fmt.Errorf("%s.cookie.name: %q is not a valid cookie name (at most %d characters)", p, c.Name, maxHashNameLen)
		}
		if c.TTL != "" {
			d, err := time.ParseDuration(c.TTL)
			if err != nil {
				return fmt.Errorf("%s.cookie.ttl: %q is not a duration (like 30m or 1h)", p, c.TTL)
			}
			if d <= 0 || d > MaxCookieTTL || d%time.Second != 0 {
				return fmt.Errorf("%s.cookie.ttl: %s must be whole seconds, more than 0 and at most %s", p, c.TTL, MaxCookieTTL)
			}
		}
	}
	if n := ch.MinimumRingSize; n != nil && (*n < MinRingSize || *n > MaxRingSize) {
		return fmt.Errorf("%s.minimumRingSize: %d is out of range %d..%d", p, *n, MinRingSize, MaxRingSize)
	}
	return nil
}
