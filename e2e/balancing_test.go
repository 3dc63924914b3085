package e2e

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/testutil"
)

const hashPolicy = `apiVersion: trellis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: reviews}
spec:
  service: reviews
  loadBalancer:
    consistentHash: {header: x-user}
`

const leastRequestPolicy = `apiVersion: trellis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: reviews}
spec:
  service: reviews
  loadBalancer:
    leastRequest: {choiceCount: 3}
`

// instanceOf asks the gateway for reviews with x-user and returns the
// address of the instance's app that answered (the sample app's "addr").
func instanceOf(t *testing.T, gw *gateway, user string) string {
	t.Helper()
	req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://"+gw.addr+"/", nil)
	req.Host = "reviews"
	req.Header.Set("x-user", user)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var echo struct{ Addr string }
	if resp.StatusCode != 200 || json.Unmarshal(b, &echo) != nil || echo.Addr == "" {
		t.Fatalf("status %d, body %q", resp.StatusCode, b)
	}
	return echo.Addr
}

// gatewayLB is the balancer the gateway's config gives cluster.
func gatewayLB(t *testing.T, gw *gateway, cluster string) map[string]any {
	t.Helper()
	var dump struct {
		Snapshot struct {
			Clusters map[string]struct {
				LB map[string]any `json:"lb"`
			} `json:"clusters"`
		} `json:"snapshot"`
	}
	if err := json.Unmarshal([]byte(configDump(t, gw.admin)), &dump); err != nil {
		t.Fatalf("gateway config_dump: %v", err)
	}
	return dump.Snapshot.Clusters[cluster].LB
}

// A TrafficPolicy hashing on x-user keeps each user's requests on one
// instance of three; without it they spread. A least-request policy
// reaches the gateway's config.
func TestConsistentHashKeepsAUserOnOneInstance(t *testing.T) {
	t.Parallel()
	cp := startControl(t, "")
	for range 3 {
		startPod(t, cp.xds, "reviews", "v1")
	}
	gw := startGateway(t, cp.xds)
	users := []string{"alice", "bob", "carol", "dave", "erin"}
	const perUser = 30

	testutil.Eventually(t, 20*time.Second, "three instances at the gateway", func() bool {
		seen := map[string]bool{}
		for range 9 {
			seen[instanceOf(t, gw, "alice")] = true
		}
		return len(seen) == 3
	})
	// Round robin: each user's requests reach every instance.
	for _, u := range users {
		seen := map[string]int{}
		for range perUser {
			seen[instanceOf(t, gw, u)]++
		}
		if len(seen) != 3 {
			t.Fatalf("without a policy, %s's %d requests reached %v, want all three instances", u, perUser, seen)
		}
	}

	apply(t, cp, hashPolicy)
	testutil.Eventually(t, 5*time.Second, "ring hash at the gateway", func() bool {
		return gatewayLB(t, gw, "reviews")["kind"] == "ring_hash"
	})
	instances := map[string]bool{}
	for _, u := range users {
		seen := map[string]int{}
		for range perUser {
			seen[instanceOf(t, gw, u)]++
		}
		if len(seen) != 1 {
			t.Fatalf("with consistentHash on x-user, %s's %d requests reached %v, want one instance", u, perUser, seen)
		}
		for a := range seen {
			instances[a] = true
		}
	}
	t.Logf("%d users on %d instances", len(users), len(instances))

	// The CLI shows and deletes the policy; a least-request one reaches the
	// gateway with its choice count.
	if out, errs, code := trellisCLI(t, "", "get", "trafficpolicies", "--server", cp.http); code != 0 || !strings.Contains(out, "consistentHash header x-user") {
		t.Fatalf("get trafficpolicies (%d): %s %s", code, out, errs)
	}
	apply(t, cp, leastRequestPolicy)
	testutil.Eventually(t, 5*time.Second, "least request at the gateway", func() bool {
		lb := gatewayLB(t, gw, "reviews|v1")
		return lb["kind"] == "least_request" && lb["choiceCount"] == float64(3)
	})
	spread := map[string]int{}
	for range 30 {
		spread[instanceOf(t, gw, "alice")]++
	}
	if len(spread) < 2 {
		t.Fatalf("least request sent 30 requests to %v", spread)
	}
	if out, errs, code := trellisCLI(t, "", "delete", "trafficpolicy", "reviews", "--server", cp.http); code != 0 {
		t.Fatalf("delete trafficpolicy (%d): %s %s", code, out, errs)
	}
	testutil.Eventually(t, 5*time.Second, "round robin again", func() bool {
		return gatewayLB(t, gw, "reviews")["kind"] == "round_robin"
	})
}
