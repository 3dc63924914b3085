package xdsserver

import (
	"bytes"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/translate"
)

// wireInputs are the translator's golden-file inputs (every shape of
// resource it makes) and the benchmark mesh.
func wireInputs(t *testing.T) map[string]translate.Input {
	t.Helper()
	paths, err := filepath.Glob("../translate/testdata/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no translator testdata: %v", err)
	}
	ins := map[string]translate.Input{"bench": benchInput(0)}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var tc struct {
			Routes          []api.Route         `json:"routes"`
			TrafficPolicies []api.TrafficPolicy `json:"trafficPolicies"`
			Instances       []api.Instance      `json:"instances"`
		}
		if err := yaml.UnmarshalStrict(data, &tc); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		ins[filepath.Base(p)] = translate.Input{Routes: tc.Routes, TrafficPolicies: tc.TrafficPolicies, Instances: tc.Instances}
	}
	return ins
}

func decodedSnapshot(t *testing.T, in translate.Input) *cache.Snapshot {
	t.Helper()
	out, err := translate.Translate(in)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := cache.NewSnapshot("1", out.Resources())
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// The stand-ins go on the wire exactly as the resources would.
func TestEncodedSnapshotSendsTheSameBytes(t *testing.T) {
	for name, in := range wireInputs(t) {
		t.Run(name, func(t *testing.T) {
			decoded := decodedSnapshot(t, in)
			enc, err := encodeSnapshot(decoded)
			if err != nil {
				t.Fatal(err)
			}
			for _, typ := range allTypes {
				if got, want := enc.GetVersion(typ), decoded.GetVersion(typ); got != want {
					t.Errorf("%s version %q, want %q", typ, got, want)
				}
				orig, got := decoded.GetResourcesAndTTL(typ), enc.GetResourcesAndTTL(typ)
				if len(got) != len(orig) {
					t.Fatalf("%s: %d resources, want %d", typ, len(got), len(orig))
				}
				for rname, r := range orig {
					e := got[rname].Resource
					if e == r.Resource {
						t.Errorf("%s %q was not pre-encoded", typ, rname)
					}
					if n := cache.GetResourceName(e); n != rname {
						t.Errorf("%s %q: stand-in named %q", typ, rname, n)
					}
					want, _ := cache.MarshalResource(r.Resource)
					wire, err := cache.MarshalResource(e)
					if err != nil || !bytes.Equal(wire, want) {
						t.Errorf("%s %q: stand-in encodes differently (%v)", typ, rname, err)
					}
					back := r.Resource.ProtoReflect().New().Interface()
					if err := proto.Unmarshal(wire, back); err != nil || !proto.Equal(back, r.Resource) {
						t.Errorf("%s %q: does not decode to the resource (%v)", typ, rname, err)
					}
				}
			}
			// The delta server's per-resource versions are unchanged too.
			if err := decoded.ConstructVersionMap(); err != nil {
				t.Fatal(err)
			}
			if err := enc.ConstructVersionMap(); err != nil {
				t.Fatal(err)
			}
			for _, typ := range allTypes {
				if !maps.Equal(enc.GetVersionMap(typ), decoded.GetVersionMap(typ)) {
					t.Errorf("%s: delta resource versions differ", typ)
				}
			}
		})
	}
}

// carryVersions compares stand-ins: equal resources stay equal, changed
// ones differ.
func TestEncodedResourcesCompare(t *testing.T) {
	encode := func(in translate.Input) *cache.Snapshot {
		enc, err := encodeSnapshot(decodedSnapshot(t, in))
		if err != nil {
			t.Fatal(err)
		}
		return enc
	}
	a, b, c := encode(benchInput(0)), encode(benchInput(0)), encode(benchInput(1))
	for _, typ := range allTypes {
		if !sameResources(a.GetResourcesAndTTL(typ), b.GetResourcesAndTTL(typ)) {
			t.Errorf("%s: equal inputs compare different", typ)
		}
	}
	if sameResources(a.GetResourcesAndTTL(resource.EndpointType), c.GetResourcesAndTTL(resource.EndpointType)) {
		t.Error("a moved endpoint compares equal")
	}
	if !sameResources(a.GetResourcesAndTTL(resource.ClusterType), c.GetResourcesAndTTL(resource.ClusterType)) {
		t.Error("clusters differ although only an endpoint moved")
	}
}

// A message whose encoding does not start with a name is kept as it is.
func TestEncodeResourceWithoutNameKeepsIt(t *testing.T) {
	var r types.Resource = decodedSnapshot(t, benchInput(0)).GetResources(resource.ClusterType)["svc0"]
	r = proto.Clone(r)
	r.ProtoReflect().Clear(r.ProtoReflect().Descriptor().Fields().ByNumber(1))
	got, err := encodeResource(r)
	if err != nil {
		t.Fatal(err)
	}
	if got != r {
		t.Error("a resource without a name was replaced")
	}
}
