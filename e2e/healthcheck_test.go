package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/testutil"
)

// healthPolicy probes every reviews instance's /healthz every 500 ms; two
// failures in a row take an instance out, two successes bring it back.
const healthPolicy = `apiVersion: trellis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: reviews}
spec:
  service: reviews
  healthCheck:
    http: {path: /healthz}
    interval: 500ms
    timeout: 400ms
    unhealthyThreshold: 2
    healthyThreshold: 2
`

var unhealthyMetric = regexp.MustCompile(`trellis_proxy_health_check_unhealthy_total\{cluster="reviews"\} (\d+)`)

// Two reviews instances answer their traffic; one's /healthz fails. With a
// TrafficPolicy health check the gateway takes it out, and every request
// goes to the other; when its /healthz passes again, it gets traffic again.
func TestHealthCheckTakesInstanceOut(t *testing.T) {
	t.Parallel()
	healthFile := filepath.Join(t.TempDir(), "healthy") // absent: /healthz answers 503
	cp := startControl(t, "")
	good := startPod(t, cp.xds, "reviews", "v1")
	bad := startPodWith(t, cp.xds, "reviews", "v1", "--health-file", healthFile)
	gw := startGateway(t, cp.xds)
	for _, p := range []*pod{good, bad} {
		testutil.Eventually(t, 20*time.Second, "gateway knows "+p.inbound, func() bool { return gatewayHasEndpoint(t, gw, p.inbound) })
	}
	goodAddr, badAddr := fmt.Sprintf("127.0.0.1:%d", good.appPort), fmt.Sprintf("127.0.0.1:%d", bad.appPort)

	// Without a health check both get traffic: the failing /healthz is
	// nothing the gateway looks at, and bad answers its requests.
	seen := map[string]int{}
	for i := 0; i < 50 && (seen[goodAddr] == 0 || seen[badAddr] == 0); i++ {
		code, addr := answer(t, gw)
		if code != 200 {
			t.Fatalf("before the policy: status %d from %s", code, addr)
		}
		seen[addr]++
	}
	if seen[goodAddr] == 0 || seen[badAddr] == 0 {
		t.Fatalf("before the policy, requests went to %v, want both %s and %s", seen, goodAddr, badAddr)
	}

	apply(t, cp, healthPolicy)
	testutil.Eventually(t, 30*time.Second, "the gateway marks the failing instance unhealthy", func() bool {
		return metricValue(t, gw, unhealthyMetric) >= 1
	})
	dump := configDump(t, gw.admin)
	if !strings.Contains(dump, `"healthChecks"`) || !strings.Contains(dump, `answered 503`) {
		t.Errorf("config_dump does not show the health state:\n%s", dump)
	}
	seen = map[string]int{}
	for range 100 {
		code, addr := answer(t, gw)
		if code != 200 || addr != goodAddr {
			t.Fatalf("after the failing instance was marked: status %d from %s (healthy is %s); seen %v", code, addr, goodAddr, seen)
		}
		seen[addr]++
	}

	// It recovers: after two passing checks it gets requests again.
	if err := os.WriteFile(healthFile, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	back := false
	for i := 0; i < 3000 && !back; i++ { // ~30 s at most
		code, addr := answer(t, gw)
		if code != 200 {
			t.Fatalf("while recovering: status %d from %s", code, addr)
		}
		back = addr == badAddr
		if !back {
			time.Sleep(10 * time.Millisecond)
		}
	}
	if !back {
		t.Fatalf("the recovered instance got no request")
	}
}
