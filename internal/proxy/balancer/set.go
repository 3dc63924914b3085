package balancer

import (
	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/proxy/syncmap"
)

// Set holds one balancer of each kind, with their state (round-robin
// counters, in-flight counts, rings) outside snapshots, and dispatches by
// each cluster's policy (model.Cluster.LB).
type Set struct {
	roundRobin   *RoundRobin
	random       Random
	leastRequest *LeastRequest
	ringHash     *RingHash
	loads        *Loads
}

var _ Selector = (*Set)(nil)

// NewSet returns a Set with empty state.
func NewSet() *Set {
	loads := &Loads{}
	return &Set{
		roundRobin:   NewRoundRobin(),
		leastRequest: &LeastRequest{Loads: loads},
		ringHash:     &RingHash{},
		loads:        loads,
	}
}

// ForCluster is the balancer of cluster's policy; round robin for an
// unknown or unset one.
func (s *Set) ForCluster(cluster *model.Cluster) Selector {
	if cluster == nil {
		return s.roundRobin
	}
	switch cluster.LB.Kind {
	case model.LBLeastRequest:
		return s.leastRequest
	case model.LBRandom:
		return s.random
	case model.LBRingHash:
		return s.ringHash
	}
	return s.roundRobin
}

// Select selects by cluster's policy without counting the exchange (for
// connections that are not request/response exchanges, like TCP tunnels).
func (s *Set) Select(cluster *model.Cluster, key HashKey) (model.Endpoint, bool) {
	return s.ForCluster(cluster).Select(cluster, key)
}

// Pick selects by cluster's policy and, for a least-request cluster,
// counts the exchange as in flight: the caller calls Done on the returned
// Inflight (nil when nothing is counted; Done on nil is fine) when the
// response is done.
func (s *Set) Pick(cluster *model.Cluster, key HashKey) (model.Endpoint, *Inflight, bool) {
	ep, ok := s.Select(cluster, key)
	if !ok || cluster.LB.Kind != model.LBLeastRequest {
		return ep, nil, ok
	}
	return ep, s.loads.Begin(cluster.Name, ep.Address), true
}

// Loads are the in-flight counts Pick keeps.
func (s *Set) Loads() *Loads { return s.loads }

// SelectConn selects the endpoint of a connection that is not a request
// (a TCP tunnel): by cluster's policy, without a hash key (so a ring hash
// cluster picks at random) and not counted as a request in flight.
func (s *Set) SelectConn(cluster *model.Cluster) (model.Endpoint, bool) {
	return s.Select(cluster, HashKey{})
}

// Retain drops the state (round-robin counters, in-flight counts, rings)
// of every cluster keep refuses: the clusters gone from the configuration,
// so that state does not grow with cluster churn. A request still in
// flight to a dropped cluster ends on its old counter, harmlessly.
func (s *Set) Retain(keep func(cluster string) bool) {
	syncmap.DeleteUnless(&s.roundRobin.counters, keep)
	syncmap.DeleteUnless(&s.loads.clusters, keep)
	syncmap.DeleteUnless(&s.ringHash.rings, keep)
}
