package registry

import (
	"trellis.dev/trellis/internal/testutil"

	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/store"
)

// One embedded etcd for the package (a start costs about a second).
var st *store.Store

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "trellis-registry-test-")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	st, err = store.Open(ctx, store.Config{DataDir: dir, Logger: discard()})
	cancel()
	if err != nil {
		panic(err)
	}
	code := m.Run()
	st.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newClient is a client of its own, so a test can "kill" a control plane by
// closing it without touching the shared store.
func newClient(t *testing.T) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: st.Client().Endpoints(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

func newRegistry(t *testing.T, ttl time.Duration) *Registry {
	t.Helper()
	r := New(newClient(t), ttl, discard())
	t.Cleanup(r.Close)
	return r
}

func inst(id, service, version string) api.Instance {
	return api.Instance{ID: id, Service: service, Version: version, Address: "127.0.0.1", Port: 9000}
}

// ids lists the registered instance IDs of one service as any control plane
// sees them. (Tests run in parallel, each with its own services.)
func ids(t *testing.T, service string) []string {
	t.Helper()
	list, err := New(st.Client(), 0, discard()).List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	out := []string{}
	for _, i := range list {
		if i.Service == service {
			out = append(out, i.ID)
		}
	}
	return out
}

// listOf is r.List restricted to some services, keeping List's order.
func listOf(t *testing.T, r *Registry, services ...string) []api.Instance {
	t.Helper()
	all, err := r.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []api.Instance
	for _, i := range all {
		if slices.Contains(services, i.Service) {
			out = append(out, i)
		}
	}
	return out
}

func has(t *testing.T, service, id string) bool {
	for _, got := range ids(t, service) {
		if got == id {
			return true
		}
	}
	return false
}

func leaseOf(t *testing.T, service, id string) clientv3.LeaseID {
	t.Helper()
	resp, err := st.Client().Get(t.Context(), store.InstanceKey(service, id))
	if err != nil || len(resp.Kvs) == 0 {
		t.Fatalf("instance key %s/%s: %v", service, id, err)
	}
	return clientv3.LeaseID(resp.Kvs[0].Lease)
}

func TestRegisterListDeregister(t *testing.T) {
	t.Parallel()
	r := newRegistry(t, time.Second)
	dereg1, err := r.Register(t.Context(), inst("reviews-2", "reviews", "v2"))
	if err != nil {
		t.Fatal(err)
	}
	dereg2, err := r.Register(t.Context(), inst("reviews-1", "reviews", "v1"))
	if err != nil {
		t.Fatal(err)
	}
	dereg3, err := r.Register(t.Context(), inst("a-1", "ratings", "v1"))
	if err != nil {
		t.Fatal(err)
	}
	list := listOf(t, r, "ratings", "reviews")
	if len(list) != 3 || list[0].ID != "a-1" || list[1].ID != "reviews-1" || list[2] != inst("reviews-2", "reviews", "v2") {
		t.Fatalf("list = %+v, want ratings first, then reviews by id", list)
	}
	if leaseOf(t, "reviews", "reviews-1") == 0 {
		t.Error("instance key has no lease")
	}

	// Kept alive well past the TTL.
	time.Sleep(2500 * time.Millisecond)
	if !has(t, "reviews", "reviews-1") {
		t.Fatal("instance expired although its lease is kept alive")
	}

	// Deregistration takes effect at once, not after the TTL.
	dereg2()
	if has(t, "reviews", "reviews-1") {
		t.Error("instance still listed right after deregister")
	}
	dereg2() // idempotent
	dereg1()
	dereg3()
	if got := append(ids(t, "reviews"), ids(t, "ratings")...); len(got) != 0 {
		t.Errorf("left after deregistering everything: %v", got)
	}
}

// A control plane that dies without deregistering: etcd expires its
// instances within the TTL (etcd's floor makes a 1 s TTL about 2 s).
func TestLeaseExpiresWhenControlPlaneDies(t *testing.T) {
	t.Parallel()
	cli := newClient(t)
	r := New(cli, time.Second, discard())
	if _, err := r.Register(t.Context(), inst("orphan-1", "orphan", "v1")); err != nil {
		t.Fatal(err)
	}
	cli.Close() // no more keepalives, no revoke: a crash as far as etcd can tell
	took := testutil.Eventually(t, 10*time.Second, "orphaned instance expires", func() bool { return !has(t, "orphan", "orphan-1") })
	t.Logf("expired %s after the keepalives stopped", took.Round(10*time.Millisecond))
	start := time.Now()
	r.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("Close with a dead client took %s", d)
	}
}

// If etcd loses the lease while the instance is registered, the registry
// writes it again under a new lease.
func TestLeaseLostIsRegrantedAndPutAgain(t *testing.T) {
	t.Parallel()
	r := newRegistry(t, time.Second)
	dereg, err := r.Register(t.Context(), inst("phoenix-1", "phoenix", "v1"))
	if err != nil {
		t.Fatal(err)
	}
	old := leaseOf(t, "phoenix", "phoenix-1")
	if _, err := st.Client().Revoke(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "instance written again under a new lease", func() bool {
		resp, err := st.Client().Get(t.Context(), store.InstanceKey("phoenix", "phoenix-1"))
		return err == nil && len(resp.Kvs) == 1 && clientv3.LeaseID(resp.Kvs[0].Lease) != old
	})
	dereg()
	if has(t, "phoenix", "phoenix-1") {
		t.Error("instance still listed after deregister")
	}
}

// A sidecar that reconnects registers its ID again before its old stream's
// deregister runs; that late deregister must not remove the new one.
func TestReRegisterSameIDSurvivesOldDeregister(t *testing.T) {
	t.Parallel()
	r := newRegistry(t, time.Second)
	deregOld, err := r.Register(t.Context(), inst("dup-1", "dup", "v1"))
	if err != nil {
		t.Fatal(err)
	}
	deregNew, err := r.Register(t.Context(), inst("dup-1", "dup", "v2"))
	if err != nil {
		t.Fatal(err)
	}
	deregOld()
	list := listOf(t, r, "dup")
	if len(list) != 1 || list[0].Version != "v2" {
		t.Fatalf("after the old deregister: %+v, want dup-1 v2", list)
	}
	deregNew()
	if has(t, "dup", "dup-1") {
		t.Error("still listed after the new deregister")
	}
}

func TestDelete(t *testing.T) {
	t.Parallel()
	r := newRegistry(t, time.Second)
	dereg, err := r.Register(t.Context(), inst("gone-1", "gone", "v1"))
	if err != nil {
		t.Fatal(err)
	}
	other := newRegistry(t, time.Second) // another control plane
	if _, err := other.Register(t.Context(), inst("elsewhere-1", "gone", "v1")); err != nil {
		t.Fatal(err)
	}

	if err := r.Delete(t.Context(), "gone-1"); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete(t.Context(), "elsewhere-1"); err != nil {
		t.Fatal(err)
	}
	if got := ids(t, "gone"); len(got) != 0 {
		t.Fatalf("after force-deregister: %v", got)
	}
	// Neither comes back while its holder keeps renewing.
	time.Sleep(1500 * time.Millisecond)
	if got := ids(t, "gone"); len(got) != 0 {
		t.Fatalf("came back: %v", got)
	}
	dereg() // the stream ending later is harmless

	if err := r.Delete(t.Context(), "nobody"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("delete of an unknown id: err = %v, want ErrNotFound", err)
	}
}

func TestCloseRevokesAll(t *testing.T) {
	t.Parallel()
	r := New(newClient(t), 5*time.Second, discard())
	for _, id := range []string{"c-1", "c-2"} {
		if _, err := r.Register(t.Context(), inst(id, "closing", "v1")); err != nil {
			t.Fatal(err)
		}
	}
	r.Close()
	if got := ids(t, "closing"); len(got) != 0 {
		t.Errorf("after Close (TTL 5 s, so not expiry): %v", got)
	}
	if _, err := r.Register(t.Context(), inst("c-3", "closing", "v1")); !errors.Is(err, ErrClosed) {
		t.Errorf("register after Close: err = %v", err)
	}
}

func TestRegisterRejectsBadInstance(t *testing.T) {
	t.Parallel()
	r := newRegistry(t, time.Second)
	for _, in := range []api.Instance{
		{Service: "s", Version: "v1"},        // no ID
		{ID: "x", Version: "v1"},             // no service
		{ID: "a/b", Service: "s"},            // '/' would change the key
		{ID: "x", Service: "s", Port: 70000}, // port
	} {
		if _, err := r.Register(t.Context(), in); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("register %+v: err = %v, want ErrInvalid", in, err)
		}
	}
	if got := ids(t, "s"); len(got) != 0 {
		t.Errorf("stored: %v", got)
	}
}
