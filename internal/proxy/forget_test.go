package proxy

import (
	"testing"

	"trellis.dev/trellis/internal/meshxds"
)

// A configuration without a cluster drops that cluster's state (circuit
// breaker and retry-budget counts, in-flight counts); the clusters it
// keeps keep theirs.
func TestStateOfGoneClustersDropped(t *testing.T) {
	p, _ := startProxy(t, Config{Role: meshxds.RoleSidecar, Service: "productpage", Version: "v1"},
		snapshot(nil, map[string][]string{"reviews|v1": {"127.0.0.1:1"}, "ratings|v1": {"127.0.0.1:2"}}))
	for _, c := range []string{"reviews|v1", "ratings|v1"} {
		if _, _, ok := p.breakers.Acquire(c, 10); !ok {
			t.Fatal("acquire")
		}
		p.budgets.For(c).Begin()
		p.balancer.Loads().Begin(c, "127.0.0.1:1")
	}
	p.setSnapshot(snapshot(nil, map[string][]string{"reviews|v1": {"127.0.0.1:1"}}))

	if n := p.breakers.InFlight("ratings|v1"); n != 0 {
		t.Errorf("ratings|v1 breaker count %d after it left the configuration", n)
	}
	if n := p.breakers.InFlight("reviews|v1"); n != 1 {
		t.Errorf("reviews|v1 breaker count %d, want 1 (kept)", n)
	}
	if a, _ := p.budgets.For("ratings|v1").InFlight(); a != 0 {
		t.Errorf("ratings|v1 budget still counts %d requests", a)
	}
	if a, _ := p.budgets.For("reviews|v1").InFlight(); a != 1 {
		t.Errorf("reviews|v1 budget counts %d requests, want 1 (kept)", a)
	}
	if n := p.balancer.Loads().InFlight("ratings|v1", "127.0.0.1:1"); n != 0 {
		t.Errorf("ratings|v1 in-flight count %d after it left", n)
	}
	if n := p.balancer.Loads().InFlight("reviews|v1", "127.0.0.1:1"); n != 1 {
		t.Errorf("reviews|v1 in-flight count %d, want 1 (kept)", n)
	}
}
