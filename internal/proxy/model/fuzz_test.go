package model_test

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/proxy/model/modeltest"
)

// FuzzConvertRouteConfig: whatever bytes a control plane sends, converting
// them returns a table or an error, never a panic (a panic would take the
// proxy down instead of NACKing).
func FuzzConvertRouteConfig(f *testing.F) {
	for _, rc := range modeltest.Mesh().Routes {
		f.Add(mustMarshal(f, rc))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		rc := &routev3.RouteConfiguration{}
		if proto.Unmarshal(data, rc) != nil {
			return
		}
		rt, err := model.ConvertRouteConfig(rc)
		if (rt == nil) == (err == nil) {
			t.Fatalf("got table %v and error %v, want exactly one", rt, err)
		}
	})
}

// FuzzBuild replaces one resource of the sample mesh with fuzzed bytes
// (kind picks which type) and builds.
func FuzzBuild(f *testing.F) {
	mesh := modeltest.Mesh()
	f.Add(uint8(0), mustMarshal(f, mesh.Listeners[0]))
	f.Add(uint8(1), mustMarshal(f, mesh.Routes[0]))
	f.Add(uint8(2), mustMarshal(f, mesh.Clusters[0]))
	f.Add(uint8(3), mustMarshal(f, mesh.Loads[2]))
	f.Fuzz(func(t *testing.T, kind uint8, data []byte) {
		r := mesh.Clone()
		var err error
		switch kind % 4 {
		case 0:
			m := &listenerv3.Listener{}
			err = proto.Unmarshal(data, m)
			r.Listeners[0] = m
		case 1:
			m := &routev3.RouteConfiguration{}
			err = proto.Unmarshal(data, m)
			r.Routes[0] = m
		case 2:
			m := &clusterv3.Cluster{}
			err = proto.Unmarshal(data, m)
			r.Clusters[0] = m
		case 3:
			m := &endpointv3.ClusterLoadAssignment{}
			err = proto.Unmarshal(data, m)
			r.Loads[2] = m
		}
		if err != nil {
			return
		}
		snap, err := model.Build(nil, r.Listeners, r.Routes, r.Clusters, r.Loads)
		if (snap == nil) == (err == nil) {
			t.Fatalf("got snapshot %v and error %v, want exactly one", snap, err)
		}
	})
}

func mustMarshal(f *testing.F, m proto.Message) []byte {
	b, err := proto.Marshal(m)
	if err != nil {
		f.Fatal(err)
	}
	return b
}
