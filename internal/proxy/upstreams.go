package proxy

import (
	"trellis.dev/trellis/internal/proxy/balancer"
	"trellis.dev/trellis/internal/proxy/breaker"
	"trellis.dev/trellis/internal/proxy/filter"
	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/proxy/outlier"
)

// upstreams is the proxy's state per cluster and endpoint as the router
// filter sees it (filter.Upstreams): views from health checking and
// outlier ejection, the balancers, the circuit breakers.
type upstreams struct{ p *Proxy }

var _ filter.Upstreams = upstreams{}

func (u upstreams) View(c *model.Cluster) *model.Cluster { return u.p.clusterView(c) }

func (u upstreams) Pick(c *model.Cluster, key balancer.HashKey) (model.Endpoint, *balancer.Inflight, bool) {
	return u.p.balancer.Pick(c, key)
}

func (u upstreams) Acquire(c *model.Cluster) (*breaker.Counter, int64, bool) {
	cb, n, ok := u.p.breakers.Acquire(c.Name, c.MaxRequests)
	if !ok {
		u.p.metrics.CircuitBreakerOverflow(c.Name)
	}
	return cb, n, ok
}

func (u upstreams) Report(c *model.Cluster, addr string, o outlier.Outcome) {
	u.p.outliers.Report(c, addr, o)
}

func (u upstreams) Budget(c *model.Cluster) *breaker.Budget { return u.p.budgets.For(c.Name) }

func (u upstreams) Retried(c *model.Cluster, ok bool) {
	if ok {
		u.p.metrics.Retried(c.Name)
	} else {
		u.p.metrics.RetryOverflow(c.Name)
	}
}

// forgetGoneClusters drops the per-cluster state of clusters s no longer
// has (balancers, circuit breakers, retry budgets, outlier detection), so
// that it does not grow with cluster churn. Health checking drops its own
// (health.Checker.Update).
func (p *Proxy) forgetGoneClusters(s *model.Snapshot) {
	keep := func(name string) bool { _, ok := s.Clusters[name]; return ok }
	p.balancer.Retain(keep)
	p.breakers.Retain(keep)
	p.budgets.Retain(keep)
	p.outliers.Retain(keep)
}
