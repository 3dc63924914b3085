package e2e

import (
	"strconv"
	"testing"
	"time"

	"trellis.dev/trellis/internal/testutil"
)

// A control plane restarted gracefully (an upgrade, a config change of its
// own) loses no request: the instances it registered outlive it long
// enough for their sidecars to register again with the new one, so the
// first config the new one pushes still has every endpoint.
func TestControlPlaneRestartLosesNoRequest(t *testing.T) {
	t.Parallel()
	cp := startControl(t, "", "--http-addr", "127.0.0.1:"+strconv.Itoa(freePort(t)), "--xds-addr", "127.0.0.1:"+strconv.Itoa(freePort(t)))
	a := startPod(t, cp.xds, "inventory", "v1")
	b := startPod(t, cp.xds, "inventory", "v2")
	gw := startGateway(t, cp.xds)
	testutil.Eventually(t, 10*time.Second, "both instances at the gateway", func() bool {
		return gatewayHasEndpoint(t, gw, a.inbound) && gatewayHasEndpoint(t, gw, b.inbound)
	})
	load := startLoad(t, viaGateway(gw), "inventory", 3)
	testutil.Eventually(t, 10*time.Second, "load flowing", func() bool { ok, _ := load.counts(); return ok > 20 })

	for i := range 2 {
		cp.stop() // SIGTERM: a clean stop
		time.Sleep(500 * time.Millisecond)
		cp = startControl(t, cp.dataDir, "--http-addr", cp.http, "--xds-addr", cp.xds)
		testutil.Eventually(t, 20*time.Second, "pods registered with the new control plane", func() bool {
			return len(registered(t, cp, "inventory")) == 2 && countLines(cp.proc, joinedLine) == 2
		})
		testutil.Eventually(t, 20*time.Second, "the gateway synced with the new control plane", func() bool {
			return httpStatus("http://"+gw.admin+"/ready") == 200 && gatewayHasEndpoint(t, gw, a.inbound) && gatewayHasEndpoint(t, gw, b.inbound)
		})
		time.Sleep(500 * time.Millisecond)
		t.Logf("restart %d done", i+1)
	}
	load.check(t, "across 2 graceful control-plane restarts", 100)
}
