package e2e

import (
	"trellis.dev/trellis/internal/testutil"

	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/translate"
)

// nackRecorder remembers the NACKs proxies send.
type nackRecorder struct {
	server.CallbackFuncs
	mu    sync.Mutex
	nacks []string
}

func (n *nackRecorder) record(req *discovery.DiscoveryRequest) error {
	if req.ErrorDetail != nil {
		n.mu.Lock()
		n.nacks = append(n.nacks, req.ErrorDetail.Message)
		n.mu.Unlock()
	}
	return nil
}

func (n *nackRecorder) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.nacks...)
}

// A resource the proxy cannot use is NACKed with the reason, and the
// proxy keeps serving with its previous config. The control plane never
// publishes such a thing (it validates), so this test serves xDS itself.
func TestProxyNACKsBadConfigAndKeepsTheOld(t *testing.T) {
	t.Parallel()
	// Two real backends: version v1 and v2 of "shop", each behind a real
	// sidecar-less echo app; the gateway forwards to them directly.
	addrs := map[string]string{}
	for _, v := range []string{"v1", "v2"} {
		port := freePort(t)
		start(t, "echo-"+v, "sample", "echo", "--port", strconv.Itoa(port), "--service", "shop", "--version", v)
		addrs[v] = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		testutil.Eventually(t, 10*time.Second, "echo "+v, func() bool { return httpStatus("http://"+addrs[v]+"/") == 200 })
	}
	instances := func() []api.Instance {
		var is []api.Instance
		for v, a := range addrs {
			host, p, _ := net.SplitHostPort(a)
			port, _ := strconv.Atoi(p)
			is = append(is, api.Instance{ID: "shop-" + v, Service: "shop", Version: v, Address: host, Port: port})
		}
		return is
	}()
	weight := func(w1 int) api.Route {
		w2 := 100 - w1
		return api.Route{APIVersion: api.APIVersion, Kind: api.KindRoute, Metadata: api.Metadata{Name: "shop"},
			Spec: api.RouteSpec{Service: "shop", Rules: []api.RouteRule{{Version: "v1", Weight: &w1}, {Version: "v2", Weight: &w2}}}}
	}

	rec := &nackRecorder{}
	rec.StreamRequestFunc = func(_ int64, req *discovery.DiscoveryRequest) error { return rec.record(req) }
	snapshots := cache.NewSnapshotCache(true, cache.IDHash{}, nil)
	srv := server.NewServer(context.Background(), snapshots, rec)
	gs := grpc.NewServer()
	discovery.RegisterAggregatedDiscoveryServiceServer(gs, srv)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)

	// The gateway's node id is generated: set the first snapshot once it
	// has connected.
	good, err := translate.Translate(translate.Input{Routes: []api.Route{weight(100)}, Instances: instances})
	if err != nil {
		t.Fatal(err)
	}
	goodSnap, _ := cache.NewSnapshot("1", good.Resources())
	gw := start(t, "gateway", "gateway", "--listen", "127.0.0.1:0", "--control", lis.Addr().String())
	m := gw.waitLine(gatewayReady, 30*time.Second)
	gwAddr, admin := m[1], m[2]
	testutil.Eventually(t, 10*time.Second, "gateway connected", func() bool { return len(snapshots.GetStatusKeys()) > 0 })
	node := snapshots.GetStatusKeys()[0]
	if err := snapshots.SetSnapshot(context.Background(), node, goodSnap); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "gateway ready", func() bool { return httpStatus("http://"+admin+"/ready") == 200 })
	// No sidecar here adds x-trellis-version: read the version the echo
	// app reports in its body.
	mc := &meshClient{http: &http.Client{Timeout: 5 * time.Second}, base: "http://" + gwAddr, bodyVersion: true}
	if got := mc.split(t, "shop", "/", nil, 20); got["v1"] != 20 {
		t.Fatalf("good config: want all v1, got %v", got)
	}

	// Version 2: the route table has a regex Go cannot compile, and the
	// split moves to v2. The proxy must refuse all of it.
	bad, _ := translate.Translate(translate.Input{Routes: []api.Route{weight(0)}, Instances: instances})
	vh := bad.Routes[0].VirtualHosts[0]
	vh.Routes[0].Match.Headers = []*routev3.HeaderMatcher{{
		Name: "x-broken",
		HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
			MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "(unclosed"}},
		}},
	}}
	badSnap, _ := cache.NewSnapshot("2", bad.Resources())
	if err := snapshots.SetSnapshot(context.Background(), node, badSnap); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "NACK received", func() bool {
		for _, n := range rec.all() {
			if strings.Contains(n, "(unclosed") {
				return true
			}
		}
		return false
	})
	if got := mc.split(t, "shop", "/", nil, 20); got["v1"] != 20 {
		t.Fatalf("after a NACK the old config must stay: want all v1, got %v", got)
	}
	dump := configDump(t, admin)
	if !strings.Contains(dump, "(unclosed") {
		t.Fatalf("config_dump does not show the NACK:\n%s", dump)
	}

	// Version 3 is good again and is taken.
	fixed, _ := translate.Translate(translate.Input{Routes: []api.Route{weight(0)}, Instances: instances})
	fixedSnap, _ := cache.NewSnapshot("3", fixed.Resources())
	if err := snapshots.SetSnapshot(context.Background(), node, fixedSnap); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "fixed config applied", func() bool {
		got := mc.split(t, "shop", "/", nil, 10)
		return got["v2"] == 10
	})
}

func configDump(t *testing.T, admin string) string {
	t.Helper()
	resp, err := http.Get("http://" + admin + "/config_dump")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("config_dump is not JSON: %v\n%s", err, b)
	}
	return string(b)
}
