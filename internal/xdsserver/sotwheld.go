package xdsserver

import (
	"maps"
	"reflect"
	"sync"
)

// What a SotW stream holds, and what an EDS or RDS response must add to it.
//
// go-control-plane keeps, per stream and type, the "returned" map: name →
// version of what the stream was sent (GetReturnedResources fills it; for
// EDS and RDS the versions are content hashes). Comparing that map with a
// snapshot is a lookup per resource: 3,000 per proxy and push at 1,000
// services, ~100 ns each since 2,000 proxies' maps do not stay in the CPU
// caches. Done three times per push (what changed, updating the map,
// whether a request lacks anything), it was 40 % of a 2,000-proxy endpoint
// push's CPU.
//
// So the cache remembers, per node and type, which snapshot's resources a
// stream's map equals (a "stamp"). The map is ours in all but storage:
// only GetReturnedResources adds to it or changes a version, and
// go-control-plane only deletes from it (a name the proxy stopped asking
// for). A stamp therefore holds while the map is the same map with the same
// length; then what the stream lacks of a new snapshot is the difference
// between two snapshots, computed once and shared by every proxy that held
// the previous one.

type heldKey struct{ node, typeURL string }

type heldStamp struct {
	m  map[string]string // the stream's map; keeping it alive also keeps its address from being reused
	n  int               // len(m) when stamped
	st *sharedType       // the snapshot type whose returned map m equals
}

// heldStamps are the stamps of every node's streams, one per node and type
// (a node with two streams keeps the last one's; the other compares in full).
type heldStamps struct {
	mu sync.Mutex
	m  map[heldKey]heldStamp
}

// lookup returns the snapshot type whose resources known (a stream's
// returned map) equals, or nil if that is not known.
func (h *heldStamps) lookup(k heldKey, known map[string]string) *sharedType {
	if len(known) == 0 {
		return nil
	}
	h.mu.Lock()
	s, ok := h.m[k]
	h.mu.Unlock()
	if !ok || s.n != len(known) || !sameMap(s.m, known) {
		return nil
	}
	return s.st
}

// record stamps known as holding exactly st's resources.
func (h *heldStamps) record(k heldKey, known map[string]string, st *sharedType) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[heldKey]heldStamp{}
	}
	h.m[k] = heldStamp{m: known, n: len(known), st: st}
}

// forget drops node's stamps.
func (h *heldStamps) forget(node string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	maps.DeleteFunc(h.m, func(k heldKey, _ heldStamp) bool { return k.node == node })
}

// sameMap reports whether a and b are one map (not two equal ones).
func sameMap(a, b map[string]string) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// changedFrom returns the indexes (into st.names) of the resources a
// stream holding known (name → content hash) lacks or holds in another
// version. Never nil: an empty result means "nothing".
func (st *sharedType) changedFrom(known map[string]string) []int {
	idx := []int{}
	for i, name := range st.names {
		if v, ok := known[name]; !ok || v != st.returned[name] {
			idx = append(idx, i)
		}
	}
	return idx
}

// changedSince is changedFrom(prev.returned), computed once per pair of
// snapshots (up to maxDiffs previous ones).
func (st *sharedType) changedSince(prev *sharedType) []int {
	if prev == st {
		return []int{}
	}
	st.diffMu.Lock()
	idx, ok := st.since[prev]
	st.diffMu.Unlock()
	if ok {
		return idx
	}
	idx = st.changedFrom(prev.returned)
	st.diffMu.Lock()
	defer st.diffMu.Unlock()
	if st.since == nil {
		st.since = map[*sharedType][]int{}
	}
	if len(st.since) < maxDiffs {
		st.since[prev] = idx
	}
	return idx
}

// updateHeld brings known, a stream's returned map, from what it held to
// st's resources, in place, and returns it. idx are the resources that
// changed (see changedFrom), or nil when that is not known: then every
// entry is compared. A nil known is replaced by a copy of st's map.
func updateHeld(known map[string]string, st *sharedType, idx []int) map[string]string {
	want := st.returned
	switch {
	case known == nil:
		return maps.Clone(want)
	case idx != nil:
		// The other entries are in known with want's versions already.
		for _, i := range idx {
			name := st.names[i]
			known[name] = want[name]
		}
	default:
		for name, v := range want {
			if cur, ok := known[name]; !ok || cur != v {
				known[name] = v
			}
		}
	}
	if len(known) > len(want) {
		maps.DeleteFunc(known, func(name, _ string) bool { _, ok := want[name]; return !ok })
	}
	return known
}
