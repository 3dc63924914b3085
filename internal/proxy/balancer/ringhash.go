package balancer

import (
	"slices"
	"strconv"
	"sync"

	"trellis.dev/trellis/internal/proxy/model"
)

var _ Selector = (*RingHash)(nil)

// RingHash maps a request's hash key onto a ring of its cluster's healthy
// endpoints (Envoy's RING_HASH, Karger et al.): each endpoint takes many
// points on a 64-bit ring, and a key goes to the first point at or after
// its hash. Removing one of n endpoints moves only the keys that were on
// it (about 1/n); the others stay where they were.
//
// A ring is built once per cluster and endpoint set and cached by cluster
// name outside snapshots: a new snapshot whose cluster has the same
// endpoints, in the same order and health, reuses it. A request without a
// key goes to a random healthy endpoint.
type RingHash struct {
	rings sync.Map // cluster name → *ring
}

type ring struct {
	// first and n identify the endpoint slice the ring was last used with:
	// snapshots share immutable slices, so the same slice is the same set.
	first *model.Endpoint
	n     int
	// fingerprint of the endpoint set (addresses and health, in order).
	fp     uint64
	hashes []uint64 // sorted
	index  []int32  // index[i]: the endpoint (in the cluster's slice) of hashes[i]
}

// Select returns the endpoint that key's hash maps to.
func (b *RingHash) Select(cluster *model.Cluster, key HashKey) (model.Endpoint, bool) {
	if cluster == nil || len(cluster.Endpoints) == 0 {
		return model.Endpoint{}, false
	}
	if !key.OK {
		return Random{}.Select(cluster, key)
	}
	r := b.ring(cluster)
	if len(r.hashes) == 0 {
		return model.Endpoint{}, false
	}
	i, _ := slices.BinarySearch(r.hashes, key.Hash)
	if i == len(r.hashes) {
		i = 0
	}
	return cluster.Endpoints[r.index[i]], true
}

func (b *RingHash) ring(c *model.Cluster) *ring {
	eps := c.Endpoints
	cached, _ := b.rings.Load(c.Name)
	old, _ := cached.(*ring)
	if old != nil && old.first == &eps[0] && old.n == len(eps) {
		return old
	}
	fp := fingerprint(eps)
	var r *ring
	if old != nil && old.fp == fp && old.n == len(eps) {
		r = &ring{hashes: old.hashes, index: old.index} // same set, new slice
	} else {
		r = buildRing(eps, c.LB.MinRingSize, c.LB.MaxRingSize)
	}
	r.first, r.n, r.fp = &eps[0], len(eps), fp
	b.rings.Store(c.Name, r)
	return r
}

// fingerprint hashes the endpoints' addresses and health in order.
func fingerprint(eps []model.Endpoint) uint64 {
	h := uint64(len(eps))
	for i := range eps {
		v := Hash(eps[i].Address)
		if eps[i].Healthy {
			v = ^v
		}
		h = (h<<1 | h>>63) ^ v
	}
	return h
}

// buildRing gives each healthy endpoint the same number of points (a power
// of two), enough for minSize points in all, at most maxSize (and
// model.MaxRingEntries).
// A point's hash is Hash("address_i"), as Envoy names them.
func buildRing(eps []model.Endpoint, minSize, maxSize int) *ring {
	healthy := healthyCount(eps)
	if healthy == 0 {
		return &ring{}
	}
	if minSize <= 0 {
		minSize = model.DefaultMinRingSize
	}
	if maxSize <= 0 || maxSize > model.MaxRingEntries {
		maxSize = model.MaxRingEntries
	}
	// Points per endpoint: rounded up to a power of two, so that adding or
	// removing an endpoint seldom changes it; when it does not, the other
	// endpoints keep exactly their points and so their keys.
	per := 1
	for per*healthy < minSize {
		per *= 2
	}
	per = max(1, min(per, maxSize/healthy))
	type point struct {
		hash uint64
		ep   int32
	}
	points := make([]point, 0, per*healthy)
	buf := make([]byte, 0, 64)
	for i := range eps {
		if !eps[i].Healthy {
			continue
		}
		for j := range per {
			buf = append(append(append(buf[:0], eps[i].Address...), '_'), strconv.Itoa(j)...)
			points = append(points, point{Hash(string(buf)), int32(i)})
		}
	}
	slices.SortFunc(points, func(a, b point) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		return int(a.ep - b.ep)
	})
	r := &ring{hashes: make([]uint64, len(points)), index: make([]int32, len(points))}
	for i, p := range points {
		r.hashes[i], r.index[i] = p.hash, p.ep
	}
	return r
}
