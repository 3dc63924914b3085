package proxy

import "trellis.dev/trellis/internal/proxy/model"

// clusterView is the cluster as the balancer sees it for one request: the
// snapshot's cluster with the endpoints that are not to get traffic now
// marked unhealthy — those failing their active health checks, then those
// ejected by outlier detection. It is c itself when nothing is marked, and
// nil when c is. Each view is made once per change and falls back to the
// cluster it was given when it would leave no healthy endpoint, so an
// endpoint failing its checks and another one ejected never leave a
// cluster with none.
func (p *Proxy) clusterView(c *model.Cluster) *model.Cluster {
	return p.outliers.View(p.health.View(c))
}
