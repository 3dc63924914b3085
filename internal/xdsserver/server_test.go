package xdsserver

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/membership"
	"trellis.dev/trellis/internal/meshxds"
)

func TestSotWReceivesConfigAndChanges(t *testing.T) {
	s, addr := startServer(t, nil)
	// Connect before the first Update: the node waits, then gets it.
	c := newSotwClient(t, dial(t, addr), sidecar(t, "reviews-1", "reviews", "v1", 15006), nil)
	eventually(t, "node connected", func() bool { return len(s.Proxies()) == 1 })

	if err := s.Update(input("v1")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "all four types", func() bool {
		for _, typ := range allTypes {
			if c.version(typ) != "1" {
				return false
			}
		}
		return true
	})
	if got, want := c.resources(resource.ClusterType), []string{"reviews", "reviews|v1"}; !slices.Equal(got, want) {
		t.Errorf("clusters = %v, want %v", got, want)
	}
	if got, want := c.resources(resource.ListenerType), []string{meshxds.ListenerGateway, meshxds.ListenerOutbound}; !slices.Equal(got, want) {
		t.Errorf("listeners = %v, want %v", got, want)
	}
	if got := c.resources(resource.RouteType); !slices.Equal(got, []string{meshxds.RouteConfigMesh}) {
		t.Errorf("routes = %v", got)
	}
	eventually(t, "synced", func() bool { p := s.Proxies(); return len(p) == 1 && p[0].Synced })

	// A new version adds a cluster and its endpoints; listeners and routes
	// are unchanged, keep version 1 and are not re-sent.
	if err := s.Update(input("v1", "v2")); err != nil {
		t.Fatal(err)
	}
	if s.Version() != "2" {
		t.Fatalf("Version() = %q, want 2", s.Version())
	}
	eventually(t, "the change", func() bool {
		return c.version(resource.ClusterType) == "2" && c.version(resource.EndpointType) == "2"
	})
	if got, want := c.resources(resource.EndpointType), []string{"reviews", "reviews|v1", "reviews|v2"}; !slices.Equal(got, want) {
		t.Errorf("endpoints = %v, want %v", got, want)
	}
	if c.version(resource.ListenerType) != "1" {
		t.Errorf("listeners re-sent for an endpoint-only change: version %q", c.version(resource.ListenerType))
	}
	eventually(t, "synced after change", func() bool { p := s.Proxies(); return len(p) == 1 && p[0].Synced })

	p := s.Proxies()[0]
	if p.ID != "reviews-1" || p.Role != meshxds.RoleSidecar || p.Service != "reviews" || p.Version != "v1" ||
		p.Address != "10.1.2.3" || p.Port != 15006 || p.Zone != "zone-a" || p.Streams != 1 || p.ConnectedSince.IsZero() {
		t.Errorf("proxy status = %+v", p)
	}
	if got := p.Types[resource.ClusterType].Acked; got != "2" {
		t.Errorf("CDS acked = %q, want 2", got)
	}
}

func TestUnchangedInputPublishesNothing(t *testing.T) {
	s, _ := startServer(t, nil)
	if err := s.Update(input("v1")); err != nil {
		t.Fatal(err)
	}
	if err := s.Update(input("v1")); err != nil {
		t.Fatal(err)
	}
	if s.Version() != "1" {
		t.Errorf("Version() = %q after an unchanged update, want 1", s.Version())
	}
}

func TestNACKShowsInProxies(t *testing.T) {
	s, addr := startServer(t, nil)
	if err := s.Update(input("v1")); err != nil {
		t.Fatal(err)
	}
	c := newSotwClient(t, dial(t, addr), sidecar(t, "reviews-1", "reviews", "v1", 15006), nil)
	eventually(t, "CDS 1", func() bool { return c.version(resource.ClusterType) == "1" })

	c.nack(resource.ClusterType, "cluster reviews|v2: bad config")
	if err := s.Update(input("v1", "v2")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "NACK recorded", func() bool {
		p := s.Proxies()
		return len(p) == 1 && p[0].Types[resource.ClusterType].NackErr != ""
	})
	p := s.Proxies()[0]
	ts := p.Types[resource.ClusterType]
	if ts.Nacked != "2" || ts.NackErr != "cluster reviews|v2: bad config" || ts.Acked != "1" || ts.NackedAt.IsZero() {
		t.Errorf("CDS status = %+v", ts)
	}
	if p.Synced {
		t.Error("a node that rejected the current clusters is reported synced")
	}

	// The rejected version is not resent (no NACK loop) ...
	before := c.responses(resource.ClusterType)
	time.Sleep(100 * time.Millisecond)
	if n := c.responses(resource.ClusterType) - before; n != 0 {
		t.Errorf("rejected clusters resent %d times", n)
	}
	// ... but the next config is sent, and accepted.
	if err := s.Update(input("v1", "v3")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the fix accepted", func() bool { p := s.Proxies(); return len(p) == 1 && p[0].Synced })
	if got := s.Proxies()[0].Types[resource.ClusterType].Acked; got != "3" {
		t.Errorf("CDS acked %q after the fix, want 3", got)
	}
}

func TestDeltaReceivesConfigAndChanges(t *testing.T) {
	s, addr := startServer(t, nil)
	if err := s.Update(input("v1")); err != nil {
		t.Fatal(err)
	}
	c := newDeltaClient(t, dial(t, addr), node(t, "gw", map[string]any{meshxds.MetaRole: meshxds.RoleGateway}))
	eventually(t, "delta resources", func() bool {
		return slices.Equal(c.names(resource.ClusterType), []string{"reviews", "reviews|v1"}) &&
			slices.Equal(c.names(resource.EndpointType), []string{"reviews", "reviews|v1"}) &&
			slices.Equal(c.names(resource.ListenerType), []string{meshxds.ListenerGateway, meshxds.ListenerOutbound}) &&
			slices.Equal(c.names(resource.RouteType), []string{meshxds.RouteConfigMesh})
	})
	eventually(t, "delta synced", func() bool { p := s.Proxies(); return len(p) == 1 && p[0].Synced })

	// v1 replaced by v2: a cluster added, one removed.
	if err := s.Update(input("v2")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "delta change", func() bool {
		return slices.Equal(c.names(resource.ClusterType), []string{"reviews", "reviews|v2"}) &&
			slices.Equal(c.names(resource.EndpointType), []string{"reviews", "reviews|v2"})
	})
	eventually(t, "delta ACK of version 2", func() bool {
		p := s.Proxies()
		return len(p) == 1 && p[0].Types[resource.ClusterType].Acked == "2" && p[0].Synced
	})
}

// fakeRegistrar records Register and deregister calls.
type fakeRegistrar struct {
	mu     sync.Mutex
	active map[string]api.Instance
}

func (f *fakeRegistrar) Register(_ context.Context, inst api.Instance) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.active[inst.ID] = inst
	return func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.active, inst.ID)
	}, nil
}

func (f *fakeRegistrar) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.active)
}

// An ADS stream never registers an instance: membership has its own
// stream, so config trouble cannot take an instance out of the mesh.
func TestADSStreamDoesNotRegister(t *testing.T) {
	reg := &fakeRegistrar{active: map[string]api.Instance{}}
	s, addr := startServer(t, reg)
	if err := s.Update(input("v1")); err != nil {
		t.Fatal(err)
	}
	c := newSotwClient(t, dial(t, addr), sidecar(t, "reviews-1", "reviews", "v1", "15006"), nil)
	eventually(t, "config", func() bool { return c.version(resource.ClusterType) != "" })
	if n := reg.count(); n != 0 {
		t.Fatalf("the ADS stream registered %d instances", n)
	}
	// The membership service is served on the same port.
	mc := membership.NewClient(membership.ClientConfig{Addr: addr,
		Instance: api.Instance{ID: "reviews-1", Service: "reviews", Version: "v1", Address: "127.0.0.1", Port: 15006}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go mc.Run(ctx)
	mc.SetReady(true)
	eventually(t, "registered over the membership stream", func() bool { return reg.count() == 1 })
	if m := s.Members(); len(m) != 1 || m[0].ID != "reviews-1" {
		t.Errorf("members = %v", m)
	}
}

// A sidecar that NACKs, and whose ADS stream then breaks with an error,
// stays registered: its membership stream, on the same connection, is
// untouched. (Registration used to ride on the ADS stream, and config
// trouble deregistered every instance.)
func TestNACKAndBrokenADSStreamKeepRegistration(t *testing.T) {
	reg := &fakeRegistrar{active: map[string]api.Instance{}}
	s, addr := startServer(t, reg)
	if err := s.Update(input("v1")); err != nil {
		t.Fatal(err)
	}
	conn := dial(t, addr)
	joined, err := membership.Join(conn, membership.Announcement{Ready: true,
		Instance: api.Instance{ID: "reviews-1", Service: "reviews", Version: "v1", Address: "127.0.0.1", Port: 15006}})
	if err != nil {
		t.Fatal(err)
	}
	defer joined.Close()
	c := newSotwClient(t, conn, sidecar(t, "reviews-1", "reviews", "v1", 15006), nil)
	eventually(t, "CDS 1", func() bool { return c.version(resource.ClusterType) == "1" })

	c.nack(resource.ClusterType, "cluster reviews|v2: bad config")
	if err := s.Update(input("v1", "v2")); err != nil {
		t.Fatal(err)
	}
	eventually(t, "NACK recorded", func() bool {
		p := s.Proxies()
		return len(p) == 1 && p[0].Types[resource.ClusterType].NackErr != ""
	})
	c.cancel() // the ADS stream ends with an error, as after a response over the limit
	eventually(t, "ADS stream gone", func() bool { return len(s.Proxies()) == 0 })
	if n := reg.count(); n != 1 || joined.Err() != nil {
		t.Fatalf("after a NACK and a broken ADS stream: %d registered, membership %v", n, joined.Err())
	}
	joined.Close()
	eventually(t, "deregistered when the membership stream ends", func() bool { return reg.count() == 0 })
}

// A second connection claiming a live node id is refused; the first keeps
// its stream and status, and the id is free once the first is gone.
func TestSecondConnectionForLiveNodeRefused(t *testing.T) {
	s, addr := startServer(t, nil)
	if err := s.Update(input("v1")); err != nil {
		t.Fatal(err)
	}
	firstConn := dial(t, addr)
	newSotwClient(t, firstConn, sidecar(t, "reviews-1", "reviews", "v1", 15006), nil)
	eventually(t, "first connected", func() bool { return len(s.Proxies()) == 1 })
	firstPeer := s.Proxies()[0].Peer

	thief := newSotwClient(t, dial(t, addr), sidecar(t, "reviews-1", "reviews", "v1", 6666), nil)
	eventually(t, "second refused", func() bool { return thief.err() != nil })
	if code := status.Code(thief.err()); code != codes.AlreadyExists {
		t.Fatalf("second stream ended with %v, want AlreadyExists", thief.err())
	}
	if p := s.Proxies(); len(p) != 1 || p[0].Peer != firstPeer || p[0].Port != 15006 || p[0].Streams != 1 {
		t.Fatalf("proxies after the refused takeover: %+v", p)
	}

	// A second stream on the first's own connection is the same process.
	newDeltaClient(t, firstConn, sidecar(t, "reviews-1", "reviews", "v1", 15006))
	eventually(t, "second stream of the same connection", func() bool { p := s.Proxies(); return len(p) == 1 && p[0].Streams == 2 })

	firstConn.Close()
	eventually(t, "first gone", func() bool { return len(s.Proxies()) == 0 })
	again := newSotwClient(t, dial(t, addr), sidecar(t, "reviews-1", "reviews", "v1", 6666), nil)
	eventually(t, "the id is free again", func() bool { p := s.Proxies(); return len(p) == 1 && p[0].Port == 6666 })
	if again.err() != nil {
		t.Fatal(again.err())
	}
}

func TestReadMetaAddressFallsBackToPeer(t *testing.T) {
	n := node(t, "x", map[string]any{meshxds.MetaService: "s", meshxds.MetaPort: 8080})
	m := readMeta(n.Metadata, "192.0.2.7:51234")
	if m.address != "192.0.2.7" {
		t.Errorf("address = %q", m.address)
	}
}

func TestReadPort(t *testing.T) {
	n := sidecar(t, "x", "s", "v", 8080.0)
	if got := readPort(n.Metadata.Fields[meshxds.MetaPort]); got != 8080 {
		t.Errorf("number: %d", got)
	}
	for _, bad := range []any{"http", 0, -1, 70000, 80.5, true} {
		n := sidecar(t, "x", "s", "v", bad)
		if got := readPort(n.Metadata.Fields[meshxds.MetaPort]); got != 0 {
			t.Errorf("%v: got %d, want 0", bad, got)
		}
	}
}
