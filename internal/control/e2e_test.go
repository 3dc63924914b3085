package control

import (
	"trellis.dev/trellis/internal/testutil"

	"context"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/membership"
	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/xdsserver"
)

type summaries = struct{ Items []api.ServiceSummary }
type instances = struct{ Items []api.Instance }

// Instances registered through the registry show up in /v1/instances and,
// with the routes, in /v1/services.
func TestInstancesAndServices(t *testing.T) {
	s := sharedServer(t)
	for _, in := range []api.Instance{
		{ID: "reviews-v1-a", Service: "reviews", Version: "v1", Address: "127.0.0.1", Port: 9001},
		{ID: "reviews-v1-b", Service: "reviews", Version: "v1", Address: "127.0.0.1", Port: 9002},
		{ID: "reviews-v2-a", Service: "reviews", Version: "v2", Address: "127.0.0.1", Port: 9003},
		{ID: "ratings-v1-a", Service: "ratings", Version: "v1", Address: "127.0.0.1", Port: 9004},
	} {
		dereg, err := s.Registry().Register(t.Context(), in)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(dereg)
	}
	// The canary also names v3, which has no instance yet.
	decode[map[string]any](t, call(t, s, "POST", "/v1/apply", canary), 200)

	all := decode[instances](t, call(t, s, "GET", "/v1/instances", ""), 200).Items
	if len(all) != 4 || all[0].ID != "ratings-v1-a" || all[3].Port != 9003 {
		t.Errorf("instances = %+v", all)
	}
	some := decode[instances](t, call(t, s, "GET", "/v1/instances?service=reviews", ""), 200).Items
	if len(some) != 3 {
		t.Errorf("instances of reviews = %+v", some)
	}
	none := call(t, s, "GET", "/v1/instances?service=nothing", "")
	if none.status != 200 || !strings.Contains(none.body, `"items": []`) {
		t.Errorf("no instances must be an empty list, got %s", none.body)
	}

	svcs := decode[summaries](t, call(t, s, "GET", "/v1/services", ""), 200).Items
	if len(svcs) != 2 || svcs[0].Name != "ratings" || svcs[1].Name != "reviews" {
		t.Fatalf("services = %+v", svcs)
	}
	rv := decode[api.ServiceSummary](t, call(t, s, "GET", "/v1/services/reviews", ""), 200)
	if rv.Route != "reviews" || rv.Versions["v1"] != 2 || rv.Versions["v2"] != 1 || rv.Versions["v3"] != 0 || len(rv.Versions) != 3 {
		t.Errorf("reviews = %+v, want route reviews, v1:2 v2:1 v3:0", rv)
	}
	if rt := decode[api.ServiceSummary](t, call(t, s, "GET", "/v1/services/ratings", ""), 200); rt.Route != "" || rt.Versions["v1"] != 1 {
		t.Errorf("ratings = %+v", rt)
	}

	// Force-deregister.
	decode[map[string]any](t, call(t, s, "DELETE", "/v1/instances/reviews-v2-a", ""), 200)
	if got := decode[instances](t, call(t, s, "GET", "/v1/instances?service=reviews", ""), 200).Items; len(got) != 2 {
		t.Errorf("after DELETE: %+v", got)
	}
	if a := call(t, s, "DELETE", "/v1/instances/reviews-v2-a", ""); a.status != 404 {
		t.Errorf("second DELETE = %d %s", a.status, a.body)
	}
}

// A sidecar that opens an ADS stream is listed as a proxy; its instance is
// registered by its membership stream announcing it ready (never by the ADS
// stream) and deregistered when that stream ends; config changes reach the
// xDS server well under a second after the API call returns.
func TestSidecarStreamAndPush(t *testing.T) {
	s := sharedServer(t)
	conn, err := grpc.NewClient(s.XDSAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(t.Context())
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	md, _ := structpb.NewStruct(map[string]any{
		meshxds.MetaRole: meshxds.RoleSidecar, meshxds.MetaService: "details", meshxds.MetaVersion: "v1",
		meshxds.MetaAddress: "127.0.0.1", meshxds.MetaPort: 9080,
	})
	err = stream.Send(&discovery.DiscoveryRequest{
		Node:    &core.Node{Id: "details-v1-xyz", Metadata: md},
		TypeUrl: resource.ClusterType,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatalf("first CDS response: %v", err)
	}
	if items := decode[instances](t, call(t, s, "GET", "/v1/instances?service=details", ""), 200).Items; len(items) != 0 {
		t.Fatalf("the ADS stream registered %+v", items)
	}
	joined, err := membership.Join(conn, membership.Announcement{Ready: true,
		Instance: api.Instance{ID: "details-v1-xyz", Service: "details", Version: "v1", Address: "127.0.0.1", Port: 9080}})
	if err != nil {
		t.Fatal(err)
	}

	testutil.Eventually(t, 5*time.Second, "sidecar registered", func() bool {
		items := decode[instances](t, call(t, s, "GET", "/v1/instances?service=details", ""), 200).Items
		return len(items) == 1 && items[0].ID == "details-v1-xyz" && items[0].Port == 9080
	})
	type proxies struct {
		ConfigVersion string
		Items         []xdsserver.ProxyStatus
	}
	p := decode[proxies](t, call(t, s, "GET", "/v1/proxies", ""), 200)
	if p.ConfigVersion == "" || len(p.Items) != 1 || p.Items[0].ID != "details-v1-xyz" {
		t.Errorf("proxies = %+v", p)
	}

	// Push latency: from the apply's answer to a new published version.
	// First let the publish of the registration land (debounceMax at most),
	// so the version change below is the apply's.
	time.Sleep(debounceMax + 50*time.Millisecond)
	before := s.xds.Version()
	start := time.Now()
	decode[map[string]any](t, call(t, s, "POST", "/v1/apply", simpleRoute("details", "default", "v1")), 200)
	testutil.Eventually(t, time.Second, "route published", func() bool { return s.xds.Version() != before })
	t.Logf("apply → published in %s (version %s → %s)", time.Since(start).Round(time.Millisecond), before, s.xds.Version())

	// The membership stream ends (proxy exits): the instance leaves at
	// once, not after the lease TTL.
	joined.Close()
	cancel()
	testutil.Eventually(t, 3*time.Second, "sidecar deregistered", func() bool {
		return len(decode[instances](t, call(t, s, "GET", "/v1/instances?service=details", ""), 200).Items) == 0
	})
}
