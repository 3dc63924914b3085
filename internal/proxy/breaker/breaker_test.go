package breaker

import (
	"sync"
	"testing"
)

func TestAcquireAtLimit(t *testing.T) {
	var s Set
	c1, n, ok := s.Acquire("reviews", 2)
	if !ok || n != 1 {
		t.Fatalf("first: ok %v n %d", ok, n)
	}
	c2, n, ok := s.Acquire("reviews", 2)
	if !ok || n != 2 {
		t.Fatalf("second: ok %v n %d", ok, n)
	}
	if c, n, ok := s.Acquire("reviews", 2); ok || c != nil || n != 2 {
		t.Fatalf("third: ok %v counter %v n %d, want refused at 2", ok, c, n)
	}
	if _, _, ok := s.Acquire("ratings", 2); !ok {
		t.Fatal("another cluster is counted apart")
	}
	c1.Release()
	if got := s.InFlight("reviews"); got != 1 {
		t.Fatalf("in flight %d after a release, want 1", got)
	}
	c3, _, ok := s.Acquire("reviews", 2)
	if !ok {
		t.Fatal("refused after a release")
	}
	c2.Release()
	c3.Release()
	if got := s.InFlight("reviews"); got != 0 {
		t.Fatalf("in flight %d, want 0", got)
	}
}

func TestUnlimited(t *testing.T) {
	var s Set
	for range 10 {
		c, _, ok := s.Acquire("reviews", 0)
		if !ok || c != nil {
			t.Fatalf("limit 0: ok %v counter %v, want unlimited and uncounted", ok, c)
		}
		c.Release() // nil: nothing
	}
	if got := s.InFlight("reviews"); got != 0 {
		t.Fatalf("in flight %d, want 0", got)
	}
}

// Concurrent acquirers never exceed the limit.
func TestConcurrentNeverAbove(t *testing.T) {
	var s Set
	const limit = 3
	var wg sync.WaitGroup
	var mu sync.Mutex
	maxSeen := int64(0)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				c, n, ok := s.Acquire("reviews", limit)
				if !ok {
					continue
				}
				mu.Lock()
				maxSeen = max(maxSeen, n)
				mu.Unlock()
				c.Release()
			}
		}()
	}
	wg.Wait()
	if maxSeen > limit {
		t.Fatalf("saw %d in flight, limit %d", maxSeen, limit)
	}
	if got := s.InFlight("reviews"); got != 0 {
		t.Fatalf("in flight %d at the end, want 0", got)
	}
}

func BenchmarkAcquireRelease(b *testing.B) {
	var s Set
	b.ReportAllocs()
	for b.Loop() {
		c, _, _ := s.Acquire("reviews", 100)
		c.Release()
	}
}
