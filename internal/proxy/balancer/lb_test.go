package balancer

import (
	"fmt"
	"net/http"
	"testing"

	"trellis.dev/trellis/internal/proxy/model"
)

func withLB(c *model.Cluster, lb model.LBPolicy) *model.Cluster {
	c.LB = lb
	return c
}

// Every selector skips unhealthy endpoints and reports none for an empty,
// all-unhealthy or nil cluster, with or without a key.
func TestSelectorsHealthyOnly(t *testing.T) {
	set := NewSet()
	lbs := []model.LBPolicy{{Kind: model.LBRoundRobin}, {Kind: model.LBRandom},
		{Kind: model.LBLeastRequest, ChoiceCount: 2}, {Kind: model.LBRingHash, MinRingSize: 64, MaxRingSize: 1024}}
	for _, lb := range lbs {
		for _, key := range []HashKey{{}, {Hash: 42, OK: true}} {
			name := fmt.Sprintf("%s/key=%v", lb.Kind, key.OK)
			t.Run(name, func(t *testing.T) {
				c := withLB(cluster(name, "!a", "b", "!c"), lb)
				for range 50 {
					ep, ok := set.Select(c, key)
					if !ok || ep.Address != "b" {
						t.Fatalf("selected %q %v, want b", ep.Address, ok)
					}
				}
				for _, empty := range []*model.Cluster{withLB(cluster(name+"x", "!a", "!b"), lb), withLB(cluster(name+"y"), lb), nil} {
					if ep, ok := set.Select(empty, key); ok {
						t.Fatalf("selected %v from %v", ep, empty)
					}
				}
			})
		}
	}
}

func TestForCluster(t *testing.T) {
	s := NewSet()
	tests := []struct {
		kind model.LBKind
		want Selector
	}{
		{model.LBRoundRobin, s.roundRobin}, {"", s.roundRobin}, {model.LBRandom, s.random},
		{model.LBLeastRequest, s.leastRequest}, {model.LBRingHash, s.ringHash},
	}
	for _, tt := range tests {
		if got := s.ForCluster(&model.Cluster{LB: model.LBPolicy{Kind: tt.kind}}); got != tt.want {
			t.Errorf("ForCluster(%q) = %T", tt.kind, got)
		}
	}
}

// counts selects n times and counts the addresses.
func counts(t *testing.T, s Selector, c *model.Cluster, n int, key func(i int) HashKey) map[string]int {
	t.Helper()
	got := map[string]int{}
	for i := range n {
		ep, ok := s.Select(c, key(i))
		if !ok {
			t.Fatal("no endpoint")
		}
		got[ep.Address]++
	}
	return got
}

func noKey(int) HashKey { return HashKey{} }

func within(t *testing.T, got map[string]int, lo, hi int, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		if got[a] < lo || got[a] > hi {
			t.Fatalf("%s selected %d times, want %d..%d (all: %v)", a, got[a], lo, hi, got)
		}
	}
}

// Distributions, by counting over a bounded number of selections (the
// bounds are many standard deviations wide).
func TestDistribution(t *testing.T) {
	t.Run("random", func(t *testing.T) {
		got := counts(t, Random{}, cluster("r", "a", "b", "c"), 3000, noKey)
		within(t, got, 800, 1200, "a", "b", "c")
	})
	t.Run("least request, equal loads", func(t *testing.T) {
		lr := &LeastRequest{Loads: &Loads{}}
		got := counts(t, lr, withLB(cluster("l", "a", "b", "c"), model.LBPolicy{Kind: model.LBLeastRequest, ChoiceCount: 2}), 3000, noKey)
		within(t, got, 800, 1200, "a", "b", "c")
	})
	t.Run("least request avoids the loaded endpoint", func(t *testing.T) {
		lr := &LeastRequest{Loads: &Loads{}}
		for range 5 {
			lr.Loads.Begin("l", "a")
		}
		c := withLB(cluster("l", "a", "b", "c"), model.LBPolicy{Kind: model.LBLeastRequest, ChoiceCount: 2})
		got := counts(t, lr, c, 3000, noKey)
		// a only when both draws are a: 1/9.
		within(t, got, 200, 500, "a")
		within(t, got, 1100, 1600, "b", "c")
		// With 10 choices a is drawn alone once in 3^10.
		c.LB.ChoiceCount = 10
		got = counts(t, lr, c, 3000, noKey)
		within(t, got, 0, 5, "a")
	})
	t.Run("ring hash spreads keys", func(t *testing.T) {
		c := withLB(cluster("h", "a", "b", "c", "d", "e"), model.LBPolicy{Kind: model.LBRingHash, MinRingSize: 1024})
		got := counts(t, &RingHash{}, c, 10000, func(i int) HashKey { return HashKey{Hash: Hash(fmt.Sprint("user-", i)), OK: true} })
		within(t, got, 1400, 2600, "a", "b", "c", "d", "e")
	})
}

func TestPickCountsInFlight(t *testing.T) {
	s := NewSet()
	c := withLB(cluster("l", "a"), model.LBPolicy{Kind: model.LBLeastRequest, ChoiceCount: 2})
	_, f1, _ := s.Pick(c, HashKey{})
	_, f2, _ := s.Pick(c, HashKey{})
	if n := s.Loads().InFlight("l", "a"); n != 2 {
		t.Fatalf("in flight %d, want 2", n)
	}
	f1.Done()
	f2.Done()
	if n := s.Loads().InFlight("l", "a"); n != 0 {
		t.Fatalf("in flight %d after Done, want 0", n)
	}
	rr := cluster("rr", "a")
	if _, f, ok := s.Pick(rr, HashKey{}); !ok || f != nil {
		t.Fatalf("round robin counted: %v %v", f, ok)
	}
	(*Inflight)(nil).Done() // no panic
}

// The same key always selects the same endpoint, also from a new snapshot
// with the same endpoints (which reuses the ring); removing one endpoint
// moves only the keys that were on it.
func TestRingHashConsistent(t *testing.T) {
	lb := model.LBPolicy{Kind: model.LBRingHash, MinRingSize: 1024, MaxRingSize: 8 << 20}
	rh := &RingHash{}
	before := withLB(cluster("reviews", "a", "b", "c", "d", "e"), lb)
	const keys = 5000
	key := func(i int) HashKey { return HashKey{Hash: Hash(fmt.Sprint("user-", i)), OK: true} }
	first := make([]string, keys)
	for i := range keys {
		ep, _ := rh.Select(before, key(i))
		first[i] = ep.Address
	}
	again := withLB(cluster("reviews", "a", "b", "c", "d", "e"), lb) // a new snapshot, equal endpoints
	for i := range keys {
		if ep, _ := rh.Select(again, key(i)); ep.Address != first[i] {
			t.Fatalf("key %d moved from %s to %s with the same endpoints", i, first[i], ep.Address)
		}
	}
	r1, _ := rh.rings.Load("reviews")
	if r1.(*ring).first != &again.Endpoints[0] {
		t.Fatal("ring not cached for the new slice")
	}

	for _, after := range []*model.Cluster{
		withLB(cluster("reviews", "a", "b", "d", "e"), lb),       // c removed
		withLB(cluster("reviews", "a", "b", "!c", "d", "e"), lb), // c unhealthy
	} {
		moved := 0
		for i := range keys {
			ep, _ := rh.Select(after, key(i))
			switch {
			case first[i] == "c":
				if ep.Address == "c" {
					t.Fatalf("key %d still on the removed endpoint", i)
				}
				moved++
			case ep.Address != first[i]:
				t.Fatalf("key %d moved from %s to %s though %s is still there", i, first[i], ep.Address, first[i])
			}
		}
		if moved < keys/10 || moved > keys*3/10 {
			t.Fatalf("%d of %d keys moved, want about a fifth", moved, keys)
		}
	}
	// Back to five: every key returns where it was.
	for i := range keys {
		if ep, _ := rh.Select(before, key(i)); ep.Address != first[i] {
			t.Fatalf("key %d on %s after c came back, was on %s", i, ep.Address, first[i])
		}
	}
}

func TestRingSize(t *testing.T) {
	eps := cluster("x", "a", "b", "!c").Endpoints
	for _, tt := range []struct{ min, max, want int }{
		{1024, 8 << 20, 1024}, {1000, 8 << 20, 1024}, {64, 8 << 20, 64}, {1, 8 << 20, 2}, {4096, 1024, 1024}, {0, 0, 1024},
	} {
		if got := len(buildRing(eps, tt.min, tt.max).hashes); got != tt.want {
			t.Errorf("ring(min %d, max %d) has %d points, want %d", tt.min, tt.max, got, tt.want)
		}
	}
}

func TestKeyOf(t *testing.T) {
	header := model.HashPolicy{Kind: model.HashHeader, Name: "x-user", HeaderKey: "X-User"}
	cookie := model.HashPolicy{Kind: model.HashCookie, Name: "session"}
	source := model.HashPolicy{Kind: model.HashSourceIP}
	req := func(h ...string) *http.Request {
		r, _ := http.NewRequest("GET", "http://reviews/", nil)
		r.RemoteAddr = "10.1.2.3:5555"
		for i := 0; i+1 < len(h); i += 2 {
			r.Header.Add(h[i], h[i+1])
		}
		return r
	}
	rotl := func(h uint64) uint64 { return h<<1 | h>>63 }
	tests := []struct {
		name     string
		policies []model.HashPolicy
		r        *http.Request
		want     HashKey
	}{
		{"none", nil, req(), HashKey{}},
		{"header", []model.HashPolicy{header}, req("X-User", "alice"), HashKey{Hash("alice"), true}},
		{"header absent", []model.HashPolicy{header}, req(), HashKey{}},
		{"header twice", []model.HashPolicy{header}, req("X-User", "a", "X-User", "b"), HashKey{Hash("a,b"), true}},
		{"cookie", []model.HashPolicy{cookie}, req("Cookie", "a=1; session=s1"), HashKey{Hash("s1"), true}},
		{"cookie absent", []model.HashPolicy{cookie}, req("Cookie", "a=1"), HashKey{}},
		{"source ip", []model.HashPolicy{source}, req(), HashKey{Hash("10.1.2.3"), true}},
		{"combined", []model.HashPolicy{header, source}, req("X-User", "alice"), HashKey{rotl(Hash("alice")) ^ Hash("10.1.2.3"), true}},
		{"first absent", []model.HashPolicy{header, source}, req(), HashKey{Hash("10.1.2.3"), true}},
		{"terminal", []model.HashPolicy{{Kind: model.HashHeader, Name: "x-user", HeaderKey: "X-User", Terminal: true}, source}, req("X-User", "alice"), HashKey{Hash("alice"), true}},
	}
	for _, tt := range tests {
		if got := KeyOf(tt.policies, tt.r); got != tt.want {
			t.Errorf("%s: KeyOf = %+v, want %+v", tt.name, got, tt.want)
		}
	}
}

// Selections from many goroutines while snapshots change (run with -race).
func TestSetConcurrent(t *testing.T) {
	s := NewSet()
	lbs := []model.LBPolicy{{Kind: model.LBLeastRequest, ChoiceCount: 2}, {Kind: model.LBRingHash, MinRingSize: 64}, {Kind: model.LBRandom}}
	done := make(chan struct{})
	for g := range 8 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 300 {
				c := withLB(cluster("c", "a", "b", "c"), lbs[(g+i)%len(lbs)])
				if i%2 == 0 {
					c = withLB(cluster("c", "a", "!b", "c"), c.LB)
				}
				_, f, ok := s.Pick(c, HashKey{Hash: uint64(i), OK: true})
				if !ok {
					t.Error("no endpoint")
				}
				f.Done()
			}
		}()
	}
	for range 8 {
		<-done
	}
	for _, a := range []string{"a", "b", "c"} {
		if n := s.Loads().InFlight("c", a); n != 0 {
			t.Fatalf("%s: %d in flight after all are done", a, n)
		}
	}
}
