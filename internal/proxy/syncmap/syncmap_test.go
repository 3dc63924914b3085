package syncmap

import (
	"sync"
	"testing"
)

func TestDeleteUnless(t *testing.T) {
	var m sync.Map
	for _, k := range []string{"reviews|v1", "reviews|v2", "ratings"} {
		m.Store(k, 1)
	}
	DeleteUnless(&m, func(c string) bool { return c != "reviews|v2" })
	var left []string
	m.Range(func(k, _ any) bool { left = append(left, k.(string)); return true })
	if len(left) != 2 {
		t.Fatalf("left %v, want reviews|v1 and ratings", left)
	}
	if _, ok := m.Load("reviews|v2"); ok {
		t.Fatal("reviews|v2 kept")
	}
}
