package api

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

// retryRoute is a Route of reviews with spec lines (two-space indented)
// before its one weighted rule.
func retryRoute(spec string) string {
	return "apiVersion: trellis.dev/v1alpha1\nkind: Route\nmetadata: {name: reviews}\nspec:\n  service: reviews\n" +
		spec + "  rules:\n  - {version: v1, weight: 100}\n"
}

func decodeRetries(t *testing.T, spec string) *Retries {
	t.Helper()
	rs, err := Decode([]byte(retryRoute(spec)))
	if err != nil {
		t.Fatal(err)
	}
	return rs[0].(*Route).Spec.Retries
}

func TestRetriesValid(t *testing.T) {
	for name, spec := range map[string]string{
		"attempts only":     "  retries: {attempts: 2}\n",
		"attempts bounds":   "  retries: {attempts: 10}\n",
		"every field":       "  timeout: 2s\n  retries:\n    attempts: 2\n    perTryTimeout: 500ms\n    on: [5xx, gateway-error, reset, connect-failure, retriable-status-codes]\n    statusCodes: [409, 429]\n    backoff: {base: 25ms, max: 250ms}\n",
		"per try bounds":    "  retries: {attempts: 1, perTryTimeout: 1h}\n",
		"per try just less": "  timeout: 2s\n  retries: {attempts: 1, perTryTimeout: 1999ms}\n",
		"codes without on":  "  retries: {attempts: 1, statusCodes: [409]}\n",
		"codes only":        "  retries: {attempts: 1, on: [retriable-status-codes], statusCodes: [100, 599]}\n",
		"repeats":           "  retries: {attempts: 1, on: [reset, reset], statusCodes: [503, 503]}\n",
		"backoff empty":     "  retries: {attempts: 1, backoff: {}}\n",
		"backoff base":      "  retries: {attempts: 1, backoff: {base: 10s}}\n",
		"backoff max":       "  retries: {attempts: 1, backoff: {max: 25ms}}\n",
		"backoff equal":     "  retries: {attempts: 1, backoff: {base: 1ms, max: 1ms}}\n",
		"backoff max bound": "  retries: {attempts: 1, backoff: {base: 10s, max: 100s}}\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := Decode([]byte(retryRoute(spec))); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRetriesErrors(t *testing.T) {
	tests := []struct{ name, spec, want string }{
		{"no attempts", "  retries: {}\n", "spec.retries.attempts: required (retries after the first try, 1..10)"},
		{"null retries attempts", "  retries: {on: [5xx]}\n", "spec.retries.attempts: required"},
		{"zero attempts", "  retries: {attempts: 0}\n", "spec.retries.attempts: 0 is out of range 1..10"},
		{"many attempts", "  retries: {attempts: 11}\n", "spec.retries.attempts: 11 is out of range 1..10"},
		{"attempts type", "  retries: {attempts: \"2\"}\n", "spec.retries.attempts: must be an integer, got a string"},
		{"retries type", "  retries: 2\n", "spec.retries: must be a mapping, got a number"},
		{"unknown field", "  retries: {attempts: 1, retryOn: [5xx]}\n", "spec.retries.retryOn: unknown field (known: attempts, backoff, on, perTryTimeout, statusCodes)"},
		{"per try not a duration", "  retries: {attempts: 1, perTryTimeout: soon}\n", `spec.retries.perTryTimeout: "soon" is not a duration (like 2s or 150ms)`},
		{"per try zero", "  retries: {attempts: 1, perTryTimeout: 0s}\n", "spec.retries.perTryTimeout: 0s must be whole milliseconds, from 1ms to 1h0m0s"},
		{"per try fraction", "  retries: {attempts: 1, perTryTimeout: 1500us}\n", "spec.retries.perTryTimeout: 1500us must be whole milliseconds"},
		{"per try long", "  retries: {attempts: 1, perTryTimeout: 2h}\n", "spec.retries.perTryTimeout: 2h must be whole milliseconds"},
		{"per try equal", "  timeout: 2s\n  retries: {attempts: 1, perTryTimeout: 2s}\n", "spec.retries.perTryTimeout: 2s must be less than spec.timeout 2s"},
		{"per try over", "  timeout: 500ms\n  retries: {attempts: 1, perTryTimeout: 1s}\n", "spec.retries.perTryTimeout: 1s must be less than spec.timeout 500ms"},
		{"on empty", "  retries: {attempts: 1, on: []}\n", "spec.retries.on: empty; leave it out for the default (gateway-error, reset, connect-failure)"},
		{"on unknown", "  retries: {attempts: 1, on: [5xx, reset, foo]}\n", `spec.retries.on[2]: "foo" is not one of 5xx, gateway-error, reset, connect-failure, retriable-status-codes`},
		{"on envoy only", "  retries: {attempts: 1, on: [refused-stream]}\n", `spec.retries.on[0]: "refused-stream" is not one of`},
		{"on case", "  retries: {attempts: 1, on: [5XX]}\n", `spec.retries.on[0]: "5XX" is not one of`},
		{"on not a list", "  retries: {attempts: 1, on: 5xx}\n", "spec.retries.on: must be a list, got a string"},
		{"on number", "  retries: {attempts: 1, on: [503]}\n", "spec.retries.on[0]: must be a string, got a number"},
		{"codes condition alone", "  retries: {attempts: 1, on: [reset, retriable-status-codes]}\n", "spec.retries.on[1]: retriable-status-codes needs statusCodes"},
		{"code low", "  retries: {attempts: 1, statusCodes: [409, 99]}\n", "spec.retries.statusCodes[1]: 99 is out of range 100..599"},
		{"code high", "  retries: {attempts: 1, statusCodes: [600]}\n", "spec.retries.statusCodes[0]: 600 is out of range 100..599"},
		{"code type", "  retries: {attempts: 1, statusCodes: [\"5xx\"]}\n", "spec.retries.statusCodes[0]: must be an integer, got a string"},
		{"base not a duration", "  retries: {attempts: 1, backoff: {base: fast}}\n", `spec.retries.backoff.base: "fast" is not a duration (like 25ms or 1s)`},
		{"base zero", "  retries: {attempts: 1, backoff: {base: 0s}}\n", "spec.retries.backoff.base: 0s must be whole milliseconds, from 1ms to 10s"},
		{"base long", "  retries: {attempts: 1, backoff: {base: 11s}}\n", "spec.retries.backoff.base: 11s must be whole milliseconds, from 1ms to 10s"},
		{"base fraction", "  retries: {attempts: 1, backoff: {base: 1500us}}\n", "spec.retries.backoff.base: 1500us must be whole milliseconds"},
		{"max long", "  retries: {attempts: 1, backoff: {base: 1s, max: 101s}}\n", "spec.retries.backoff.max: 101s must be whole milliseconds, from 1ms to 1m40s"},
		{"max below base", "  retries: {attempts: 1, backoff: {base: 100ms, max: 50ms}}\n", "spec.retries.backoff.max: 50ms must be at least base 100ms"},
		{"max below default base", "  retries: {attempts: 1, backoff: {max: 10ms}}\n", "spec.retries.backoff.max: 10ms must be at least the default base 25ms"},
		{"backoff unknown", "  retries: {attempts: 1, backoff: {base: 1ms, jitter: 1ms}}\n", "spec.retries.backoff.jitter: unknown field (known: base, max)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(retryRoute(tt.spec)))
			if err == nil {
				t.Fatalf("accepted, want %q", tt.want)
			}
			if !strings.HasPrefix(err.Error(), `document 1 (Route "reviews"): `) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want it to name the document and contain %q", err, tt.want)
			}
		})
	}
}

func TestRetriesValues(t *testing.T) {
	tests := []struct {
		name      string
		spec      string
		on        []string
		codes     []int
		perTry    time.Duration
		base, max time.Duration
	}{
		{"defaults", "  retries: {attempts: 2}\n",
			[]string{"gateway-error", "reset", "connect-failure"}, nil, 0, 25 * time.Millisecond, 250 * time.Millisecond},
		{"codes add their condition to the default", "  retries: {attempts: 2, statusCodes: [503, 409, 409]}\n",
			[]string{"gateway-error", "reset", "connect-failure", "retriable-status-codes"}, []int{409, 503}, 0, 25 * time.Millisecond, 250 * time.Millisecond},
		{"codes add their condition to on", "  retries: {attempts: 2, on: [5xx], statusCodes: [409]}\n",
			[]string{"5xx", "retriable-status-codes"}, []int{409}, 0, 25 * time.Millisecond, 250 * time.Millisecond},
		{"canonical order, no repeats", "  retries: {attempts: 2, on: [connect-failure, 5xx, connect-failure]}\n",
			[]string{"5xx", "connect-failure"}, nil, 0, 25 * time.Millisecond, 250 * time.Millisecond},
		{"base alone: max is 10 times", "  retries: {attempts: 2, perTryTimeout: 300ms, backoff: {base: 100ms}}\n",
			[]string{"gateway-error", "reset", "connect-failure"}, nil, 300 * time.Millisecond, 100 * time.Millisecond, time.Second},
		{"max alone", "  retries: {attempts: 2, backoff: {max: 1s}}\n",
			[]string{"gateway-error", "reset", "connect-failure"}, nil, 0, 25 * time.Millisecond, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := decodeRetries(t, tt.spec)
			if got := r.Conditions(); !slices.Equal(got, tt.on) {
				t.Errorf("conditions %v, want %v", got, tt.on)
			}
			if got := r.Codes(); !slices.Equal(got, tt.codes) {
				t.Errorf("codes %v, want %v", got, tt.codes)
			}
			if got := r.PerTryTimeoutDuration(); got != tt.perTry {
				t.Errorf("per try timeout %s, want %s", got, tt.perTry)
			}
			if base, most := r.BackoffValues(); base != tt.base || most != tt.max {
				t.Errorf("backoff %s..%s, want %s..%s", base, most, tt.base, tt.max)
			}
		})
	}
}

// A Route's retries survive the store's JSON round trip as written.
func TestRetriesStoredForm(t *testing.T) {
	rs, err := Decode([]byte(retryRoute("  retries: {attempts: 3, on: [5xx], statusCodes: [409], perTryTimeout: 1s, backoff: {base: 10ms}}\n")))
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(rs[0])
	if err != nil {
		t.Fatal(err)
	}
	if want := `"retries":{"attempts":3,"perTryTimeout":"1s","on":["5xx"],"statusCodes":[409],"backoff":{"base":"10ms"}}`; !strings.Contains(string(b), want) {
		t.Fatalf("stored %s, want it to contain %s", b, want)
	}
	back, err := DecodeJSON(KindRoute, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(back); err != nil {
		t.Fatal(err)
	}
	if got := back.(*Route).Spec.Retries; *got.Attempts != 3 || got.PerTryTimeout != "1s" || got.Backoff.Base != "10ms" {
		t.Fatalf("read back %+v", got)
	}
	// Without retries nothing is stored for them.
	rs, _ = Decode([]byte(retryRoute("")))
	if b, _ := json.Marshal(rs[0]); strings.Contains(string(b), "retries") {
		t.Fatalf("stored %s", b)
	}
}

func TestRetryBudgetValid(t *testing.T) {
	for name, spec := range map[string]string{
		"budget only":       "  service: reviews\n  connectionPool: {retryBudget: {}}\n",
		"budget and limit":  "  service: reviews\n  connectionPool: {maxRequests: 100, retryBudget: {percent: 20, minConcurrency: 3}}\n",
		"budget none":       "  service: reviews\n  connectionPool: {retryBudget: {percent: 0, minConcurrency: 0}}\n",
		"budget maximum":    "  service: reviews\n  version: v2\n  connectionPool: {retryBudget: {percent: 100, minConcurrency: 10000}}\n",
		"budget percent":    "  service: reviews\n  connectionPool: {retryBudget: {percent: 50}}\n",
		"budget concurrent": "  service: reviews\n  connectionPool: {retryBudget: {minConcurrency: 10}}\n",
	} {
		if _, err := Decode([]byte(policy(spec))); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestRetryBudgetErrors(t *testing.T) {
	tests := []struct{ name, spec, want string }{
		{"pool empty", "  service: reviews\n  connectionPool: {}\n", "spec.connectionPool: set maxRequests, retryBudget or both"},
		{"percent high", "  service: reviews\n  connectionPool: {retryBudget: {percent: 101}}\n", "spec.connectionPool.retryBudget.percent: 101 is out of range 0..100"},
		{"percent negative", "  service: reviews\n  connectionPool: {retryBudget: {percent: -1}}\n", "spec.connectionPool.retryBudget.percent: -1 is out of range 0..100"},
		{"percent fraction", "  service: reviews\n  connectionPool: {retryBudget: {percent: 2.5}}\n", "spec.connectionPool.retryBudget.percent: must be an integer, got 2.5"},
		{"percent string", "  service: reviews\n  connectionPool: {retryBudget: {percent: \"20%\"}}\n", "spec.connectionPool.retryBudget.percent: must be an integer, got a string"},
		{"concurrency negative", "  service: reviews\n  connectionPool: {retryBudget: {minConcurrency: -1}}\n", "spec.connectionPool.retryBudget.minConcurrency: -1 is out of range 0..10000"},
		{"concurrency high", "  service: reviews\n  connectionPool: {retryBudget: {minConcurrency: 10001}}\n", "spec.connectionPool.retryBudget.minConcurrency: 10001 is out of range 0..10000"},
		{"unknown", "  service: reviews\n  connectionPool: {retryBudget: {interval: 1s}}\n", "spec.connectionPool.retryBudget.interval: unknown field (known: minConcurrency, percent)"},
		{"limit still checked", "  service: reviews\n  connectionPool: {maxRequests: 0, retryBudget: {}}\n", "spec.connectionPool.maxRequests: 0 is out of range 1..1000000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode([]byte(policy(tt.spec)))
			if err == nil {
				t.Fatalf("accepted, want %q", tt.want)
			}
			if !strings.HasPrefix(err.Error(), `document 1 (TrafficPolicy "reviews"): `) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q, want it to name the document and contain %q", err, tt.want)
			}
		})
	}
}

func TestRetryBudgetValues(t *testing.T) {
	for _, tt := range []struct {
		spec                 string
		percent, concurrency int
	}{
		{"{}", 20, 3},
		{"{percent: 0}", 0, 3},
		{"{minConcurrency: 0}", 20, 0},
		{"{percent: 50, minConcurrency: 10}", 50, 10},
	} {
		rs, err := Decode([]byte(policy("  service: reviews\n  connectionPool: {retryBudget: " + tt.spec + "}\n")))
		if err != nil {
			t.Fatal(err)
		}
		p, c := rs[0].(*TrafficPolicy).Spec.ConnectionPool.RetryBudget.Values()
		if p != tt.percent || c != tt.concurrency {
			t.Errorf("%s: %d %d, want %d %d", tt.spec, p, c, tt.percent, tt.concurrency)
		}
	}
}
