// Package balancer selects the endpoint of a cluster a request goes to.
// A balancer only selects: health is set elsewhere (on model.Endpoint), and
// the forwarder decides what to do when the selected endpoint fails.
package balancer

import (
	"sync"
	"sync/atomic"

	"trellis.dev/trellis/internal/proxy/model"
)

// Balancer picks one healthy endpoint of a cluster; ok is false when the
// cluster is nil or has no healthy endpoint.
type Balancer interface {
	Pick(cluster *model.Cluster) (ep model.Endpoint, ok bool)
}

// Selector selects one healthy endpoint of a cluster for a request whose
// consistent-hash key is key (ignored by balancers that do not hash); ok
// is false when the cluster is nil or has no healthy endpoint. It only
// selects: whether an endpoint may be chosen is its Healthy status, set by
// others (EDS today; health checks and outlier ejection later).
type Selector interface {
	Select(cluster *model.Cluster, key HashKey) (ep model.Endpoint, ok bool)
}

var (
	_ Balancer = (*RoundRobin)(nil)
	_ Selector = (*RoundRobin)(nil)
)

// RoundRobin cycles through the healthy endpoints of each cluster. Its
// counters are keyed by cluster name and live outside the config snapshot,
// so a config swap does not reset the rotation.
type RoundRobin struct {
	counters sync.Map // cluster name → *atomic.Uint64
}

// NewRoundRobin returns a round-robin balancer.
func NewRoundRobin() *RoundRobin { return &RoundRobin{} }

// Pick returns the next healthy endpoint of cluster.
func (b *RoundRobin) Pick(cluster *model.Cluster) (model.Endpoint, bool) {
	if cluster == nil {
		return model.Endpoint{}, false
	}
	healthy := 0
	for i := range cluster.Endpoints {
		if cluster.Endpoints[i].Healthy {
			healthy++
		}
	}
	if healthy == 0 {
		return model.Endpoint{}, false
	}
	n := int((b.counter(cluster.Name).Add(1) - 1) % uint64(healthy))
	for i := range cluster.Endpoints {
		if !cluster.Endpoints[i].Healthy {
			continue
		}
		if n == 0 {
			return cluster.Endpoints[i], true
		}
		n--
	}
	return model.Endpoint{}, false // unreachable
}

// Select is Pick; round robin ignores the key.
func (b *RoundRobin) Select(cluster *model.Cluster, _ HashKey) (model.Endpoint, bool) {
	return b.Pick(cluster)
}

// healthyCount counts the endpoints that may be selected.
func healthyCount(eps []model.Endpoint) int {
	n := 0
	for i := range eps {
		if eps[i].Healthy {
			n++
		}
	}
	return n
}

// nthHealthy returns the index in eps of the n-th (from 0) healthy endpoint.
func nthHealthy(eps []model.Endpoint, n int) int {
	for i := range eps {
		if !eps[i].Healthy {
			continue
		}
		if n == 0 {
			return i
		}
		n--
	}
	return -1
}

func (b *RoundRobin) counter(cluster string) *atomic.Uint64 {
	if c, ok := b.counters.Load(cluster); ok {
		return c.(*atomic.Uint64)
	}
	c, _ := b.counters.LoadOrStore(cluster, new(atomic.Uint64))
	return c.(*atomic.Uint64)
}

// Others returns up to max healthy endpoint addresses of cluster other than
// first, starting after it and wrapping around: the instances to try when
// connecting to first failed. Starting after first spreads the retries of
// many requests instead of piling them on the cluster's first endpoint.
func Others(cluster *model.Cluster, first string, max int) []string {
	if cluster == nil || max <= 0 {
		return nil
	}
	eps := cluster.Endpoints
	start := 0
	for i := range eps {
		if eps[i].Address == first {
			start = i + 1
			break
		}
	}
	var out []string
	for k := range eps {
		ep := &eps[(start+k)%len(eps)]
		if !ep.Healthy || ep.Address == first {
			continue
		}
		out = append(out, ep.Address)
		if len(out) == max {
			break
		}
	}
	return out
}
