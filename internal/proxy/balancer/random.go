package balancer

import (
	"math/rand/v2"

	"trellis.dev/trellis/internal/proxy/model"
)

var _ Selector = Random{}

// Random selects a healthy endpoint uniformly at random. It has no state.
type Random struct{}

// Select returns a random healthy endpoint of cluster.
func (Random) Select(cluster *model.Cluster, _ HashKey) (model.Endpoint, bool) {
	if cluster == nil {
		return model.Endpoint{}, false
	}
	n := healthyCount(cluster.Endpoints)
	if n == 0 {
		return model.Endpoint{}, false
	}
	return cluster.Endpoints[nthHealthy(cluster.Endpoints, rand.IntN(n))], true
}
