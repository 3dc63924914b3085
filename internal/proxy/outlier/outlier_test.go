package outlier

import (
	"testing"
	"time"

	"trellis.dev/trellis/internal/proxy/model"
)

type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func cluster(n int, p *model.OutlierPolicy) *model.Cluster {
	c := &model.Cluster{Name: "reviews", LB: model.LBPolicy{Kind: model.LBRoundRobin}, Outlier: p}
	for i := range n {
		c.Endpoints = append(c.Endpoints, model.Endpoint{Address: string(rune('a'+i)) + ":1", Healthy: true})
	}
	return c
}

func policy() *model.OutlierPolicy {
	return &model.OutlierPolicy{Consecutive5xx: 3, ConsecutiveGateway: 2, Interval: 10 * time.Second,
		BaseEjection: 30 * time.Second, MaxEjection: 300 * time.Second, MaxEjectionPercent: 50}
}

func healthy(c *model.Cluster) []string {
	var out []string
	for _, ep := range c.Endpoints {
		if ep.Healthy {
			out = append(out, ep.Address)
		}
	}
	return out
}

func TestEjectAfterConsecutiveFailures(t *testing.T) {
	tests := []struct {
		name     string
		outcomes []Outcome
		ejected  bool
	}{
		{"three 500", []Outcome{{Status: 500}, {Status: 500}, {Status: 500}}, true},
		{"two 500", []Outcome{{Status: 500}, {Status: 500}}, false},
		{"success resets", []Outcome{{Status: 500}, {Status: 500}, {Status: 200}, {Status: 500}}, false},
		{"4xx is success", []Outcome{{Status: 500}, {Status: 500}, {Status: 404}, {Status: 500}}, false},
		{"two gateway errors", []Outcome{{Status: 503}, {Status: 502}}, true},
		{"two connect failures", []Outcome{{ConnectFailed: true}, {ConnectFailed: true}}, true},
		{"500 breaks gateway run, 5xx run goes on", []Outcome{{Status: 504}, {Status: 500}, {Status: 503}}, true},
		{"500 then 504 then 200", []Outcome{{Status: 500}, {Status: 504}, {Status: 200}}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clk := &clock{t: time.Unix(1000, 0)}
			d := New(clk.now)
			ejections := 0
			d.OnEject = func(string) { ejections++ }
			c := cluster(2, policy())
			for _, o := range tt.outcomes {
				d.Report(c, "a:1", o)
			}
			v := d.View(c)
			got := len(healthy(v)) == 1
			if got != tt.ejected || (ejections == 1) != tt.ejected {
				t.Fatalf("ejected %v (healthy %v, %d ejections), want %v", got, healthy(v), ejections, tt.ejected)
			}
			if tt.ejected && healthy(v)[0] != "b:1" {
				t.Fatalf("healthy %v, want b:1", healthy(v))
			}
			if healthy(c)[0] != "a:1" {
				t.Fatal("View changed the snapshot's cluster")
			}
		})
	}
}

// gateway errors below 500 would not exist; a 5xx threshold of 0 means the
// 5xx detector is off.
func TestDetectorOff(t *testing.T) {
	d := New((&clock{t: time.Unix(1000, 0)}).now)
	p := policy()
	p.Consecutive5xx = 0
	c := cluster(2, p)
	for range 10 {
		d.Report(c, "a:1", Outcome{Status: 500})
	}
	if v := d.View(c); v != c {
		t.Fatalf("500s ejected with consecutive5xx off: %v", healthy(v))
	}
	none := cluster(2, nil)
	for range 10 {
		d.Report(none, "a:1", Outcome{ConnectFailed: true})
	}
	if v := d.View(none); v != none {
		t.Fatal("a cluster without outlier detection ejected")
	}
}

func TestEjectionTimeGrowsAndEnds(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	d := New(clk.now)
	c := cluster(2, policy())
	fail := func() {
		for range 3 {
			d.Report(c, "a:1", Outcome{Status: 500})
		}
	}
	fail()
	clk.advance(29 * time.Second)
	if n := len(healthy(d.View(c))); n != 1 {
		t.Fatalf("after 29 s: %d healthy, want 1", n)
	}
	clk.advance(time.Second)
	if v := d.View(c); v != c {
		t.Fatalf("after 30 s: still ejected %v", healthy(v))
	}
	// Ejected again at once: twice as long.
	fail()
	clk.advance(59 * time.Second)
	if n := len(healthy(d.View(c))); n != 1 {
		t.Fatalf("second ejection ended before 60 s")
	}
	clk.advance(time.Second)
	if v := d.View(c); v != c {
		t.Fatal("second ejection lasted more than 60 s")
	}
	// Ejected again as soon as it returns: 90 s, 120 s, … capped at 300 s.
	// Reports while ejected are ignored.
	for n := 3; n < 20; n++ {
		fail()
		fail()
		e := d.Ejected()["reviews"]
		want := min(time.Duration(n)*30*time.Second, 300*time.Second)
		if len(e) != 1 || e[0].Ejections != n || e[0].Until.Sub(clk.t) != want {
			t.Fatalf("ejection %d: %+v, want %s", n, e, want)
		}
		clk.advance(want)
		if v := d.View(c); v != c {
			t.Fatalf("ejection %d lasted more than %s", n, want)
		}
	}
}

func TestMultiplierDecaysPerInterval(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	d := New(clk.now)
	c := cluster(2, policy())
	for i := range 3 {
		for range 3 {
			d.Report(c, "a:1", Outcome{Status: 500})
		}
		clk.advance(time.Duration(i+1) * 30 * time.Second)
		d.View(c)
	}
	if e := d.Ejected(); len(e) != 0 {
		t.Fatalf("still ejected: %v", e)
	}
	// A long healthy time (ten intervals) brings the multiplier back to 1.
	clk.advance(100 * time.Second)
	for range 3 {
		d.Report(c, "a:1", Outcome{Status: 500})
	}
	e := d.Ejected()["reviews"]
	if len(e) != 1 || e[0].Ejections != 1 || !e[0].Until.Equal(clk.t.Add(30*time.Second)) {
		t.Fatalf("ejected %+v, want one ejection of 30 s", e)
	}
}

func TestMaxEjectionPercent(t *testing.T) {
	tests := []struct {
		percent, endpoints, want int
	}{
		{10, 3, 0},  // 33 % > 10 %: none (Envoy)
		{34, 3, 1},  // one of three
		{50, 3, 1},  // two of three would be 67 %
		{50, 4, 2},  // half
		{10, 10, 1}, // 10 % of 10
		{0, 5, 0},   // never
		{100, 3, 3}, // all: then the view falls back to every healthy one
		{100, 1, 1}, // one of one
		{99, 100, 99},
	}
	for _, tt := range tests {
		p := policy()
		p.MaxEjectionPercent = tt.percent
		d := New((&clock{t: time.Unix(1000, 0)}).now)
		c := cluster(tt.endpoints, p)
		for _, ep := range c.Endpoints {
			for range 3 {
				d.Report(c, ep.Address, Outcome{Status: 500})
			}
		}
		if got := len(d.Ejected()["reviews"]); got != tt.want {
			t.Errorf("%d %% of %d: %d ejected, want %d", tt.percent, tt.endpoints, got, tt.want)
		}
	}
}

func TestAllEjectedFallsBackToHealthy(t *testing.T) {
	p := policy()
	p.MaxEjectionPercent = 100
	d := New((&clock{t: time.Unix(1000, 0)}).now)
	c := cluster(2, p)
	c.Endpoints[1].Healthy = false // not ready: stays out in any case
	for range 3 {
		d.Report(c, "a:1", Outcome{Status: 500})
	}
	if v := d.View(c); v != c {
		t.Fatalf("the only healthy endpoint ejected: healthy %v, want the cluster as it is", healthy(v))
	}
}

func TestViewCachedAndFollowsSnapshot(t *testing.T) {
	d := New((&clock{t: time.Unix(1000, 0)}).now)
	c := cluster(3, policy())
	for range 3 {
		d.Report(c, "a:1", Outcome{Status: 500})
	}
	v1, v2 := d.View(c), d.View(c)
	if v1 != v2 || v1 == c {
		t.Fatal("the view is not cached")
	}
	// A new snapshot (another *Cluster of that name) keeps the ejection.
	c2 := cluster(4, policy())
	if got := healthy(d.View(c2)); len(got) != 3 || got[0] != "b:1" {
		t.Fatalf("new snapshot: healthy %v", got)
	}
	if allocs := testing.AllocsPerRun(100, func() { d.View(c2) }); allocs != 0 {
		t.Fatalf("View of an unchanged ejection: %v allocs", allocs)
	}
	none := cluster(3, policy())
	none.Name = "ratings"
	if allocs := testing.AllocsPerRun(100, func() { d.View(none) }); allocs != 0 {
		t.Fatalf("View without ejections: %v allocs", allocs)
	}
}

// The view with ejected endpoints keeps every other field of the cluster
// (the circuit breaker's MaxRequests among them).
func TestViewKeepsClusterFields(t *testing.T) {
	d := New((&clock{t: time.Unix(1000, 0)}).now)
	c := cluster(2, policy())
	c.MaxRequests = 7
	d.Report(c, "a:1", Outcome{ConnectFailed: true})
	d.Report(c, "a:1", Outcome{ConnectFailed: true})
	v := d.View(c)
	if v == c || len(healthy(v)) != 1 {
		t.Fatalf("want a view with one endpoint ejected, got healthy %v", healthy(v))
	}
	if v.MaxRequests != 7 || v.Name != c.Name || v.Outlier != c.Outlier || v.LB != c.LB {
		t.Fatalf("view %+v lost fields of %+v", v, c)
	}
}
