package proxy

import (
	"testing"
	"time"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/model"
)

// A dead instance's failed connects count against it although each request
// recovers on the live one: after two, it is ejected, the counter says so,
// and requests go straight to the live one.
func TestOutlierEjectsOnConnectFailures(t *testing.T) {
	live, dead := startApp(t, "live"), deadAddr(t)
	snap := snapshot([]*model.VirtualHost{vhost("reviews", to("reviews", 100))},
		map[string][]string{"reviews": {dead, live.addr}})
	snap.Clusters["reviews"].Outlier = &model.OutlierPolicy{Consecutive5xx: 5, ConsecutiveGateway: 2,
		BaseEjection: time.Minute, MaxEjection: 5 * time.Minute, MaxEjectionPercent: 50}
	p, _ := startProxy(t, Config{Role: meshxds.RoleSidecar, Service: "productpage", Version: "v1"}, snap)
	c := h1ProxyClient(t, p.OutboundAddr())
	for i := range 20 {
		r := do(t, c, newRequest(t, "GET", "http://reviews/x", "", nil))
		if r.code != 200 || r.header.Get("X-App") != "live" {
			t.Fatalf("request %d: %d %q", i, r.code, r.body)
		}
	}
	e := p.outliers.Ejected()["reviews"]
	if len(e) != 1 || e[0].Address != dead || e[0].Ejections != 1 {
		t.Fatalf("ejected %+v, want %s once", e, dead)
	}
	if n := counterValue(t, p.metrics.Registry, "trellis_proxy_outlier_ejections_total", map[string]string{"cluster": "reviews"}); n != 1 {
		t.Fatalf("ejections counted: %v, want 1", n)
	}
}
