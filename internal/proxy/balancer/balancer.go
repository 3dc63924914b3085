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

var _ Balancer = (*RoundRobin)(nil)

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
