package proxy

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/proxy/outlier"
	"trellis.dev/trellis/internal/testutil"
)

// checkedApp answers every request 200 with x-app, except /healthz while
// its health is failing (503).
func checkedApp(t *testing.T, name string, failing *atomic.Bool) string {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("X-App", name)
		w.Write([]byte(name))
	}))
	t.Cleanup(s.Close)
	return s.Listener.Addr().String()
}

// An instance whose health check fails while it still answers its traffic
// gets no requests once marked unhealthy, and gets them again when its
// check passes; the counters and /config_dump say so. Outlier detection
// on the same cluster sees nothing to eject.
func TestHealthCheckTakesFailingEndpointOut(t *testing.T) {
	var goodFails, badFails atomic.Bool
	badFails.Store(true)
	good, bad := checkedApp(t, "good", &goodFails), checkedApp(t, "bad", &badFails)
	snap := snapshot([]*model.VirtualHost{vhost("reviews", to("reviews", 100))},
		map[string][]string{"reviews": {good, bad}})
	c := snap.Clusters["reviews"]
	c.HealthCheck = &model.HealthCheckPolicy{Kind: model.HealthCheckHTTP, Path: "/healthz", Host: "reviews",
		ExpectedStatuses: []model.StatusRange{{Start: 200, End: 300}},
		Interval:         10 * time.Millisecond, Timeout: 5 * time.Second, UnhealthyThreshold: 2, HealthyThreshold: 2}
	c.Outlier = &model.OutlierPolicy{Consecutive5xx: 1, BaseEjection: time.Minute, MaxEjection: time.Minute, MaxEjectionPercent: 100}
	p, _ := startProxy(t, Config{Role: meshxds.RoleSidecar, Service: "productpage", Version: "v1"}, snap)
	client := h1ProxyClient(t, p.OutboundAddr())

	counter := func(name string) float64 {
		return counterValue(t, p.metrics.Registry, name, map[string]string{"cluster": "reviews"})
	}
	testutil.Eventually(t, 20*time.Second, "bad marked unhealthy", func() bool {
		return counter("trellis_proxy_health_check_unhealthy_total") == 1
	})
	if n := counter("trellis_proxy_health_check_failures_total"); n < 2 {
		t.Errorf("failures counted: %v, want at least 2", n)
	}
	for i := range 20 {
		r := do(t, client, newRequest(t, "GET", "http://reviews/x", "", nil))
		if r.code != 200 || r.header.Get("X-App") != "good" {
			t.Fatalf("request %d: %d from %q, want 200 from good", i, r.code, r.header.Get("X-App"))
		}
	}
	var dump struct {
		HealthChecks map[string][]struct {
			Address string `json:"address"`
			Healthy bool   `json:"healthy"`
		} `json:"healthChecks"`
	}
	b, _ := json.Marshal(p.configDump())
	if err := json.Unmarshal(b, &dump); err != nil {
		t.Fatal(err)
	}
	for _, s := range dump.HealthChecks["reviews"] {
		if s.Healthy != (s.Address == good) {
			t.Errorf("config dump: %+v (good is %s)", dump.HealthChecks, good)
		}
	}
	if len(dump.HealthChecks["reviews"]) != 2 {
		t.Errorf("config dump lists %+v, want both endpoints", dump.HealthChecks)
	}

	badFails.Store(false)
	seen := map[string]bool{}
	testutil.Eventually(t, 20*time.Second, "bad gets requests again", func() bool {
		r := do(t, client, newRequest(t, "GET", "http://reviews/x", "", nil))
		seen[r.header.Get("X-App")] = true
		return seen["bad"]
	})
	if len(p.outliers.Ejected()) != 0 {
		t.Errorf("outlier detection ejected %+v: no request failed", p.outliers.Ejected())
	}

	// A config without the check drops its state.
	p.setSnapshot(snapshot([]*model.VirtualHost{vhost("reviews", to("reviews", 100))},
		map[string][]string{"reviews": {good, bad}}))
	if st := p.health.Status(); len(st) != 0 {
		t.Errorf("health state after the check was removed: %+v", st)
	}
}

// The health view and the outlier view compose: an endpoint failing its
// checks and another one ejected both get nothing while a third is left.
func TestClusterViewComposesHealthAndOutlier(t *testing.T) {
	var fails, ok atomic.Bool
	fails.Store(true)
	checked, ejected, left := checkedApp(t, "checked", &fails), checkedApp(t, "ejected", &ok), checkedApp(t, "left", &ok)
	snap := snapshot([]*model.VirtualHost{vhost("reviews", to("reviews", 100))},
		map[string][]string{"reviews": {checked, ejected, left}})
	c := snap.Clusters["reviews"]
	c.HealthCheck = &model.HealthCheckPolicy{Kind: model.HealthCheckHTTP, Path: "/healthz",
		ExpectedStatuses: []model.StatusRange{{Start: 200, End: 300}},
		Interval:         10 * time.Millisecond, Timeout: 5 * time.Second, UnhealthyThreshold: 1, HealthyThreshold: 1}
	c.Outlier = &model.OutlierPolicy{Consecutive5xx: 1, BaseEjection: time.Hour, MaxEjection: time.Hour, MaxEjectionPercent: 100}
	p, _ := startProxy(t, Config{Role: meshxds.RoleSidecar, Service: "productpage", Version: "v1"}, snap)
	testutil.Eventually(t, 20*time.Second, "checked marked unhealthy", func() bool { return p.health.View(c) != c })
	p.outliers.Report(c, ejected, outlier.Outcome{Status: 500})
	v := p.clusterView(c)
	var healthy []string
	for _, ep := range v.Endpoints {
		if ep.Healthy {
			healthy = append(healthy, ep.Address)
		}
	}
	if len(healthy) != 1 || healthy[0] != left {
		t.Fatalf("healthy in the view: %v, want only %s", healthy, left)
	}
	if c.Endpoints[0].Healthy != true || c.Endpoints[1].Healthy != true {
		t.Fatalf("the snapshot's cluster was changed")
	}
}
