package e2e

import (
	"trellis.dev/trellis/internal/testutil"

	"context"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

func instanceIDs(t *testing.T, cp *controlPlane, service string) []string {
	t.Helper()
	is, err := cp.client().Instances(context.Background())
	if err != nil {
		return nil
	}
	var ids []string
	for _, i := range is {
		if i.Service == service {
			ids = append(ids, i.Version)
		}
	}
	return ids
}

func TestInstanceLeavesWhenKilledOrStopped(t *testing.T) {
	t.Parallel()
	cp := startControl(t, "")
	a := startPod(t, cp.xds, "ratings", "v1")
	b := startPod(t, cp.xds, "ratings", "v2")
	c := startPod(t, cp.xds, "ratings", "v3")
	gw := startGateway(t, cp.xds)
	mc := viaGateway(gw)
	testutil.Eventually(t, 5*time.Second, "three instances", func() bool { return len(instanceIDs(t, cp, "ratings")) == 3 })
	testutil.Eventually(t, 5*time.Second, "three endpoints at the gateway", func() bool {
		return gatewayHasEndpoint(t, gw, a.inbound) && gatewayHasEndpoint(t, gw, b.inbound) && gatewayHasEndpoint(t, gw, c.inbound)
	})

	// kill -9 the whole pod: its sidecar and app die without a word.
	a.kill()
	killed := time.Now()
	testutil.Eventually(t, 10*time.Second, "killed instance out of routing", func() bool {
		for i := 0; i < 30; i++ {
			code, v, _, err := mc.get("ratings", "/", nil)
			if err != nil || code != 200 || v == "v1" {
				return false
			}
		}
		return true
	})
	// The requests above pass as soon as a refused connect to v1 falls
	// back to another instance, before any config changed: wait for the
	// gateway to drop v1's endpoint, which follows the registry.
	testutil.Eventually(t, 10*time.Second, "killed instance's endpoint gone from the gateway", func() bool {
		return !gatewayHasEndpoint(t, gw, a.inbound)
	})
	t.Logf("killed instance left routing after %s", time.Since(killed).Round(time.Millisecond))
	if ids := instanceIDs(t, cp, "ratings"); len(ids) != 2 {
		t.Fatalf("registry after kill: %v", ids)
	}

	// A clean stop (SIGTERM to trellis run) deregisters at once.
	b.stop()
	if got := b.cmd.ProcessState.ExitCode(); got != 0 && got != 143 {
		t.Fatalf("pod exit code %d", got)
	}
	testutil.Eventually(t, 2*time.Second, "stopped instance deregistered", func() bool {
		ids := instanceIDs(t, cp, "ratings")
		return len(ids) == 1 && ids[0] == "v3"
	})
	// The registry is the control plane's view; the gateway follows it
	// one xDS push later. Until then it may still choose v2, whose sidecar
	// answered 503 upstream_connect_failed while it outlived its app.
	testutil.Eventually(t, 5*time.Second, "stopped instance's endpoint gone from the gateway", func() bool {
		return !gatewayHasEndpoint(t, gw, b.inbound)
	})
	if got := mc.split(t, "ratings", "/", nil, 50); got["v3"] != 50 {
		t.Fatalf("only v3 left, got %v", got)
	}
	// With no instance and no Route, the service is gone from the mesh.
	c.stop()
	testutil.Eventually(t, 5*time.Second, "service gone", func() bool {
		code, _, merr, _ := mc.get("ratings", "/", nil)
		return code == 404 && merr == "no_route"
	})
	// A Route keeps the service known: its traffic has nowhere to go.
	apply(t, cp, "apiVersion: trellis.dev/v1alpha1\nkind: Route\nmetadata: {name: ratings}\nspec: {service: ratings, rules: [{version: v3, weight: 100}]}\n")
	testutil.Eventually(t, 5*time.Second, "no healthy upstream", func() bool {
		code, _, merr, _ := mc.get("ratings", "/", nil)
		return code == 503 && merr == "no_healthy_upstream"
	})
}

func TestProxyKeepsConfigWhileControlPlaneIsDown(t *testing.T) {
	t.Parallel()
	// The control plane comes back on the same ports: not ones the kernel
	// chose for :0, which it may give to another listener while they are
	// free (see freePort).
	cp := startControl(t, "", "--http-addr", "127.0.0.1:"+strconv.Itoa(freePort(t)), "--xds-addr", "127.0.0.1:"+strconv.Itoa(freePort(t)))
	startPod(t, cp.xds, "reviews", "v1")
	startPod(t, cp.xds, "reviews", "v2")
	startPod(t, cp.xds, "reviews", "v3")
	gw := startGateway(t, cp.xds)
	mc := viaGateway(gw)
	apply(t, cp, canaryRoute)
	testutil.Eventually(t, 5*time.Second, "route applied", func() bool {
		_, v, _, _ := mc.get("reviews", "/", map[string]string{"gray": "1"})
		return v == "v3"
	})

	cp.stop()
	// Everything still routes by the last config.
	if got := mc.split(t, "reviews", "/", map[string]string{"gray": "1"}, 50); got["v3"] != 50 {
		t.Fatalf("with the control plane down, header rule: got %v", got)
	}
	counts := mc.split(t, "reviews", "/", nil, 400)
	if counts["v3"] != 0 || counts["v1"] < counts["v2"] {
		t.Fatalf("with the control plane down, split: got %v", counts)
	}

	// Restart on the same data dir and ports: the Route survived, proxies
	// reconnect and take a change.
	cp2 := startControl(t, cp.dataDir, "--http-addr", cp.http, "--xds-addr", cp.xds)
	out, _, code := trellisCLI(t, "", "get", "routes", "--server", cp2.http)
	if code != 0 || !strings.Contains(out, "reviews") {
		t.Fatalf("Route lost across restart:\n%s", out)
	}
	testutil.Eventually(t, 15*time.Second, "pods re-registered", func() bool { return len(instanceIDs(t, cp2, "reviews")) == 3 })
	apply(t, cp2, strings.Replace(strings.Replace(canaryRoute, "weight: 80", "weight: 0", 1), "weight: 20", "weight: 100", 1))
	testutil.Eventually(t, 15*time.Second, "change after reconnect", func() bool {
		got := mc.split(t, "reviews", "/", nil, 20)
		return got["v2"] == 20
	})
}

func TestRunEndsWithTheApp(t *testing.T) {
	t.Parallel()
	cp := startControl(t, "")
	// A job: the app exits 3; trellis run exits 3 and its sidecar is gone.
	job := start(t, "job", "run", "--service", "job", "--control", cp.xds, "--", "sh", "-c",
		`echo "proxy=$HTTP_PROXY service=$TRELLIS_SERVICE version=$TRELLIS_VERSION"; exit 3`)
	if code := job.exitCode(30 * time.Second); code != 3 {
		t.Fatalf("trellis run exit code %d, want 3:\n%s", code, job.output())
	}
	m := job.waitLine(runReady, time.Second)
	if !strings.Contains(job.output(), "proxy=http://"+m[2]+" service=job version=v1") {
		t.Fatalf("app environment:\n%s", job.output())
	}
	if c, err := net.DialTimeout("tcp", m[2], time.Second); err == nil {
		c.Close()
		t.Fatal("sidecar still listening after the app exited")
	}
}

func TestGRPCThroughTwoSidecars(t *testing.T) {
	t.Parallel()
	cp := startControl(t, "")
	startPod(t, cp.xds, "echo", "v2")
	// A stock grpc-go client; trellis run sets only HTTPS_PROXY and friends.
	client := start(t, "grpc-client", "run", "--service", "client", "--control", cp.xds, "--",
		binary, "sample", "grpc-call", "--to", "echo:9000", "--count", "5")
	if code := client.exitCode(60 * time.Second); code != 0 {
		t.Fatalf("grpc client exit %d:\n%s", code, client.output())
	}
	out := client.output()
	for _, want := range []string{`"call":"health"`, `"call":"unary"`, `"call":"stream"`, `"call":"chat"`, `"version":"v2"`} {
		if !strings.Contains(out, want) {
			t.Fatalf("grpc output lacks %s:\n%s", want, out)
		}
	}
}

// A pod stopped cleanly (SIGTERM to trellis run) drains: it leaves the mesh
// first and keeps serving while the push without it reaches its peers, and
// only then stops its app. Callers sending all along get no error.
func TestCleanStopDropsNoRequest(t *testing.T) {
	t.Parallel()
	cp := startControl(t, "")
	a := startPod(t, cp.xds, "details", "v1")
	b := startPod(t, cp.xds, "details", "v2")
	gw := startGateway(t, cp.xds)
	testutil.Eventually(t, 5*time.Second, "both instances at the gateway", func() bool {
		return gatewayHasEndpoint(t, gw, a.inbound) && gatewayHasEndpoint(t, gw, b.inbound)
	})

	mc := viaGateway(gw)
	stop := make(chan struct{})
	type result struct {
		ok      int
		failure string
	}
	results := make(chan result, 4)
	for range 4 {
		go func() {
			var r result
			deadline := time.Now().Add(20 * time.Second) // bounds, in case stop never comes
			for n := 0; n < 20000 && time.Now().Before(deadline); n++ {
				select {
				case <-stop:
					results <- r
					return
				default:
				}
				code, v, merr, err := mc.get("details", "/", nil)
				if err != nil || code != 200 {
					if r.failure == "" {
						r.failure = "status " + strconv.Itoa(code) + " " + merr + " from " + v
						if err != nil {
							r.failure = err.Error()
						}
					}
					continue
				}
				r.ok++
				time.Sleep(time.Millisecond)
			}
			results <- r
		}()
	}
	time.Sleep(200 * time.Millisecond) // traffic to both instances first
	a.stop()
	if got := a.cmd.ProcessState.ExitCode(); got != 0 && got != 143 {
		t.Errorf("pod exit code %d", got)
	}
	close(stop)
	total := 0
	for range 4 {
		r := <-results
		if r.failure != "" {
			t.Errorf("a request failed while the pod stopped: %s", r.failure)
		}
		total += r.ok
	}
	if total < 20 {
		t.Errorf("only %d requests went through: the test sent too little to tell", total)
	}
	t.Logf("%d requests while the pod drained and stopped, none failed", total)
	if ids := instanceIDs(t, cp, "details"); len(ids) != 1 || ids[0] != "v2" {
		t.Errorf("registry after the stop: %v", ids)
	}
}
