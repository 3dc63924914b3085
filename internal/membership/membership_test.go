package membership

import (
	"context"
	"errors"
	"maps"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/testutil"
)

// fakeRegistrar records what is registered, by instance ID.
type fakeRegistrar struct {
	mu     sync.Mutex
	active map[string]api.Instance
	events []string
	fail   error
}

func newFake() *fakeRegistrar { return &fakeRegistrar{active: map[string]api.Instance{}} }

func (f *fakeRegistrar) Register(_ context.Context, inst api.Instance) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return nil, f.fail
	}
	f.active[inst.ID] = inst
	f.events = append(f.events, "+"+inst.ID)
	var once sync.Once
	return func() {
		once.Do(func() {
			f.mu.Lock()
			defer f.mu.Unlock()
			delete(f.active, inst.ID)
			f.events = append(f.events, "-"+inst.ID)
		})
	}, nil
}

func (f *fakeRegistrar) get() map[string]api.Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.active)
}

func startServer(t *testing.T, reg Registrar) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	s := NewServer(reg, nil)
	s.Attach(g)
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	return s, ln.Addr().String()
}

func runClient(t *testing.T, addr string, inst api.Instance) (*Client, context.CancelFunc, <-chan struct{}) {
	t.Helper()
	c := NewClient(ClientConfig{Addr: addr, Instance: inst})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return c, cancel, done
}

func instance(id string) api.Instance {
	return api.Instance{ID: id, Service: "reviews", Version: "v1", Address: "127.0.0.1", Port: 9080}
}

func TestReadyRegistersAndNotReadyDeregisters(t *testing.T) {
	reg := newFake()
	_, addr := startServer(t, reg)
	c, cancel, done := runClient(t, addr, instance("a"))

	testutil.Eventually(t, 5*time.Second, "connected, announcing not ready", func() bool {
		st := c.Status()
		return st.Connected && !st.Registered
	})
	if got := reg.get(); len(got) != 0 {
		t.Fatalf("registered before the app is ready: %v", got)
	}
	c.SetReady(true)
	testutil.Eventually(t, 5*time.Second, "registered", func() bool { return c.Status().Registered })
	if got := reg.get()["a"]; got != instance("a") {
		t.Fatalf("registered %+v, want %+v", got, instance("a"))
	}
	c.SetReady(false)
	testutil.Eventually(t, 5*time.Second, "deregistered", func() bool { return !c.Status().Registered })
	if got := reg.get(); len(got) != 0 {
		t.Fatalf("still registered after not ready: %v", got)
	}
	c.SetReady(true)
	testutil.Eventually(t, 5*time.Second, "registered again", func() bool { return len(reg.get()) == 1 })
	cancel()
	<-done
	testutil.Eventually(t, 5*time.Second, "stream end deregisters", func() bool { return len(reg.get()) == 0 })
}

func TestLeaveWaitsForDeregistration(t *testing.T) {
	reg := newFake()
	_, addr := startServer(t, reg)
	c, _, _ := runClient(t, addr, instance("a"))
	c.SetReady(true)
	testutil.Eventually(t, 5*time.Second, "registered", func() bool { return c.Status().Registered })

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.Leave(ctx)
	if len(reg.get()) != 0 {
		t.Fatalf("Leave returned with the instance still registered")
	}
	c.SetReady(true) // a prober still running must not bring it back
	time.Sleep(100 * time.Millisecond)
	if st := c.Status(); st.Ready || len(reg.get()) != 0 {
		t.Fatalf("ready again after Leave: %+v", st)
	}
}

func TestSecondStreamForLiveIDIsRefused(t *testing.T) {
	reg := newFake()
	srv, addr := startServer(t, reg)
	first, cancelFirst, firstDone := runClient(t, addr, instance("a"))
	first.SetReady(true)
	testutil.Eventually(t, 5*time.Second, "first registered", func() bool { return first.Status().Registered })

	thief := instance("a")
	thief.Port = 6666
	second, _, _ := runClient(t, addr, thief)
	second.SetReady(true)
	testutil.Eventually(t, 5*time.Second, "second refused", func() bool {
		return strings.Contains(second.Status().LastError, "AlreadyExists")
	})
	if got := reg.get()["a"]; got.Port != 9080 {
		t.Fatalf("the second stream took over the registration: %+v", got)
	}
	if ms := srv.Members(); len(ms) != 1 || ms[0].Registered == nil || ms[0].Registered.Port != 9080 {
		t.Fatalf("members = %v", ms)
	}

	// Once the first leaves, the ID is free again.
	cancelFirst()
	<-firstDone
	testutil.Eventually(t, 40*time.Second, "second registered after the first left", func() bool {
		return reg.get()["a"].Port == 6666
	})
}

func TestBadRegistrationRefused(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(*api.Instance)
		reason string
	}{
		{"address not an IP", func(i *api.Instance) { i.Address = "not-an-ip" }, `address: "not-an-ip" is not an IP address`},
		{"unspecified address", func(i *api.Instance) { i.Address = "0.0.0.0" }, "address: 0.0.0.0 cannot be reached"},
		{"port out of range", func(i *api.Instance) { i.Port = 0 }, "port: 0 out of range"},
		{"bad service", func(i *api.Instance) { i.Service = "Bad_Service" }, "service:"},
		{"bad zone", func(i *api.Instance) { i.Zone = "zone with spaces" }, "zone:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := newFake()
			_, addr := startServer(t, reg)
			inst := instance("bad")
			tt.edit(&inst)
			c, _, _ := runClient(t, addr, inst)
			c.SetReady(true)
			testutil.Eventually(t, 5*time.Second, "refused", func() bool {
				return strings.Contains(c.Status().LastError, tt.reason)
			})
			if got := reg.get(); len(got) != 0 {
				t.Fatalf("registered a bad instance: %v", got)
			}
		})
	}
}

func TestAddressDefaultsToPeer(t *testing.T) {
	reg := newFake()
	_, addr := startServer(t, reg)
	inst := instance("a")
	inst.Address = ""
	c, _, _ := runClient(t, addr, inst)
	c.SetReady(true)
	testutil.Eventually(t, 5*time.Second, "registered", func() bool { return c.Status().Registered })
	if got := reg.get()["a"].Address; got != "127.0.0.1" {
		t.Fatalf("address = %q, want the peer's 127.0.0.1", got)
	}
}

func TestRegistrarFailureRetried(t *testing.T) {
	reg := newFake()
	reg.fail = errors.New("etcd unavailable")
	_, addr := startServer(t, reg)
	c, _, _ := runClient(t, addr, instance("a"))
	c.SetReady(true)
	testutil.Eventually(t, 5*time.Second, "failure reported", func() bool {
		return strings.Contains(c.Status().LastError, "etcd unavailable")
	})
	reg.mu.Lock()
	reg.fail = nil
	reg.mu.Unlock()
	testutil.Eventually(t, 15*time.Second, "registered after the registrar recovers", func() bool {
		return c.Status().Registered && len(reg.get()) == 1
	})
}

// After Keep (the control plane is stopping), a stream that ends leaves its
// instance registered for the next control plane.
func TestKeepLeavesRegistrationsWhenStreamsEnd(t *testing.T) {
	reg := newFake()
	srv, addr := startServer(t, reg)
	c, cancel, done := runClient(t, addr, instance("a"))
	c.SetReady(true)
	testutil.Eventually(t, 5*time.Second, "registered", func() bool { return len(reg.get()) == 1 })
	srv.Keep()
	cancel()
	<-done
	testutil.Eventually(t, 5*time.Second, "stream gone", func() bool { return len(srv.Members()) == 0 })
	if got := reg.get(); len(got) != 1 {
		t.Fatalf("after Keep, a stream's end deregistered: %v", got)
	}
}

// A stream that flaps ready and not ready as fast as it can changes the
// registry at most once per minChangeInterval; its last word still wins.
func TestFlappingIsSlowedDown(t *testing.T) {
	reg := newFake()
	_, addr := startServer(t, reg)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stream, err := conn.NewStream(ctx, joinStreamDesc, joinMethod)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	const flips = 11 // ends ready
	for i := range flips {
		if err := stream.SendMsg(Announcement{Instance: instance("flap"), Ready: i%2 == 0}.node()); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(3 * minChangeInterval / 2)
	reg.mu.Lock()
	changes := len(reg.events)
	reg.mu.Unlock()
	// However slow the machine, no more than one change per interval
	// since the first (elapsed time only loosens this bound).
	if bound := 1 + int(time.Since(start)/minChangeInterval); changes > bound {
		t.Fatalf("%d registry changes in %s, want at most %d", changes, time.Since(start), bound)
	}
	testutil.Eventually(t, time.Duration(flips+2)*minChangeInterval+5*time.Second, "the last announcement applied", func() bool {
		reg.mu.Lock()
		defer reg.mu.Unlock()
		return len(reg.events) == flips && len(reg.active) == 1
	})
}
