package proxy

import "trellis.dev/trellis/internal/proxy/model"

// clusterView is the cluster as the balancer sees it for one request: the
// snapshot's cluster with the endpoints that are not to get traffic now
// (ejected by outlier detection) marked unhealthy. It is c itself when
// nothing is marked, and nil when c is.
func (p *Proxy) clusterView(c *model.Cluster) *model.Cluster {
	return p.outliers.View(c)
}
