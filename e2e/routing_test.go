package e2e

import (
	"trellis.dev/trellis/internal/testutil"

	"strings"
	"testing"
	"time"
)

const canaryRoute = `apiVersion: trellis.dev/v1alpha1
kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules:
  - version: v3
    matches:
    - headers: {gray: {exact: "1"}}
    - queryParams: {debug: {exact: "true"}}
  - version: v1
    weight: 80
  - version: v2
    weight: 20
`

// within reports whether got/n is within ±points of pct percent.
func within(got, n, pct, points int) bool {
	share := float64(got) * 100 / float64(n)
	return share >= float64(pct-points) && share <= float64(pct+points)
}

func TestCanaryThroughGatewayAndSidecar(t *testing.T) {
	t.Parallel()
	cp := startControl(t, "")
	for _, v := range []string{"v1", "v2", "v3"} {
		startPod(t, cp.xds, "reviews", v)
	}
	client := startPod(t, cp.xds, "productpage", "v1")
	gw := startGateway(t, cp.xds)

	// Without a Route, traffic spreads over every version.
	spread := viaGateway(gw).split(t, "reviews", "/", nil, 300)
	for _, v := range []string{"v1", "v2", "v3"} {
		if !within(spread[v], 300, 33, 6) {
			t.Fatalf("without a Route, want an even spread, got %v", spread)
		}
	}

	apply(t, cp, canaryRoute)
	// The Route is in force once gray traffic reaches v3.
	testutil.Eventually(t, 5*time.Second, "route applied at the gateway", func() bool {
		_, v, _, _ := viaGateway(gw).get("reviews", "/", map[string]string{"gray": "1"})
		return v == "v3"
	})
	testutil.Eventually(t, 5*time.Second, "route applied at the sidecar", func() bool {
		_, v, _, _ := viaSidecar(client).get("reviews", "/", map[string]string{"gray": "1"})
		return v == "v3"
	})

	for name, mc := range map[string]*meshClient{"gateway": viaGateway(gw), "sidecar": viaSidecar(client)} {
		t.Run(name, func(t *testing.T) {
			// The split is a weighted random pick. Over n = 2000 requests
			// the v2 share's standard deviation is 0.9 points, so ±4 points
			// is 4.5 sigma: a correct proxy fails a subtest once in ~70,000
			// runs (over 1000 requests, 3.2 sigma: once in ~370 runs).
			const n = 2000
			counts := mc.split(t, "reviews", "/", nil, n)
			if !within(counts["v1"], n, 80, 4) || !within(counts["v2"], n, 20, 4) || counts["v3"] != 0 {
				t.Fatalf("80/20 split over %d requests: got %v", n, counts)
			}
			t.Logf("split over %d requests: %v", n, counts)
			if got := mc.split(t, "reviews", "/", map[string]string{"gray": "1"}, 100); got["v3"] != 100 {
				t.Fatalf("header match: want 100%% v3, got %v", got)
			}
			if got := mc.split(t, "reviews", "/x?debug=true", nil, 100); got["v3"] != 100 {
				t.Fatalf("query match: want 100%% v3, got %v", got)
			}
			if got := mc.split(t, "reviews", "/x?debug=false", map[string]string{"gray": "0"}, 50); got["v3"] != 0 {
				t.Fatalf("non-matching header and query must not reach v3, got %v", got)
			}
		})
	}

	// The serving side names itself.
	code, version, _, err := viaGateway(gw).get("reviews", "/", map[string]string{"gray": "1"})
	if err != nil || code != 200 || version != "v3" {
		t.Fatalf("got %d %q %v", code, version, err)
	}

	// Mesh errors are explained, never bare.
	code, _, merr, err := viaGateway(gw).get("nosuch", "/", nil)
	if err != nil || code != 404 || merr != "no_route" {
		t.Fatalf("unknown service: got %d %q %v", code, merr, err)
	}
}

func TestInvalidRouteIsRejectedAndNothingStored(t *testing.T) {
	t.Parallel()
	cp := startControl(t, "")
	bad := strings.Replace(canaryRoute, "weight: 20", "weight: 10", 1)
	_, stderr, code := trellisCLI(t, bad, "apply", "--server", cp.http, "-f", "-")
	if code == 0 {
		t.Fatal("invalid Route was accepted")
	}
	want := "spec.rules: weights of v1, v2 add up to 90, must be 100"
	if !strings.Contains(stderr, want) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
		t.Fatalf("stderr should be one line naming the field, got %q", stderr)
	}
	_, stderr, code = trellisCLI(t, "", "get", "route", "reviews", "--server", cp.http)
	if code == 0 || !strings.Contains(stderr, "not found") {
		t.Fatalf("invalid Route was stored: code %d, %q", code, stderr)
	}

	// A valid one, then an invalid update: the stored one is unchanged.
	apply(t, cp, canaryRoute)
	if _, _, code := trellisCLI(t, bad, "apply", "--server", cp.http, "-f", "-"); code == 0 {
		t.Fatal("invalid update was accepted")
	}
	out, _, code := trellisCLI(t, "", "get", "routes", "reviews", "-o", "yaml", "--server", cp.http)
	if code != 0 || !strings.Contains(out, "weight: 20") || !strings.Contains(out, "generation: 1") {
		t.Fatalf("stored Route changed by a rejected apply:\n%s", out)
	}

	// Table output and delete.
	out, _, _ = trellisCLI(t, "", "get", "routes", "--server", cp.http)
	if !strings.Contains(out, "v3 if gray=1 | ?debug=true; v1 80%, v2 20%") {
		t.Fatalf("get routes table:\n%s", out)
	}
	if _, stderr, code := trellisCLI(t, "", "delete", "route", "reviews", "--server", cp.http); code != 0 {
		t.Fatalf("delete: %s", stderr)
	}
	if _, _, code := trellisCLI(t, "", "get", "route", "reviews", "--server", cp.http); code == 0 {
		t.Fatal("route still there after delete")
	}
}
