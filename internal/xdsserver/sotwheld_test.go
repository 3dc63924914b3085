package xdsserver

import (
	"maps"
	"testing"
)

// A stamp holds for the very map it was taken of, while nothing was
// deleted from it, until the node is forgotten.
func TestHeldStamps(t *testing.T) {
	var h heldStamps
	st := &sharedType{}
	k := heldKey{"a", "eds"}
	m := map[string]string{"x": "1", "y": "2"}
	if h.lookup(k, m) != nil {
		t.Fatal("a stamp before any was recorded")
	}
	h.record(k, m, st)
	if h.lookup(k, m) != st {
		t.Fatal("the stamped map is not recognised")
	}
	if h.lookup(k, maps.Clone(m)) != nil {
		t.Error("an equal but other map matches the stamp")
	}
	if h.lookup(heldKey{"b", "eds"}, m) != nil || h.lookup(heldKey{"a", "rds"}, m) != nil {
		t.Error("another node's or type's key matches the stamp")
	}
	delete(m, "x") // as go-control-plane does when the proxy stops naming x
	if h.lookup(k, m) != nil {
		t.Error("the stamp holds after a deletion")
	}
	h.record(k, m, st)
	h.forget("a")
	if h.lookup(k, m) != nil {
		t.Error("the stamp outlived forget")
	}
	if h.lookup(k, map[string]string{}) != nil {
		t.Error("an empty map matches")
	}
}

// updateHeld brings a stream's map to a snapshot's, in place: with the
// changed indexes, or comparing everything.
func TestUpdateHeld(t *testing.T) {
	st := &sharedType{names: []string{"a", "b", "c"}, returned: map[string]string{"a": "1", "b": "2", "c": "3"}}
	for _, tc := range []struct {
		name  string
		known map[string]string
		idx   []int
	}{
		{"nil map", nil, nil},
		{"changed known", map[string]string{"a": "1", "b": "old", "gone": "9"}, []int{1, 2}},
		{"unknown changes", map[string]string{"a": "x", "b": "2", "gone": "9"}, nil},
		{"nothing changed", map[string]string{"a": "1", "b": "2", "c": "3"}, []int{}},
	} {
		got := updateHeld(tc.known, st, tc.idx)
		if !maps.Equal(got, st.returned) {
			t.Errorf("%s: %v, want %v", tc.name, got, st.returned)
		}
		if tc.known != nil && !sameMap(got, tc.known) {
			t.Errorf("%s: not updated in place", tc.name)
		}
		if sameMap(got, st.returned) {
			t.Errorf("%s: returned the shared map", tc.name)
		}
	}
}
