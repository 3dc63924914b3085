package xdsclient

import (
	"runtime"
	"slices"
	"strings"
	"testing"
	"unsafe"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/proxy/model/modeltest"
)

// byName converts resources as decode does, from their wire form.
func byName[T proto.Message](in ...T) map[string]*entry {
	out := map[string]*entry{}
	for _, m := range in {
		wire, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			panic(err)
		}
		out[resourceName(m)] = convert(m, wire)
	}
	return out
}

func TestStateWaitsForEveryType(t *testing.T) {
	mesh := modeltest.Mesh()
	s := newState()
	steps := []struct {
		typ  string
		got  map[string]*entry
		wait []string
	}{
		// No clusters at all is still not "complete" before LDS arrives.
		{resource.ClusterType, byName(mesh.Clusters...), []string{"LDS", "EDS ratings", "EDS reviews|v1", "EDS reviews|v2", "EDS reviews|v3"}},
		{resource.ListenerType, byName(mesh.Listeners...), []string{"RDS mesh", "EDS ratings", "EDS reviews|v1", "EDS reviews|v2", "EDS reviews|v3"}},
		{resource.EndpointType, byName(mesh.Loads[:2]...), []string{"RDS mesh", "EDS reviews|v3", "EDS ratings"}},
		{resource.EndpointType, byName(mesh.Loads[2:]...), []string{"RDS mesh"}},
		{resource.RouteType, byName(mesh.Routes...), nil},
	}
	for i, step := range steps {
		s = s.with(step.typ, "1", step.got)
		snap, waiting, err := s.build()
		if err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		slices.Sort(waiting)
		slices.Sort(step.wait)
		if !slices.Equal(waiting, step.wait) {
			t.Errorf("step %d: waiting %v, want %v", i, waiting, step.wait)
		}
		if (snap != nil) != (len(step.wait) == 0) {
			t.Errorf("step %d: snapshot %v with waiting %v", i, snap != nil, waiting)
		}
	}
	if want := []string{"ratings", "reviews|v1", "reviews|v2", "reviews|v3"}; !slices.Equal(s.names[resource.EndpointType], want) {
		t.Errorf("EDS names %v, want %v", s.names[resource.EndpointType], want)
	}

	// An empty mesh is complete once both wildcard types have answered.
	empty := newState().with(resource.ClusterType, "1", nil).with(resource.ListenerType, "1", nil)
	if snap, waiting, err := empty.build(); snap == nil || err != nil || len(waiting) != 0 {
		t.Errorf("empty mesh: %v %v %v", snap, waiting, err)
	}
}

func TestStateDropsWhatIsNoLongerNamed(t *testing.T) {
	mesh := modeltest.Mesh()
	s := newState().
		with(resource.ClusterType, "1", byName(mesh.Clusters...)).
		with(resource.ListenerType, "1", byName(mesh.Listeners...)).
		with(resource.EndpointType, "1", byName(mesh.Loads...)).
		with(resource.RouteType, "1", byName(mesh.Routes...))
	before := s

	// Listeners move to "mesh-2"; ratings' cluster goes.
	s = s.with(resource.ListenerType, "2", byName(modeltest.Listener("outbound", "mesh-2")))
	s = s.with(resource.ClusterType, "2", byName(mesh.Clusters[:3]...))
	if got := s.names[resource.RouteType]; !slices.Equal(got, []string{"mesh-2"}) {
		t.Errorf("RDS names %v", got)
	}
	if _, ok := s.resources[resource.RouteType]["mesh"]; ok {
		t.Error("route config mesh kept after no listener uses it")
	}
	if _, ok := s.resources[resource.EndpointType]["ratings"]; ok {
		t.Error("load assignment ratings kept after its cluster went")
	}
	if len(s.resources[resource.EndpointType]) != 3 {
		t.Errorf("EDS resources %v", s.resources[resource.EndpointType])
	}
	// The earlier state is untouched: a rejected candidate leaves no trace.
	if len(before.resources[resource.EndpointType]) != 4 || before.names[resource.RouteType][0] != "mesh" {
		t.Error("with changed the state it was called on")
	}
	// Unrequested resources a server sends are not kept.
	s = s.with(resource.EndpointType, "3", byName(modeltest.Load("unrequested", "")))
	if _, ok := s.resources[resource.EndpointType]["unrequested"]; ok {
		t.Error("unrequested load assignment kept")
	}
}

func TestStateEqual(t *testing.T) {
	mesh := modeltest.Mesh()
	a := newState().with(resource.ClusterType, "1", byName(mesh.Clusters...))
	b := newState().with(resource.ClusterType, "1", byName(mesh.Clone().Clusters...))
	if !a.equal(b) {
		t.Error("same resources, same version: not equal")
	}
	if a.equal(newState().with(resource.ClusterType, "2", byName(mesh.Clusters...))) {
		t.Error("different versions: equal")
	}
	changed := mesh.Clone()
	changed.Clusters[0].AltStatName = "x"
	if a.equal(newState().with(resource.ClusterType, "1", byName(changed.Clusters...))) {
		t.Error("different resources: equal")
	}
}

func TestDecode(t *testing.T) {
	mesh := modeltest.Mesh()
	l0, _ := anypb.New(mesh.Listeners[0])
	c0, _ := anypb.New(mesh.Clusters[0])
	wrapped, _ := anypb.New(&discoveryv3.Resource{Name: "outbound", Resource: l0})
	empty, _ := anypb.New(&discoveryv3.Resource{Name: "outbound"})
	nameless, _ := anypb.New(&corev3.Node{})
	nameless.TypeUrl = resource.ListenerType
	for _, tt := range []struct {
		name    string
		typ     string
		res     []*anypb.Any
		want    []string
		wantErr string
	}{
		{"plain", resource.ListenerType, []*anypb.Any{l0}, []string{"outbound"}, ""},
		{"TTL envelope", resource.ListenerType, []*anypb.Any{wrapped}, []string{"outbound"}, ""},
		{"heartbeat", resource.ListenerType, []*anypb.Any{empty}, nil, `resources[0]: resource "outbound" without a body`},
		{"wrong type", resource.ListenerType, []*anypb.Any{l0, c0}, nil, `resources[1]: type "type.googleapis.com/envoy.config.cluster.v3.Cluster" in a response of type "type.googleapis.com/envoy.config.listener.v3.Listener"`},
		{"duplicate", resource.ListenerType, []*anypb.Any{l0, wrapped}, nil, `resources[1]: duplicate resource "outbound"`},
		{"no name", resource.ListenerType, []*anypb.Any{nameless}, nil, `resources[0]: resource without a name`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decode(&discoveryv3.DiscoveryResponse{TypeUrl: tt.typ, Resources: tt.res})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for n := range got {
				names = append(names, n)
			}
			if !slices.Equal(names, tt.want) {
				t.Errorf("names %v, want %v", names, tt.want)
			}
		})
	}
}

// The endpoints of one response share their strings: an instance is in its
// service's load assignment and in its version's.
func TestDecodeSharesEndpointStrings(t *testing.T) {
	ep := modeltest.Endpoint("10.0.0.1", 9080, "v1", "reviews-v1-0", corev3.HealthStatus_HEALTHY)
	all, _ := anypb.New(modeltest.Load("reviews", "zone-a", ep))
	v1, _ := anypb.New(modeltest.Load("reviews|v1", "zone-a", ep))
	got, err := decode(&discoveryv3.DiscoveryResponse{TypeUrl: resource.EndpointType, Resources: []*anypb.Any{all, v1}})
	if err != nil {
		t.Fatal(err)
	}
	a, b := got["reviews"].endpoints[0], got["reviews|v1"].endpoints[0]
	if a != b {
		t.Fatalf("endpoints differ: %+v, %+v", a, b)
	}
	for _, s := range [][2]string{{a.Address, b.Address}, {a.Zone, b.Zone}, {a.Version, b.Version}, {a.Instance, b.Instance}} {
		if unsafe.StringData(s[0]) != unsafe.StringData(s[1]) {
			t.Errorf("%q is two strings", s[0])
		}
	}
}

// The error a NACK carries is model.Build's: the first resource that does
// not convert, in Build's order of types, by name; a resource nothing
// subscribes to is dropped, not reported.
func TestStateReportsBuildsFirstError(t *testing.T) {
	mesh := modeltest.Mesh()
	bad := func(name string) *clusterv3.Cluster {
		c := modeltest.EDSCluster(name)
		c.LbPolicy = clusterv3.Cluster_MAGLEV // unsupported
		return c
	}
	s := newState().
		with(resource.ListenerType, "1", byName(mesh.Listeners...)).
		with(resource.RouteType, "1", byName(mesh.Routes...)).
		with(resource.ClusterType, "1", byName(append(mesh.Clusters, bad("zz"), bad("aa"))...))
	_, _, err := s.build()
	if err == nil || !strings.HasPrefix(err.Error(), `cluster "aa": lb_policy`) {
		t.Fatalf("error %v, want cluster aa's", err)
	}
	// What the client did before it kept converted resources: Build over
	// the resources sorted by name.
	clusters := append(mesh.Clusters, bad("zz"), bad("aa"))
	slices.SortFunc(clusters, func(a, b *clusterv3.Cluster) int { return strings.Compare(a.Name, b.Name) })
	want, wantErr := model.Build(nil, mesh.Listeners, mesh.Routes, clusters, mesh.Loads)
	if want != nil || wantErr == nil || wantErr.Error() != err.Error() {
		t.Fatalf("model.Build says %v, the state %v", wantErr, err)
	}

	ok := newState().
		with(resource.ListenerType, "1", byName(mesh.Listeners...)).
		with(resource.RouteType, "1", byName(mesh.Routes...)).
		with(resource.ClusterType, "1", byName(mesh.Clusters...)).
		with(resource.EndpointType, "1", byName(mesh.Loads...))
	badLoad := modeltest.Load("unrequested", "", modeltest.Endpoint("not-an-ip", 1, "", "", 0))
	if _, _, err := ok.with(resource.EndpointType, "2", byName(badLoad)).build(); err != nil {
		t.Fatalf("an unrequested, invalid load assignment was reported: %v", err)
	}
}

// BenchmarkStateScale measures what the client keeps for a mesh of 1,000
// services (modeltest.Scale: 2 versions, 2 instances each), received as
// four SotW responses: its state (converted resources) and the snapshot
// assembled from it. state-MB is their live heap after a GC; B/op and
// allocs/op are those of decoding and assembling everything once.
//
//	go test ./internal/proxy/xdsclient -run XXX -bench StateScale -benchtime 5x
func BenchmarkStateScale(b *testing.B) {
	mesh := modeltest.Scale(1000, 2, 2)
	responses := []*discoveryv3.DiscoveryResponse{
		response(b, resource.ClusterType, mesh.Clusters),
		response(b, resource.ListenerType, mesh.Listeners),
		response(b, resource.EndpointType, mesh.Loads),
		response(b, resource.RouteType, mesh.Routes),
	}
	var live uint64
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		before := liveHeap()
		b.StartTimer()
		s := newState()
		for _, resp := range responses {
			got, err := decode(resp)
			if err != nil {
				b.Fatal(err)
			}
			s = s.with(resp.GetTypeUrl(), "1", got)
		}
		snap, waiting, err := s.build()
		if err != nil || snap == nil {
			b.Fatal(err, waiting)
		}
		b.StopTimer()
		live += liveHeap() - before
		runtime.KeepAlive(s)
		runtime.KeepAlive(snap)
		b.StartTimer()
	}
	b.ReportMetric(float64(live)/float64(b.N)/(1<<20), "state-MB")
}

func response[M proto.Message](b *testing.B, typeURL string, msgs []M) *discoveryv3.DiscoveryResponse {
	resp := &discoveryv3.DiscoveryResponse{TypeUrl: typeURL, VersionInfo: "1"}
	for _, m := range msgs {
		a, err := anypb.New(m)
		if err != nil {
			b.Fatal(err)
		}
		resp.Resources = append(resp.Resources, a)
	}
	return resp
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
