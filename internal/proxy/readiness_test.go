package proxy

import (
	"context"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"trellis.dev/trellis/internal/freeport"
	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/testutil"
)

func shortReadiness(t *testing.T) {
	fast, period, failures := readyFastPeriod, readyPeriod, readyFailures
	readyFastPeriod, readyPeriod, readyFailures = 10*time.Millisecond, 20*time.Millisecond, 3
	t.Cleanup(func() { readyFastPeriod, readyPeriod, readyFailures = fast, period, failures })
}

func listenLoopback(t *testing.T, port int) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func TestAppProbe(t *testing.T) {
	httpApp := func(status int) string {
		ln := listenLoopback(t, 0)
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/healthz" {
				http.NotFound(w, r)
				return
			}
			if status == http.StatusFound {
				w.Header().Set("Location", "/elsewhere")
			}
			w.WriteHeader(status)
		})}
		go srv.Serve(ln)
		t.Cleanup(func() { srv.Close() })
		return ln.Addr().String()
	}
	grpcApp := func(st healthpb.HealthCheckResponse_ServingStatus) string {
		ln := listenLoopback(t, 0)
		g := grpc.NewServer()
		hs := health.NewServer()
		hs.SetServingStatus("", st)
		healthpb.RegisterHealthServer(g, hs)
		go g.Serve(ln)
		t.Cleanup(g.Stop)
		return ln.Addr().String()
	}
	closedPort, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	closed := net.JoinHostPort("127.0.0.1", strconv.Itoa(closedPort))
	listening := listenLoopback(t, 0).Addr().String()

	tests := []struct {
		name   string
		probe  appProbe
		errHas string // "" means ready
	}{
		{"nothing listening", appProbe{addr: closed}, "not accepting connections"},
		{"listening", appProbe{addr: listening}, ""},
		{"http 200", appProbe{addr: httpApp(200), path: "/healthz"}, ""},
		{"http 302 counts as ready", appProbe{addr: httpApp(302), path: "/healthz"}, ""},
		{"http 503", appProbe{addr: httpApp(503), path: "/healthz"}, "status 503"},
		{"http path missing", appProbe{addr: httpApp(200), path: "/ready"}, "status 404"},
		{"http but nothing listening", appProbe{addr: closed, path: "/healthz"}, "not accepting connections"},
		{"grpc serving", appProbe{addr: grpcApp(healthpb.HealthCheckResponse_SERVING), grpc: true}, ""},
		{"grpc not serving", appProbe{addr: grpcApp(healthpb.HealthCheckResponse_NOT_SERVING), grpc: true}, "NOT_SERVING"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newAppProbe(&Config{AppPort: 1, ReadyPath: tt.probe.path, ReadyGRPC: tt.probe.grpc})
			p.addr = tt.probe.addr
			defer p.close()
			err := p.check(context.Background())
			if tt.errHas == "" {
				if err != nil {
					t.Fatalf("want ready, got %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Fatalf("want error containing %q, got %v", tt.errHas, err)
			}
		})
	}
}

// The sidecar announces its instance ready only once the app listens,
// withdraws it when the app stops answering, and never again after Leave.
func TestSidecarAnnouncesReadyOnlyWhileAppListens(t *testing.T) {
	shortReadiness(t)
	appPort, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	p, _ := startProxy(t, Config{Role: meshxds.RoleSidecar, Service: "reviews", Version: "v1", AppPort: appPort}, snapshot(nil, nil))
	m := p.member.(*fakeMember)
	if m.cfg.Instance.Port == 0 || m.cfg.Instance.Port == appPort || m.cfg.Instance.ID != p.nodeID {
		t.Fatalf("announced instance %+v: want the inbound port and the node id", m.cfg.Instance)
	}

	// Many probes find nothing listening: never announced ready.
	time.Sleep(20 * readyFastPeriod)
	if got := m.changes(); len(got) != 0 {
		t.Fatalf("announced %v before the app listens", got)
	}

	app := listenLoopback(t, appPort)
	testutil.Eventually(t, 5*time.Second, "ready once the app listens", func() bool { return m.Status().Ready })

	app.Close()
	testutil.Eventually(t, 5*time.Second, "not ready once the app stops", func() bool { return !m.Status().Ready })

	listenLoopback(t, appPort)
	testutil.Eventually(t, 5*time.Second, "ready again", func() bool { return m.Status().Ready })

	p.Leave(context.Background())
	time.Sleep(5 * readyPeriod)
	if m.Status().Ready {
		t.Fatal("ready again after Leave")
	}
	if got := m.changes(); !slices.Equal(got, []bool{true, false, true, false}) {
		t.Fatalf("announcements = %v", got)
	}
}

// A gateway and a client-only sidecar register nothing.
func TestNoMembershipWithoutApp(t *testing.T) {
	p, _ := startProxy(t, Config{Role: meshxds.RoleSidecar}, snapshot(nil, nil))
	if p.member != nil {
		t.Fatal("a sidecar without an app has a membership client")
	}
	g, _ := startProxy(t, Config{Role: meshxds.RoleGateway, GatewayAddr: "127.0.0.1:0"}, snapshot(nil, nil))
	if g.member != nil {
		t.Fatal("a gateway has a membership client")
	}
}
