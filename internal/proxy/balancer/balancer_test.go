package balancer

import (
	"reflect"
	"sync"
	"testing"

	"trellis.dev/trellis/internal/proxy/model"
)

func cluster(name string, eps ...string) *model.Cluster {
	c := &model.Cluster{Name: name}
	for _, e := range eps {
		healthy := e[0] != '!'
		if !healthy {
			e = e[1:]
		}
		c.Endpoints = append(c.Endpoints, model.Endpoint{Address: e, Healthy: healthy})
	}
	return c
}

func TestRoundRobin(t *testing.T) {
	tests := []struct {
		name    string
		cluster *model.Cluster
		want    []string // successive picks; nil = no pick
	}{
		{"cycles", cluster("a", "x", "y", "z"), []string{"x", "y", "z", "x", "y"}},
		{"skips unhealthy", cluster("b", "x", "!y", "z"), []string{"x", "z", "x"}},
		{"none healthy", cluster("c", "!x", "!y"), nil},
		{"empty", cluster("d"), nil},
		{"nil", nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := NewRoundRobin()
			if tt.want == nil {
				if ep, ok := b.Pick(tt.cluster); ok {
					t.Fatalf("picked %v, want none", ep)
				}
				return
			}
			for i, want := range tt.want {
				ep, ok := b.Pick(tt.cluster)
				if !ok || ep.Address != want {
					t.Fatalf("pick %d = %q %v, want %q", i, ep.Address, ok, want)
				}
			}
		})
	}
}

// The rotation is keyed by cluster name: a new snapshot with an equal
// cluster continues where the old one was.
func TestRoundRobinSurvivesSwap(t *testing.T) {
	b := NewRoundRobin()
	old := cluster("reviews|v1", "x", "y", "z")
	if ep, _ := b.Pick(old); ep.Address != "x" {
		t.Fatalf("first pick %q", ep.Address)
	}
	swapped := cluster("reviews|v1", "x", "y", "z")
	if ep, _ := b.Pick(swapped); ep.Address != "y" {
		t.Fatalf("pick after swap %q, want y", ep.Address)
	}
}

func TestRoundRobinConcurrentIsEven(t *testing.T) {
	b := NewRoundRobin()
	c := cluster("c", "x", "y", "z", "w")
	var mu sync.Mutex
	n := map[string]int{}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			local := map[string]int{}
			for range 1000 {
				ep, _ := b.Pick(c)
				local[ep.Address]++
			}
			mu.Lock()
			for k, v := range local {
				n[k] += v
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	for _, a := range []string{"x", "y", "z", "w"} {
		if n[a] != 2000 {
			t.Fatalf("uneven: %v", n)
		}
	}
}

func TestOthers(t *testing.T) {
	c := cluster("c", "a", "!b", "c", "d", "e")
	tests := []struct {
		first string
		max   int
		want  []string
	}{
		{"c", 2, []string{"d", "e"}},
		{"e", 2, []string{"a", "c"}},
		{"a", 10, []string{"c", "d", "e"}},
		{"gone", 2, []string{"a", "c"}},
		{"a", 0, nil},
	}
	for _, tt := range tests {
		if got := Others(c, tt.first, tt.max); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Others(%q, %d) = %v, want %v", tt.first, tt.max, got, tt.want)
		}
	}
	if got := Others(nil, "a", 2); got != nil {
		t.Errorf("nil cluster: %v", got)
	}
}
