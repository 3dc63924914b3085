package e2e

import (
	"trellis.dev/trellis/internal/testutil"

	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// startEtcd runs a real single-node etcd in the test process on free
// loopback ports: the "external cluster" a VM deployment would use.
func startEtcd(t *testing.T) string {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = t.TempDir()
	cfg.LogLevel = "error"
	client, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(freePort(t)))
	peer, _ := url.Parse("http://127.0.0.1:" + strconv.Itoa(freePort(t)))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.InitialCluster = cfg.Name + "=" + peer.String()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		t.Fatal("etcd did not start")
	}
	return client.String()
}

// Two control planes on one external etcd share resources and instances,
// and the data outlives both of them.
func TestExternalEtcd(t *testing.T) {
	t.Parallel()
	etcd := startEtcd(t)
	a := startControl(t, "", "--etcd", etcd)
	b := startControl(t, "", "--etcd", etcd)
	startPod(t, a.xds, "reviews", "v1")
	startPod(t, b.xds, "reviews", "v2")
	apply(t, a, canaryRoute)

	// b sees what a stored, and instances registered through either.
	out, _, code := trellisCLI(t, "", "get", "routes", "--server", b.http)
	if code != 0 || !strings.Contains(out, "reviews") {
		t.Fatalf("route applied on a not visible on b:\n%s", out)
	}
	testutil.Eventually(t, 5*time.Second, "both instances on both control planes", func() bool {
		return len(instanceIDs(t, a, "reviews")) == 2 && len(instanceIDs(t, b, "reviews")) == 2
	})
	gw := startGateway(t, b.xds)
	testutil.Eventually(t, 5*time.Second, "split through b", func() bool {
		got := viaGateway(gw).split(t, "reviews", "/", nil, 100)
		return got["v1"] > 50 && got["v2"] > 5
	})

	a.stop()
	b.stop()
	c := startControl(t, "", "--etcd", etcd)
	out, _, code = trellisCLI(t, "", "get", "routes", "reviews", "-o", "json", "--server", c.http)
	if code != 0 || !strings.Contains(out, `"weight": 80`) {
		t.Fatalf("route lost:\n%s", out)
	}
}
