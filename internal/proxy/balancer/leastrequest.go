package balancer

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"trellis.dev/trellis/internal/proxy/model"
)

var _ Selector = (*LeastRequest)(nil)

// Loads counts the requests in flight per cluster and endpoint address.
// The counts live outside snapshots, so a config change keeps them; the
// caller reports each exchange with Begin and Done.
type Loads struct {
	clusters sync.Map // cluster name → *sync.Map (address → *Inflight)
}

// Inflight is one endpoint's count of requests in flight.
type Inflight struct{ n atomic.Int64 }

// Done ends one exchange begun with Loads.Begin. A nil *Inflight (an
// exchange nobody counts) does nothing.
func (f *Inflight) Done() {
	if f != nil {
		f.n.Add(-1)
	}
}

// Begin counts an exchange with addr of cluster as in flight until the
// returned Inflight's Done.
func (l *Loads) Begin(cluster, addr string) *Inflight {
	f := l.counter(cluster, addr)
	f.n.Add(1)
	return f
}

// InFlight is the number of exchanges in flight with addr of cluster.
func (l *Loads) InFlight(cluster, addr string) int64 {
	m, ok := l.clusters.Load(cluster)
	if !ok {
		return 0
	}
	f, ok := m.(*sync.Map).Load(addr)
	if !ok {
		return 0
	}
	return f.(*Inflight).n.Load()
}

func (l *Loads) counter(cluster, addr string) *Inflight {
	m, ok := l.clusters.Load(cluster)
	if !ok {
		m, _ = l.clusters.LoadOrStore(cluster, new(sync.Map))
	}
	addrs := m.(*sync.Map)
	if f, ok := addrs.Load(addr); ok {
		return f.(*Inflight)
	}
	f, _ := addrs.LoadOrStore(addr, new(Inflight))
	return f.(*Inflight)
}

// LeastRequest draws the cluster's ChoiceCount (at least 2) healthy
// endpoints at random and selects the one with the fewest requests in
// flight, the first drawn on a tie: Envoy's power of two choices. Every
// endpoint weighs the same (endpoints carry no weight yet).
type LeastRequest struct {
	Loads *Loads
}

// Select returns the least loaded of the drawn healthy endpoints.
func (b *LeastRequest) Select(cluster *model.Cluster, _ HashKey) (model.Endpoint, bool) {
	if cluster == nil {
		return model.Endpoint{}, false
	}
	eps := cluster.Endpoints
	n := healthyCount(eps)
	if n == 0 {
		return model.Endpoint{}, false
	}
	choices := max(cluster.LB.ChoiceCount, 2)
	best, bestLoad := -1, int64(0)
	for range choices {
		i := nthHealthy(eps, rand.IntN(n))
		load := b.Loads.InFlight(cluster.Name, eps[i].Address)
		if best < 0 || load < bestLoad {
			best, bestLoad = i, load
		}
	}
	return eps[best], true
}
