package proxy

import (
	"net/http"
	"strings"
	"testing"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/model"
)

func TestMeshErrors(t *testing.T) {
	m := newMesh(t)
	refused := sidecar(t, "ratings", "v1", deadAddr(t)) // its app is not running
	dead1, dead2, dead3 := deadAddr(t), deadAddr(t), deadAddr(t)
	snap := snapshot([]*model.VirtualHost{
		vhost("reviews", to("reviews|v2", 100)),
		vhost("ghost", to("ghost|v1", 100)),
		vhost("gone", to("gone|v1", 100)),
		vhost("ratings", to("ratings|v1", 100)),
		{Name: "paths", Domains: []string{"paths"}, Routes: []*model.Route{{
			Match:    model.Match{Path: model.PathMatch{Kind: model.Prefix, Value: "/api/"}},
			Clusters: []model.WeightedCluster{{Name: "reviews|v1", Weight: 1}},
		}}},
	}, map[string][]string{
		"reviews|v2": {m.side2.InboundAddr()},
		"gone|v1":    {dead1, dead2, dead3},
		"ratings|v1": {refused.InboundAddr()},
	})
	snap.Clusters["reviews|v2"].Endpoints[0].Healthy = false
	m.client.setSnapshot(snap)

	tests := []struct {
		name       string
		host, path string
		status     int
		code       string
		body       string // the one line, or its start when it ends in "…"
		service    string // x-trellis-service/-version expected: the inbound that answered
	}{
		{"unknown host", "nowhere", "/", 404, "no_route", `no_route: host "nowhere" matches no service`, ""},
		{"no route for path", "paths:80", "/other", 404, "no_route", `no_route: no route of "paths" matches GET /other`, ""},
		{"no healthy instance", "reviews", "/", 503, "no_healthy_upstream",
			`no_healthy_upstream: service "reviews" version "v2" has no healthy instance`, ""},
		{"unknown cluster", "ghost", "/", 503, "no_healthy_upstream",
			`no_healthy_upstream: service "ghost" version "v1" is not known to this proxy`, ""},
		{"every instance refuses", "gone", "/", 503, "upstream_connect_failed",
			`upstream_connect_failed: connect to service "gone" version "v1" failed on 3 instances, last 127.0.0.1:…`, ""},
		// The inbound sidecar answers app_unavailable; with no other
		// instance to try, the caller answers its own.
		{"app refuses its sidecar", "ratings", "/", 503, "app_unavailable",
			`app_unavailable: service "ratings" version "v1" at ` + refused.InboundAddr() + ` could not connect to its app`, ""},
	}
	c := h1Client(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, c, newRequest(t, "GET", "http://"+m.client.OutboundAddr()+tt.path, tt.host, nil))
			if r.code != tt.status || r.header.Get(meshxds.HeaderError) != tt.code {
				t.Fatalf("got %d %s=%q, want %d %q", r.code, meshxds.HeaderError, r.header.Get(meshxds.HeaderError), tt.status, tt.code)
			}
			if !strings.HasSuffix(r.body, "\n") || strings.Count(r.body, "\n") != 1 {
				t.Fatalf("body %q is not one line", r.body)
			}
			line := strings.TrimSuffix(r.body, "\n")
			if want, prefix := strings.CutSuffix(tt.body, "…"); (prefix && !strings.HasPrefix(line, want)) || (!prefix && line != want) {
				t.Fatalf("body %q, want %q", line, tt.body)
			}
			gotSvc := r.header.Get(meshxds.HeaderService) + "/" + r.header.Get(meshxds.HeaderVersion)
			if tt.service == "" && gotSvc != "/" || tt.service != "" && gotSvc != tt.service {
				t.Fatalf("x-trellis-service/version %q, want %q", gotSvc, tt.service)
			}
		})
	}
}

// Before the first config arrives, requests get a mesh error that says so.
func TestNoConfigYet(t *testing.T) {
	p, _ := startProxy(t, Config{Role: meshxds.RoleSidecar, ControlAddr: "127.0.0.1:1"}, nil)
	r := do(t, h1Client(t), newRequest(t, "GET", "http://"+p.OutboundAddr()+"/", "reviews", nil))
	if r.code != http.StatusNotFound || r.body != "no_route: no configuration from the control plane at 127.0.0.1:1 yet\n" {
		t.Fatalf("%d %q", r.code, r.body)
	}
}
