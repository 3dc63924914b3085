package model_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/proxy/model"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// input is a testdata/*.json file: xDS resources in protojson, as a control
// plane would publish them.
type input struct {
	Comment   string            `json:"_comment"`
	Versions  map[string]string `json:"versions"`
	Listeners []json.RawMessage `json:"listeners"`
	Routes    []json.RawMessage `json:"routes"`
	Clusters  []json.RawMessage `json:"clusters"`
	Endpoints []json.RawMessage `json:"endpoints"`
}

// TestGolden builds every testdata/*.json and compares the Snapshot (or the
// error) with testdata/*.golden. Run with -update to rewrite the goldens,
// then review the diff.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob("testdata/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".json")
		t.Run(name, func(t *testing.T) {
			got := buildFile(t, file)
			goldenFile := strings.TrimSuffix(file, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(goldenFile, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(goldenFile)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from the output (run go test -update and review the diff):\n%s", goldenFile, got)
			}
		})
	}
}

func buildFile(t *testing.T, file string) []byte {
	t.Helper()
	raw, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var in input
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	snap, err := model.Build(in.Versions,
		decodeAll[*listenerv3.Listener](t, in.Listeners),
		decodeAll[*routev3.RouteConfiguration](t, in.Routes),
		decodeAll[*clusterv3.Cluster](t, in.Clusters),
		decodeAll[*endpointv3.ClusterLoadAssignment](t, in.Endpoints))
	var out any = snap
	if err != nil {
		out = map[string]string{"error": err.Error(), "errorType": fmt.Sprintf("%T", err)}
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func decodeAll[T proto.Message](t *testing.T, raws []json.RawMessage) []T {
	t.Helper()
	out := make([]T, 0, len(raws))
	for _, raw := range raws {
		var zero T
		m := zero.ProtoReflect().New().Interface().(T)
		if err := protojson.Unmarshal(raw, m); err != nil {
			t.Fatalf("decode %T: %v", m, err)
		}
		out = append(out, m)
	}
	return out
}
