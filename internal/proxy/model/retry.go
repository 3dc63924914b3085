package model

import "time"

// RetryOn is the set of outcomes a route's retry policy sends again
// (Envoy's retry_on, the conditions the proxy implements).
type RetryOn uint8

const (
	// Retry5xx: any 5xx answer, and a try that got no answer at all
	// (connect failure, reset, per-try timeout). Envoy's "5xx".
	Retry5xx RetryOn = 1 << iota
	// RetryGatewayError: 502, 503 or 504, and a try that got no answer.
	// Envoy's "gateway-error".
	RetryGatewayError
	// RetryReset: the instance reset or closed the exchange before its
	// answer's head, or the per-try timeout passed. Envoy's "reset".
	RetryReset
	// RetryConnectFailure: connecting failed on every fallback. Envoy's
	// "connect-failure".
	RetryConnectFailure
	// RetryStatusCodes: an answer whose status is in RetryPolicy.Codes.
	// Envoy's "retriable-status-codes".
	RetryStatusCodes
)

// RetryPolicy is a route's retry_policy: how often and on what a request
// is sent again, to another instance when there is one.
type RetryPolicy struct {
	On RetryOn `json:"on"`
	// NumRetries is how many retries after the first try (Envoy's
	// num_retries, default 1).
	NumRetries int `json:"numRetries"`
	// PerTryTimeout bounds each try until the answer's head arrives; 0
	// leaves only the route's timeout.
	PerTryTimeout time.Duration `json:"perTryTimeout,omitempty"`
	// Codes are the retriable status codes (with RetryStatusCodes).
	Codes []int `json:"codes,omitempty"`
	// BackoffBase and BackoffMax: the n-th retry waits a random time in
	// [0, min(BackoffBase·2^(n-1), BackoffMax)) (Envoy's retry_back_off;
	// defaults 25 ms and 10× the base).
	BackoffBase time.Duration `json:"backoffBase"`
	BackoffMax  time.Duration `json:"backoffMax"`
}

// Defaults of a retry policy (Envoy's).
const (
	DefaultNumRetries  = 1
	DefaultBackoffBase = 25 * time.Millisecond
)

// RetryBudget caps the retries in flight to a cluster from one proxy: at
// most Percent of the requests in flight to it, and at least
// MinConcurrency whatever the share (Envoy's circuit_breakers
// retry_budget). A retry over the budget is not made: the last answer
// passes through.
type RetryBudget struct {
	Percent        float64 `json:"percent"`
	MinConcurrency int     `json:"minConcurrency"`
}

// DefaultRetryBudget applies to a cluster that sets none: retries are
// never above 20 % of active requests (3 at least), so that retries cannot
// multiply the load on a failing service. (Envoy without a budget allows 3
// concurrent retries per cluster, max_retries.)
var DefaultRetryBudget = RetryBudget{Percent: 20, MinConcurrency: 3}
