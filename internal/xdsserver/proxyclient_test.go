package xdsserver

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"time"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/proxy/xdsclient"
	"trellis.dev/trellis/internal/testutil"
	"trellis.dev/trellis/internal/translate"
)

// proxyClient is the proxy's real ADS client against the server, keeping
// the last snapshot it applied.
type proxyClient struct {
	mu   sync.Mutex
	snap *model.Snapshot
}

func startProxyClient(t *testing.T, addr, id string) *proxyClient {
	t.Helper()
	p := &proxyClient{}
	c := xdsclient.New(xdsclient.Config{
		Addr:   addr,
		Node:   sidecar(t, id, "", "", 0),
		Logger: slog.New(slog.DiscardHandler),
		OnUpdate: func(s *model.Snapshot) {
			p.mu.Lock()
			p.snap = s
			p.mu.Unlock()
		},
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return p
}

func (p *proxyClient) snapshot() *model.Snapshot {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.snap
}

// config is what the proxy routes with, without the versions.
func (p *proxyClient) config(t *testing.T) string {
	t.Helper()
	s := *p.snapshot()
	s.Versions = nil
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A proxy that followed every push (EDS and RDS responses carry only what
// changed) holds exactly the config of a proxy that connected afterwards
// and got everything at once: endpoints moved, added and removed, a
// service gone, a route changed.
func TestPushedProxyMatchesNewProxy(t *testing.T) {
	s, addr := startServer(t, nil)
	inputs := []translate.Input{meshInput(20, 0), meshInput(20, 1), meshInput(20, 2)}
	// A service fewer: its clusters and load assignments go.
	inputs = append(inputs, meshInput(19, 3))
	// A Route: the route config changes, endpoints do not.
	routed := meshInput(19, 3)
	ninety, ten := 90, 10
	routed.Routes = []api.Route{{Metadata: api.Metadata{Name: "svc1"}, Spec: api.RouteSpec{Service: "svc1",
		Rules: []api.RouteRule{{Version: "v1", Weight: &ninety}, {Version: "v2", Weight: &ten}}}}}
	inputs = append(inputs, routed)

	if err := s.Update(inputs[0]); err != nil {
		t.Fatal(err)
	}
	old := startProxyClient(t, addr, "old")
	applied := func(p *proxyClient, version string) func() bool {
		return func() bool {
			snap := p.snapshot()
			if snap == nil {
				return false
			}
			for _, v := range snap.Versions {
				if v == version {
					return true
				}
			}
			return false
		}
	}
	testutil.Eventually(t, 10*time.Second, "first config", applied(old, "1"))
	first := old.config(t)
	for _, in := range inputs[1:] {
		if err := s.Update(in); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 10*time.Second, "push", applied(old, s.Version()))
	}
	fresh := startProxyClient(t, addr, "fresh")
	testutil.Eventually(t, 10*time.Second, "fresh proxy's config", func() bool {
		a, b := old.snapshot(), fresh.snapshot()
		return a != nil && b != nil && maps.Equal(a.Versions, b.Versions)
	})
	if got, want := old.config(t), fresh.config(t); got != want {
		t.Errorf("the pushed proxy's config differs from a new proxy's:\npushed: %.2000s\nnew:    %.2000s", got, want)
	}
	if old.config(t) == first {
		t.Error("the pushes changed nothing")
	}
}
