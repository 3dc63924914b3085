package registry

import (
	"trellis.dev/trellis/internal/testutil"

	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
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

// leasesOf counts the instance keys of one service by lease, and returns
// the lease of each ID.
func leasesOf(t *testing.T, service string) (map[clientv3.LeaseID]int, map[string]clientv3.LeaseID) {
	t.Helper()
	resp, err := st.Client().Get(t.Context(), store.InstanceKey(service, ""), clientv3.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	count := map[clientv3.LeaseID]int{}
	byID := map[string]clientv3.LeaseID{}
	for _, kv := range resp.Kvs {
		count[clientv3.LeaseID(kv.Lease)]++
		byID[path.Base(string(kv.Key))] = clientv3.LeaseID(kv.Lease)
	}
	return count, byID
}

// leaseAlive says whether etcd still has the lease.
func leaseAlive(t *testing.T, id clientv3.LeaseID) bool {
	t.Helper()
	resp, err := st.Client().TimeToLive(t.Context(), id)
	if err != nil {
		t.Fatal(err)
	}
	return resp.TTL > 0
}

// logRecorder is a slog.Handler keeping level and message of each record.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, rec)
	return nil
}

// count is the number of records at level whose message starts with msg.
func (l *logRecorder) count(level slog.Level, msg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, rec := range l.records {
		if rec.Level == level && strings.HasPrefix(rec.Message, msg) {
			n++
		}
	}
	return n
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
	// One lease for all three: the registry's.
	lease := r.LeaseID()
	if lease == 0 {
		t.Fatal("no lease after Register")
	}
	for _, k := range [][2]string{{"reviews", "reviews-1"}, {"reviews", "reviews-2"}, {"ratings", "a-1"}} {
		if got := leaseOf(t, k[0], k[1]); got != lease {
			t.Errorf("%s/%s is on lease %x, want the registry's %x", k[0], k[1], got, lease)
		}
	}
	if n := r.Held(); n != 3 {
		t.Errorf("Held = %d, want 3", n)
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
	if !has(t, "reviews", "reviews-2") || !has(t, "ratings", "a-1") {
		t.Error("deregistering one instance removed others (the shared lease must stay)")
	}
	dereg2() // idempotent
	if n := r.Held(); n != 2 {
		t.Errorf("Held = %d after one deregister, want 2", n)
	}
	dereg1()
	dereg3()
	if got := append(ids(t, "reviews"), ids(t, "ratings")...); len(got) != 0 {
		t.Errorf("left after deregistering everything: %v", got)
	}
	if n := r.Held(); n != 0 {
		t.Errorf("Held = %d after deregistering everything, want 0", n)
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

// If etcd loses the registry's lease, the registry grants a new one and
// writes every instance it holds again under it: 250 instances, so the
// re-put takes several transactions (etcd allows 128 operations in one).
// Done twice, to see the second loss handled like the first.
func TestLeaseLostIsRegrantedAndPutAgain(t *testing.T) {
	t.Parallel()
	logs := &logRecorder{}
	r := New(newClient(t), time.Second, slog.New(logs))
	t.Cleanup(r.Close)
	const n = 250
	deregs := make([]func(), n)
	for i := range n {
		dereg, err := r.Register(t.Context(), inst(fmt.Sprintf("phoenix-%03d", i), "phoenix", "v1"))
		if err != nil {
			t.Fatal(err)
		}
		deregs[i] = dereg
	}
	for round := 1; round <= 2; round++ {
		old := r.LeaseID()
		if _, err := st.Client().Revoke(t.Context(), old); err != nil {
			t.Fatal(err)
		}
		var lease clientv3.LeaseID
		took := testutil.Eventually(t, 10*time.Second, "every instance written again under one new lease", func() bool {
			lease = r.LeaseID()
			if lease == 0 || lease == old {
				return false
			}
			onIt, _ := leasesOf(t, "phoenix")
			return onIt[lease] == n && len(onIt) == 1
		})
		t.Logf("round %d: %d instances back on lease %x after %s", round, n, lease, took.Round(10*time.Millisecond))
		if got := r.Held(); got != n {
			t.Errorf("Held = %d, want %d", got, n)
		}
		if got := logs.count(slog.LevelWarn, "registry lease lost"); got != round {
			t.Errorf("lease-lost warnings after %d losses: %d, want one per loss", round, got)
		}
	}
	deregs[0]()
	if has(t, "phoenix", "phoenix-000") {
		t.Error("instance still listed after deregister")
	}
	if got := len(ids(t, "phoenix")); got != n-1 {
		t.Errorf("after one deregister: %d listed, want %d", got, n-1)
	}
	r.Close()
	if got := ids(t, "phoenix"); len(got) != 0 {
		t.Errorf("after Close: %d still listed", len(got))
	}
}

// A Register racing a lost lease (etcd lost it, the keepalive has not
// noticed yet) lands under the new lease, not the dead one.
func TestRegisterWhileLeaseLost(t *testing.T) {
	t.Parallel()
	r := newRegistry(t, time.Second)
	if _, err := r.Register(t.Context(), inst("race-1", "race", "v1")); err != nil {
		t.Fatal(err)
	}
	old := r.LeaseID()
	if _, err := st.Client().Revoke(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Register(t.Context(), inst("race-2", "race", "v1")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "both instances on the registry's new lease", func() bool {
		onIt, _ := leasesOf(t, "race")
		lease := r.LeaseID()
		return lease != 0 && lease != old && onIt[lease] == 2 && len(onIt) == 1
	})
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

// A deregister deletes the instance's key only if it is still the one
// this registration wrote: never a newer registration of the same ID, here
// or on another control plane.
func TestDeregisterRemovesOnlyItsOwnKey(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// after registers the ID again (or deletes it) after the first
		// registration; it returns the version expected to stay listed
		// once the first registration's deregister runs ("" for none).
		after func(t *testing.T, r *Registry, in api.Instance) string
	}{
		{"replaced here", func(t *testing.T, r *Registry, in api.Instance) string {
			in.Version = "v2"
			if _, err := r.Register(t.Context(), in); err != nil {
				t.Fatal(err)
			}
			return "v2"
		}},
		{"taken over by another control plane", func(t *testing.T, _ *Registry, in api.Instance) string {
			in.Version = "v3"
			if _, err := newRegistry(t, time.Second).Register(t.Context(), in); err != nil {
				t.Fatal(err)
			}
			return "v3"
		}},
		{"force-deleted", func(t *testing.T, r *Registry, in api.Instance) string {
			if err := r.Delete(t.Context(), in.ID); err != nil {
				t.Fatal(err)
			}
			return ""
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			service := "own-" + strings.ReplaceAll(tc.name, " ", "-")
			r := newRegistry(t, time.Second)
			in := inst(service+"-1", service, "v1")
			dereg, err := r.Register(t.Context(), in)
			if err != nil {
				t.Fatal(err)
			}
			// A neighbour on the same lease, which no deregister may touch.
			if _, err := r.Register(t.Context(), inst(service+"-2", service, "v1")); err != nil {
				t.Fatal(err)
			}
			want := tc.after(t, r, in)
			dereg()
			dereg()
			list := listOf(t, r, service)
			var got string
			for _, i := range list {
				if i.ID == in.ID {
					got = i.Version
				}
			}
			if got != want {
				t.Errorf("after the first registration's deregister: %+v, want %s at version %q", list, in.ID, want)
			}
			if !has(t, service, service+"-2") {
				t.Error("the neighbour on the shared lease was removed")
			}
		})
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
	lease := r.LeaseID()
	r.Close()
	if got := ids(t, "closing"); len(got) != 0 {
		t.Errorf("after Close (TTL 5 s, so not expiry): %v", got)
	}
	if leaseAlive(t, lease) {
		t.Errorf("lease %x still alive after Close", lease)
	}
	if r.LeaseID() != 0 || r.Held() != 0 {
		t.Errorf("after Close: LeaseID %x, Held %d; want 0, 0", r.LeaseID(), r.Held())
	}
	if _, err := r.Register(t.Context(), inst("c-3", "closing", "v1")); !errors.Is(err, ErrClosed) {
		t.Errorf("register after Close: err = %v", err)
	}
}

// Release leaves every instance in etcd under the unrenewed lease, for a
// next control plane to take over, and they expire with the TTL; a second
// registry writing the same IDs takes them over and they outlive the
// first's lease.
func TestReleaseLeavesInstancesForTheNextControlPlane(t *testing.T) {
	t.Parallel()
	r := New(newClient(t), 2*time.Second, discard())
	var deregs []func()
	for _, id := range []string{"r-1", "r-2", "r-3"} {
		d, err := r.Register(t.Context(), inst(id, "releasing", "v1"))
		if err != nil {
			t.Fatal(err)
		}
		deregs = append(deregs, d)
	}
	lease := r.LeaseID()
	r.Release()
	for _, d := range deregs {
		d() // the streams end as the control plane stops: no effect
	}
	if got := ids(t, "releasing"); len(got) != 3 {
		t.Fatalf("after Release: %v, want all three still there", got)
	}
	if !leaseAlive(t, lease) {
		t.Fatalf("lease %x revoked by Release", lease)
	}

	// The next control plane: two of the three sidecars register again.
	next := New(newClient(t), 5*time.Second, discard())
	t.Cleanup(next.Close)
	for _, id := range []string{"r-1", "r-2"} {
		if _, err := next.Register(t.Context(), inst(id, "releasing", "v1")); err != nil {
			t.Fatal(err)
		}
	}
	// The released lease expires: only the one nobody registered again goes.
	testutil.Eventually(t, 10*time.Second, "the released lease expired", func() bool { return !leaseAlive(t, lease) })
	testutil.Eventually(t, 5*time.Second, "r-3 gone with it", func() bool { return len(ids(t, "releasing")) == 2 })
	if got := ids(t, "releasing"); !slices.Equal(got, []string{"r-1", "r-2"}) {
		t.Errorf("after the released lease expired: %v, want r-1 r-2", got)
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

// New does not talk to etcd, and a registry closed before any Register
// never grants a lease: not even with a client that cannot reach etcd.
func TestNewAndCloseWithoutRegister(t *testing.T) {
	t.Parallel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:1"}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	start := time.Now()
	r := New(cli, 0, discard())
	if r.LeaseID() != 0 || r.Held() != 0 {
		t.Errorf("new registry: LeaseID %x, Held %d", r.LeaseID(), r.Held())
	}
	r.Close()
	if d := time.Since(start); d > time.Second {
		t.Errorf("New and Close took %s", d)
	}
	if _, err := r.Register(t.Context(), inst("never-1", "never", "v1")); !errors.Is(err, ErrClosed) {
		t.Errorf("register after Close: err = %v", err)
	}
}

// Register's ctx bounds the wait for the first lease when etcd does not
// answer.
func TestRegisterWithoutEtcdEndsWithCtx(t *testing.T) {
	t.Parallel()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:1"}, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	r := New(cli, 0, discard())
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if _, err := r.Register(ctx, inst("nowhere-1", "nowhere", "v1")); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("register with etcd unreachable: err = %v, want DeadlineExceeded", err)
	}
	if r.Held() != 0 {
		t.Errorf("Held = %d", r.Held())
	}
}

// Registrations, replacements and deregistrations racing two losses of the
// lease end with etcd holding exactly the instances still registered, each
// at its last version, all on the registry's current lease.
func TestChurnAcrossLostLeases(t *testing.T) {
	t.Parallel()
	r := newRegistry(t, time.Second)
	const ids, workers, ops = 60, 6, 60
	type state struct {
		mu      sync.Mutex
		dereg   func()
		version string // "" when not registered
	}
	states := make([]state, ids)
	id := func(i int) string { return fmt.Sprintf("churn-%02d", i) }

	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for op := range ops {
				i := (w*7 + op*13) % ids
				s := &states[i]
				s.mu.Lock()
				if op%3 == 2 && s.dereg != nil {
					s.dereg()
					s.dereg, s.version = nil, ""
				} else {
					v := fmt.Sprintf("v%d", op)
					dereg, err := r.Register(t.Context(), inst(id(i), "churn", v))
					if err != nil {
						t.Error(err)
					} else {
						s.dereg, s.version = dereg, v
					}
				}
				s.mu.Unlock()
			}
		})
	}
	wg.Go(func() {
		for range 2 {
			time.Sleep(150 * time.Millisecond)
			if lease := r.LeaseID(); lease != 0 {
				// The registry may not have noticed the last revoke yet and
				// still names that lease: revoking it again is no error.
				if _, err := st.Client().Revoke(t.Context(), lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
					t.Error(err)
				}
			}
		}
	})
	wg.Wait()

	want := map[string]string{}
	for i := range states {
		if v := states[i].version; v != "" {
			want[id(i)] = v
		}
	}
	testutil.Eventually(t, 10*time.Second, "etcd matches what is registered, on the current lease", func() bool {
		lease := r.LeaseID()
		onIt, _ := leasesOf(t, "churn")
		if lease == 0 || onIt[lease] != len(want) || len(onIt) != 1 && len(want) > 0 {
			return false
		}
		list := listOf(t, r, "churn")
		if len(list) != len(want) {
			return false
		}
		for _, in := range list {
			if want[in.ID] != in.Version {
				return false
			}
		}
		return true
	})
	if got := r.Held(); got != len(want) {
		t.Errorf("Held = %d, want %d", got, len(want))
	}
}

// The point of the shared lease (issue 8, item 7): 4,000 instances — what
// 2,000 proxies bring to a control plane — are kept alive by one lease.
// Not parallel, so that no other test grants leases meanwhile.
func TestFourThousandInstancesOneLease(t *testing.T) {
	before, err := st.Client().Leases(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	r := newRegistry(t, DefaultTTL)
	const n, workers = 4000, 256
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				if _, err := r.Register(t.Context(), inst(fmt.Sprintf("many-%04d", i), "many", "v1")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d registrations in %s", n, time.Since(start).Round(time.Millisecond))
	if t.Failed() {
		return
	}
	after, err := st.Client().Leases(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// Leases of earlier tests may still be expiring, hence "at most one more".
	if d := len(after.Leases) - len(before.Leases); d > 1 {
		t.Errorf("%d registrations granted %d leases, want 1", n, d)
	}
	lease := r.LeaseID()
	onIt, _ := leasesOf(t, "many")
	if onIt[lease] != n || len(onIt) != 1 {
		t.Errorf("instances by lease: %v, want all %d on the registry's %x", onIt, n, lease)
	}
	if got := r.Held(); got != n {
		t.Errorf("Held = %d, want %d", got, n)
	}
	r.Close()
	if got := len(ids(t, "many")); got != 0 {
		t.Errorf("after Close: %d still listed", got)
	}
}
