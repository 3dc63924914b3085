package breaker

import (
	"sync"
	"sync/atomic"

	"trellis.dev/trellis/internal/proxy/syncmap"
)

// Budget is one cluster's retry budget: the requests in flight to it on
// routes that retry, and the retries among them. A retry is allowed while
// the retries in flight stay within a share of the requests in flight (at
// least a minimum), as Envoy's retry_budget: when a service fails, retries
// add at most that share to its load instead of multiplying it.
type Budget struct {
	active  atomic.Int64 // requests in flight (Begin … End)
	retries atomic.Int64 // retries in flight (TryRetry … End)
}

// Budgets holds the budget of every cluster with retrying routes. The zero
// value is ready to use.
type Budgets struct {
	clusters sync.Map // cluster name → *Budget
}

// For is cluster's budget; its counts outlive configuration snapshots.
func (s *Budgets) For(cluster string) *Budget {
	v, ok := s.clusters.Load(cluster)
	if !ok {
		v, _ = s.clusters.LoadOrStore(cluster, new(Budget))
	}
	return v.(*Budget)
}

// Begin counts a request in flight.
func (b *Budget) Begin() { b.active.Add(1) }

// End ends a request counted by Begin, with the retries TryRetry allowed it.
func (b *Budget) End(retries int) {
	b.active.Add(-1)
	if retries > 0 {
		b.retries.Add(int64(-retries))
	}
}

// TryRetry counts one more retry in flight if that keeps the retries within
// percent of the requests in flight, or within minConcurrency, whichever is
// more; otherwise it reports false and counts nothing.
func (b *Budget) TryRetry(percent float64, minConcurrency int) bool {
	for {
		r := b.retries.Load()
		limit := max(int64(minConcurrency), int64(float64(b.active.Load())*percent/100))
		if r >= limit {
			return false
		}
		if b.retries.CompareAndSwap(r, r+1) {
			return true
		}
	}
}

// InFlight is the requests and retries in flight.
func (b *Budget) InFlight() (requests, retries int64) { return b.active.Load(), b.retries.Load() }

// Retain drops the budgets of every cluster keep refuses (gone from the
// configuration). A request still in flight to a dropped cluster ends on
// its old counter, harmlessly.
func (s *Budgets) Retain(keep func(cluster string) bool) {
	syncmap.DeleteUnless(&s.clusters, keep)
}
