package e2e

import (
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"trellis.dev/trellis/internal/testutil"
)

var (
	retriesMetric        = regexp.MustCompile(`trellis_proxy_retries_total\{cluster="reviews\|v1"\} (\d+)`)
	retryOverflowsMetric = regexp.MustCompile(`trellis_proxy_retry_budget_overflows_total\{cluster="reviews\|v1"\} (\d+)`)
)

// One of two reviews instances always answers 503: with retries on the
// Route, every request through the gateway is answered 200, the failing
// instance's answers being sent again to the other one.
func TestRetriesRecoverFromFailingInstance(t *testing.T) {
	t.Parallel()
	cp := startControl(t, "")
	apply(t, cp, `apiVersion: trellis.dev/v1alpha1
kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  retries: {attempts: 2}
  rules:
  - {version: v1, weight: 100}
`)
	good := startPod(t, cp.xds, "reviews", "v1")
	bad := startPodWith(t, cp.xds, "reviews", "v1", "--fail-status", "503")
	gw := startGateway(t, cp.xds)
	for _, p := range []*pod{good, bad} {
		testutil.Eventually(t, 20*time.Second, "gateway knows "+p.inbound, func() bool { return gatewayHasEndpoint(t, gw, p.inbound) })
	}
	testutil.Eventually(t, 20*time.Second, "gateway has the retry policy", func() bool {
		return strings.Contains(configDump(t, gw.admin), `"numRetries": 2`)
	})
	for i := range 50 {
		if code, addr := answer(t, gw); code != 200 {
			t.Fatalf("request %d: %d from %s, want 200 (retried on the healthy instance)", i, code, addr)
		}
	}
	// Round robin sent about half of the first tries to the failing one.
	if n := metricValue(t, gw, retriesMetric); n < 10 {
		t.Fatalf("%d retries counted for 50 requests half of which first met the failing instance", n)
	}
}

// Every instance fails: a burst of concurrent requests, each allowed 5
// retries, makes no retry storm. The retry budget (10 % of the requests
// in flight, no minimum) refuses most retries, and those requests get the
// instance's 503 as it came.
func TestRetryBudgetCapsRetryStorm(t *testing.T) {
	t.Parallel()
	cp := startControl(t, "")
	apply(t, cp, `apiVersion: trellis.dev/v1alpha1
kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  retries: {attempts: 5, backoff: {base: 200ms}}
  rules:
  - {version: v1, weight: 100}
---
apiVersion: trellis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: reviews}
spec:
  service: reviews
  connectionPool: {retryBudget: {percent: 10, minConcurrency: 0}}
`)
	bad1 := startPodWith(t, cp.xds, "reviews", "v1", "--fail-status", "503")
	bad2 := startPodWith(t, cp.xds, "reviews", "v1", "--fail-status", "503")
	gw := startGateway(t, cp.xds)
	for _, p := range []*pod{bad1, bad2} {
		testutil.Eventually(t, 20*time.Second, "gateway knows "+p.inbound, func() bool { return gatewayHasEndpoint(t, gw, p.inbound) })
	}
	testutil.Eventually(t, 20*time.Second, "gateway has the retry budget", func() bool {
		d := configDump(t, gw.admin)
		return strings.Contains(d, `"numRetries": 5`) && strings.Contains(d, `"minConcurrency": 0`)
	})

	const burst = 40
	var wg sync.WaitGroup
	start := make(chan struct{})
	codes := make(chan int, burst)
	for range burst {
		wg.Go(func() {
			<-start
			code, _ := answer(t, gw)
			codes <- code
		})
	}
	close(start)
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != 503 {
			t.Fatalf("answer %d, want every instance's 503", code)
		}
	}
	retries, refused := metricValue(t, gw, retriesMetric), metricValue(t, gw, retryOverflowsMetric)
	if refused == 0 {
		t.Fatalf("the budget refused no retry (%d made) for %d concurrent failing requests", retries, burst)
	}
	// Without a budget: 5 retries each.
	if retries >= burst*5 {
		t.Fatalf("%d retries for %d requests: the budget did not cap them", retries, burst)
	}
	t.Logf("%d requests: %d retries made, %d refused by the budget", burst, retries, refused)
}
