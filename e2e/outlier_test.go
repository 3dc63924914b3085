package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/testutil"
)

// outlierPolicy ejects a reviews instance after 3 consecutive 5xx, for
// 5 minutes (longer than the test), at most half of the instances.
const outlierPolicy = `apiVersion: trellis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: reviews}
spec:
  service: reviews
  outlierDetection: {consecutive5xx: 3, baseEjectionTime: 5m, maxEjectionPercent: 50}
`

var ejectionsMetric = regexp.MustCompile(`trellis_proxy_outlier_ejections_total\{cluster="reviews"\} (\d+)`)

// answer asks the gateway for reviews: status and the answering app's
// address (the sample app's "addr", also in its 500 answers).
func answer(t *testing.T, gw *gateway) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://"+gw.addr+"/", nil)
	req.Host = "reviews"
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var echo struct{ Addr string }
	_ = json.Unmarshal(b, &echo)
	return resp.StatusCode, echo.Addr
}

// One of three reviews instances always answers 500: with outlier
// detection the gateway ejects it after three 500s in a row, and then
// every request goes to the two healthy ones.
func TestFailingInstanceEjected(t *testing.T) {
	t.Parallel()
	cp := startControl(t, "")
	apply(t, cp, outlierPolicy)
	good1 := startPod(t, cp.xds, "reviews", "v1")
	good2 := startPod(t, cp.xds, "reviews", "v1")
	bad := startPodWith(t, cp.xds, "reviews", "v1", "--fail-status", "500")
	gw := startGateway(t, cp.xds)
	for _, p := range []*pod{good1, good2, bad} {
		testutil.Eventually(t, 20*time.Second, "gateway knows "+p.inbound, func() bool { return gatewayHasEndpoint(t, gw, p.inbound) })
	}
	testutil.Eventually(t, 20*time.Second, "gateway has the outlier policy", func() bool {
		return strings.Contains(configDump(t, gw.admin), `"consecutive5xx": 3`)
	})
	badAddr := fmt.Sprintf("127.0.0.1:%d", bad.appPort)

	// Warm-up: round robin sends every third request to the failing
	// instance, so its third 500 in a row comes within ~9 requests.
	fails := 0
	for i := 0; i < 60 && metricValue(t, gw, ejectionsMetric) == 0; i++ {
		if code, _ := answer(t, gw); code == 500 {
			fails++
		}
	}
	if n := metricValue(t, gw, ejectionsMetric); n < 1 {
		t.Fatalf("no ejection after the warm-up (%d answers 500)", fails)
	}
	if !strings.Contains(configDump(t, gw.admin), `"ejected"`) {
		t.Errorf("config_dump does not list the ejected instance")
	}

	seen := map[string]int{}
	for range 100 {
		code, addr := answer(t, gw)
		if code != 200 || addr == badAddr {
			t.Fatalf("after the ejection: status %d from %s (the failing instance is %s); seen %v", code, addr, badAddr, seen)
		}
		seen[addr]++
	}
	if len(seen) != 2 {
		t.Errorf("100 requests went to %v, want both healthy instances", seen)
	}
}
