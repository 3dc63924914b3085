package health

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/testutil"
)

// within bounds every wait for a state change; no test asserts a time.
const within = 20 * time.Second

// healthServer is an HTTP instance whose /healthz fails while failing is
// set; it counts the probes it answered each way.
type healthServer struct {
	*httptest.Server
	failing            atomic.Bool
	passed, failed     atomic.Int64
	lastHost, lastPath atomic.Value
}

func newHealthServer(t *testing.T) *healthServer {
	t.Helper()
	s := &healthServer{}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.lastHost.Store(r.Host)
		s.lastPath.Store(r.URL.RequestURI())
		if r.URL.Path != "/healthz" || r.Header.Get("User-Agent") != UserAgent || r.Method != http.MethodGet {
			w.WriteHeader(http.StatusNotFound)
			return
		}
		if s.failing.Load() {
			s.failed.Add(1)
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		s.passed.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *healthServer) addr() string { return s.Listener.Addr().String() }

func httpPolicy() *model.HealthCheckPolicy {
	return &model.HealthCheckPolicy{Kind: model.HealthCheckHTTP, Path: "/healthz?full=1", Host: "reviews",
		ExpectedStatuses: []model.StatusRange{{Start: 200, End: 300}},
		Interval:         10 * time.Millisecond, IntervalJitterPercent: 10, Timeout: 5 * time.Second,
		UnhealthyThreshold: 3, HealthyThreshold: 2}
}

func cluster(name string, p *model.HealthCheckPolicy, addrs ...string) *model.Cluster {
	c := &model.Cluster{Name: name, LB: model.LBPolicy{Kind: model.LBRoundRobin}, HealthCheck: p, MaxRequests: 7}
	for _, a := range addrs {
		c.Endpoints = append(c.Endpoints, model.Endpoint{Address: a, Healthy: true})
	}
	return c
}

func snapshot(cs ...*model.Cluster) *model.Snapshot {
	s := &model.Snapshot{Clusters: map[string]*model.Cluster{}}
	for _, c := range cs {
		s.Clusters[c.Name] = c
	}
	return s
}

func newChecker(t *testing.T, opts Options) *Checker {
	t.Helper()
	c := New(opts)
	t.Cleanup(c.Stop)
	return c
}

// healthyIn lists the addresses View leaves healthy.
func healthyIn(c *Checker, cl *model.Cluster) []string {
	var out []string
	for _, ep := range c.View(cl).Endpoints {
		if ep.Healthy {
			out = append(out, ep.Address)
		}
	}
	return out
}

func only(addrs []string, want string) bool { return len(addrs) == 1 && addrs[0] == want }

func TestHTTPCheckMarksAndRecovers(t *testing.T) {
	good, bad := newHealthServer(t), newHealthServer(t)
	bad.failing.Store(true)
	var failures, unhealthy atomic.Int64
	var failedAtMark atomic.Int64
	c := newChecker(t, Options{
		OnFailure: func(cluster string) {
			if cluster == "reviews|v1" {
				failures.Add(1)
			}
		},
		OnUnhealthy: func(cluster string) {
			unhealthy.Add(1)
			failedAtMark.Store(bad.failed.Load())
		},
	})
	cl := cluster("reviews|v1", httpPolicy(), good.addr(), bad.addr())
	c.Update(snapshot(cl))

	testutil.Eventually(t, within, "the failing endpoint marked unhealthy", func() bool {
		return only(healthyIn(c, cl), good.addr())
	})
	if n := failedAtMark.Load(); n < 3 {
		t.Errorf("marked unhealthy after %d failed probes, want at least the threshold 3", n)
	}
	if unhealthy.Load() != 1 || failures.Load() < 3 {
		t.Errorf("hooks: %d marked unhealthy (want 1), %d failures (want ≥ 3)", unhealthy.Load(), failures.Load())
	}
	v := c.View(cl)
	if v == cl || v != c.View(cl) || v.MaxRequests != 7 || cl.Endpoints[1].Healthy != true {
		t.Errorf("view: a copy made once, every field kept, the snapshot's cluster untouched: %+v", v)
	}
	if h, p := good.lastHost.Load(), good.lastPath.Load(); h != "reviews" || p != "/healthz?full=1" {
		t.Errorf("probe sent Host %v path %v, want reviews and /healthz?full=1", h, p)
	}
	st := c.Status()["reviews|v1"]
	if len(st) != 2 || st[0].Address > st[1].Address {
		t.Fatalf("status %+v", st)
	}
	for _, s := range st {
		if s.Address == bad.addr() && (s.Healthy || !strings.Contains(s.LastError, "answered 503") || s.ConsecutiveFailures < 3) {
			t.Errorf("status of the failing endpoint: %+v", s)
		}
	}

	bad.failing.Store(false)
	testutil.Eventually(t, within, "the endpoint healthy again", func() bool { return c.View(cl) == cl })
	if n := bad.passed.Load(); n < 2 {
		t.Errorf("healthy again after %d passed probes, want at least the threshold 2", n)
	}
}

func TestNewEndpointsStartHealthy(t *testing.T) {
	bad := newHealthServer(t)
	bad.failing.Store(true)
	c := newChecker(t, Options{})
	p := httpPolicy()
	p.Interval = time.Hour // at most one probe during the test: below the threshold
	cl := cluster("reviews", p, bad.addr(), "127.0.0.1:1")
	c.Update(snapshot(cl))
	if got := c.View(cl); got != cl {
		t.Fatalf("new endpoints are not all healthy: %+v", got.Endpoints)
	}
	for _, s := range c.Status()["reviews"] {
		if !s.Healthy {
			t.Fatalf("status %+v", s)
		}
	}
}

func TestAllUnhealthyIsPanic(t *testing.T) {
	a, b := newHealthServer(t), newHealthServer(t)
	a.failing.Store(true)
	b.failing.Store(true)
	c := newChecker(t, Options{})
	cl := cluster("reviews", httpPolicy(), a.addr(), b.addr())
	c.Update(snapshot(cl))
	testutil.Eventually(t, within, "both marked unhealthy", func() bool {
		n := 0
		for _, s := range c.Status()["reviews"] {
			if !s.Healthy {
				n++
			}
		}
		return n == 2
	})
	if got := c.View(cl); got != cl {
		t.Fatalf("every endpoint unhealthy: View should be the cluster itself, got %+v", got.Endpoints)
	}
}

// grpcHealth serves grpc.health.v1 on a loopback port with service's
// status set to st.
func grpcHealth(t *testing.T, service string, st healthpb.HealthCheckResponse_ServingStatus) (*grpchealth.Server, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := grpchealth.NewServer()
	hs.SetServingStatus(service, st)
	healthpb.RegisterHealthServer(srv, hs)
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return hs, lis.Addr().String()
}

func TestGRPCCheck(t *testing.T) {
	const svc = "trellis.sample.Echo"
	hs, bad := grpcHealth(t, svc, healthpb.HealthCheckResponse_NOT_SERVING)
	_, good := grpcHealth(t, svc, healthpb.HealthCheckResponse_SERVING)
	c := newChecker(t, Options{})
	p := &model.HealthCheckPolicy{Kind: model.HealthCheckGRPC, GRPCService: svc,
		Interval: 10 * time.Millisecond, Timeout: 5 * time.Second, UnhealthyThreshold: 2, HealthyThreshold: 1}
	// The cluster's name is no valid authority: the address is sent.
	cl := cluster("echo|v1", p, bad, good)
	c.Update(snapshot(cl))
	testutil.Eventually(t, within, "NOT_SERVING marked unhealthy", func() bool {
		return only(healthyIn(c, cl), good)
	})
	for _, s := range c.Status()["echo|v1"] {
		if s.Address == bad && !strings.Contains(s.LastError, "NOT_SERVING") {
			t.Errorf("status %+v, want the NOT_SERVING answer", s)
		}
	}
	hs.SetServingStatus(svc, healthpb.HealthCheckResponse_SERVING)
	testutil.Eventually(t, within, "SERVING healthy again", func() bool { return c.View(cl) == cl })

	// An unknown service is a failure (NotFound), as in Envoy.
	p2 := *p
	p2.GRPCService = "other"
	cl2 := cluster("echo|v1", &p2, bad, good)
	c.Update(snapshot(cl2))
	testutil.Eventually(t, within, "unknown service: failing", func() bool {
		for _, s := range c.Status()["echo|v1"] {
			if strings.Contains(s.LastError, "NotFound") {
				return true
			}
		}
		return false
	})
}

func TestTCPCheck(t *testing.T) {
	up, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	down, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	downAddr := down.Addr().String()
	down.Close() // connections to it are refused

	c := newChecker(t, Options{})
	p := &model.HealthCheckPolicy{Kind: model.HealthCheckTCP, Interval: 10 * time.Millisecond, Timeout: 5 * time.Second,
		UnhealthyThreshold: 1, HealthyThreshold: 1}
	cl := cluster("db", p, up.Addr().String(), downAddr)
	c.Update(snapshot(cl))
	testutil.Eventually(t, within, "the closed port marked unhealthy", func() bool {
		return only(healthyIn(c, cl), up.Addr().String())
	})
	again, err := net.Listen("tcp", downAddr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", downAddr, err)
	}
	defer again.Close()
	testutil.Eventually(t, within, "listening again: healthy", func() bool { return c.View(cl) == cl })
}

func TestDroppedEndpointsAndClusters(t *testing.T) {
	a, b, other := newHealthServer(t), newHealthServer(t), newHealthServer(t)
	b.failing.Store(true)
	c := newChecker(t, Options{})
	cl := cluster("reviews", httpPolicy(), a.addr(), b.addr())
	keep := cluster("ratings", httpPolicy(), other.addr())
	c.Update(snapshot(cl, keep))
	testutil.Eventually(t, within, "b unhealthy", func() bool { return only(healthyIn(c, cl), a.addr()) })

	// b leaves the cluster: its state goes; a later return starts healthy.
	cl2 := cluster("reviews", httpPolicy(), a.addr())
	c.Update(snapshot(cl2, keep))
	if st := c.Status()["reviews"]; len(st) != 1 || st[0].Address != a.addr() {
		t.Fatalf("status after b left: %+v", st)
	}
	cl3 := cluster("reviews", httpPolicy(), a.addr(), b.addr())
	c.Update(snapshot(cl3, keep))
	if c.View(cl3) != cl3 {
		t.Fatalf("b came back unhealthy: its state outlived its removal")
	}

	// The cluster leaves: nothing of it is probed any more. Once the
	// remaining cluster has been probed several more times, a and b have
	// seen at most the one probe that was in flight.
	c.Update(snapshot(keep))
	if _, ok := c.Status()["reviews"]; ok {
		t.Fatalf("status still lists the dropped cluster")
	}
	seenA, seenB := a.passed.Load(), b.failed.Load()
	base := other.passed.Load()
	testutil.Eventually(t, within, "the other cluster probed 10 more times", func() bool { return other.passed.Load() >= base+10 })
	if da, db := a.passed.Load()-seenA, b.failed.Load()-seenB; da > 1 || db > 1 {
		t.Errorf("dropped endpoints still probed: %d and %d more probes", da, db)
	}
	if c.View(cl) != cl {
		t.Errorf("the dropped cluster's view should be itself")
	}
}

func TestPolicyChangeStartsCountsOver(t *testing.T) {
	bad := newHealthServer(t)
	bad.failing.Store(true)
	c := newChecker(t, Options{})
	p := httpPolicy()
	p.UnhealthyThreshold = 1000
	cl := cluster("reviews", p, bad.addr())
	c.Update(snapshot(cl))
	testutil.Eventually(t, within, "some failures counted", func() bool {
		st := c.Status()["reviews"]
		return len(st) == 1 && st[0].ConsecutiveFailures >= 2
	})
	p2 := httpPolicy()
	p2.UnhealthyThreshold, p2.Interval = 1000, time.Hour
	c.Update(snapshot(cluster("reviews", p2, bad.addr())))
	if st := c.Status()["reviews"]; st[0].ConsecutiveFailures > 1 || !st[0].Healthy {
		t.Fatalf("after a changed check, counts start over (one probe may have been in flight): %+v", st)
	}
}

// Probes run on at most Workers goroutines, whatever the number of
// endpoints due at once. The instances count the probes they serve at
// once; a probe ends only after its handler returned, so that count is
// never more than the probes in flight.
func TestWorkersBoundProbes(t *testing.T) {
	var inFlight, most, total atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		total.Add(1)
		time.Sleep(5 * time.Millisecond) // overlap the probes
	})
	var addrs []string
	for range 10 {
		s := httptest.NewServer(h)
		t.Cleanup(s.Close)
		addrs = append(addrs, s.Listener.Addr().String())
	}
	c := newChecker(t, Options{Workers: 2})
	c.Update(snapshot(cluster("slow", httpPolicy(), addrs...)))
	testutil.Eventually(t, within, "50 probes answered", func() bool { return total.Load() >= 50 })
	if m := most.Load(); m > 2 || m < 1 {
		t.Fatalf("%d probes in flight at once with 2 workers", m)
	}
}

func TestStop(t *testing.T) {
	s := newHealthServer(t)
	c := New(Options{})
	cl := cluster("reviews", httpPolicy(), s.addr())
	c.Update(snapshot(cl))
	testutil.Eventually(t, within, "probing", func() bool { return s.passed.Load() > 0 })
	c.Stop() // returns once every goroutine ended
	c.Update(snapshot(cl, cluster("ratings", httpPolicy(), s.addr())))
	if _, ok := c.Status()["ratings"]; ok {
		t.Fatalf("Update after Stop added a cluster")
	}
	New(Options{}).Stop() // never started
}

func TestProbeTimeout(t *testing.T) {
	block := make(chan struct{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	defer s.Close()
	defer close(block)
	p := httpPolicy()
	p.Timeout = 10 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), p.Timeout)
	defer cancel()
	err := probe(ctx, "reviews", s.Listener.Addr().String(), p)
	if err == nil || !strings.Contains(err.Error(), "deadline exceeded") {
		t.Fatalf("err %v, want a deadline", err)
	}
}

func TestHostFor(t *testing.T) {
	for _, tt := range []struct{ host, cluster, want string }{
		{"reviews", "reviews|v1", "reviews"},
		{"", "reviews", "reviews"},
		{"", "reviews|v1", "10.0.0.1:80"},
	} {
		if got := hostFor(&model.HealthCheckPolicy{Host: tt.host}, tt.cluster, "10.0.0.1:80"); got != tt.want {
			t.Errorf("hostFor(%q, %q) = %q, want %q", tt.host, tt.cluster, got, tt.want)
		}
	}
}
