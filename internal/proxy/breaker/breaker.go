// Package breaker is the proxy's circuit breaker: it counts the requests in
// flight per cluster and refuses one that would exceed the cluster's
// max_requests (model.Cluster.MaxRequests), as Envoy's circuit_breakers
// DEFAULT threshold does.
//
// Its counts live outside config snapshots, keyed by cluster name, so a
// config change keeps them: a request started under the old snapshot is
// still counted when it ends under the new one.
package breaker

import (
	"sync"
	"sync/atomic"

	"trellis.dev/trellis/internal/proxy/syncmap"
)

// Set holds the in-flight count of every cluster with a limit. The zero
// value is ready to use.
type Set struct {
	clusters sync.Map // cluster name → *Counter
}

// Counter is one cluster's requests in flight.
type Counter struct{ n atomic.Int64 }

// Release ends one request counted by Acquire. A nil Counter (a cluster
// without a limit) does nothing.
func (c *Counter) Release() {
	if c != nil {
		c.n.Add(-1)
	}
}

// Acquire counts one more request in flight to cluster if that keeps it
// within limit, and returns the counter to Release when the request ends.
// Over the limit it returns ok false and the count in flight. A limit of 0
// or less is unlimited: nothing is counted (nil counter, ok true).
func (s *Set) Acquire(cluster string, limit int) (c *Counter, inflight int64, ok bool) {
	if limit <= 0 {
		return nil, 0, true
	}
	v, found := s.clusters.Load(cluster)
	if !found {
		v, _ = s.clusters.LoadOrStore(cluster, new(Counter))
	}
	c = v.(*Counter)
	for {
		n := c.n.Load()
		if n >= int64(limit) {
			return nil, n, false
		}
		if c.n.CompareAndSwap(n, n+1) {
			return c, n + 1, true
		}
	}
}

// InFlight is the count of requests in flight to cluster (0 for a cluster
// never limited).
func (s *Set) InFlight(cluster string) int64 {
	if v, ok := s.clusters.Load(cluster); ok {
		return v.(*Counter).n.Load()
	}
	return 0
}

// Retain drops the in-flight counts of every cluster keep refuses (gone from the
// configuration). A request still in flight to a dropped cluster ends on
// its old counter, harmlessly.
func (s *Set) Retain(keep func(cluster string) bool) {
	syncmap.DeleteUnless(&s.clusters, keep)
}
