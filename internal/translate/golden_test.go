package translate

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"trellis.dev/trellis/internal/api"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// testCase is the shape of testdata/*.yaml.
type testCase struct {
	Routes          []api.Route         `json:"routes"`
	TrafficPolicies []api.TrafficPolicy `json:"trafficPolicies"`
	Instances       []api.Instance      `json:"instances"`
}

func loadCase(t *testing.T, path string) Input {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var tc testCase
	if err := yaml.UnmarshalStrict(data, &tc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return Input(tc)
}

func cases(t *testing.T) []string {
	t.Helper()
	paths, err := filepath.Glob("testdata/*.yaml")
	if err != nil || len(paths) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	return paths
}

// TestGolden translates every testdata/*.yaml and compares the result with
// the neighbouring .golden file. Run with -update to rewrite them, then
// review the diff.
func TestGolden(t *testing.T) {
	for _, path := range cases(t) {
		name := strings.TrimSuffix(filepath.Base(path), ".yaml")
		t.Run(name, func(t *testing.T) {
			out, err := Translate(loadCase(t, path))
			if err != nil {
				t.Fatal(err)
			}
			got := render(t, out)
			golden := strings.TrimSuffix(path, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("output differs from %s (run go test ./internal/translate -update and review the diff)\n--- got:\n%s", golden, got)
			}
		})
	}
}

// TestConsistentSnapshot checks that every case makes a snapshot the xDS
// server would publish: every EDS and RDS resource referenced, and no more.
func TestConsistentSnapshot(t *testing.T) {
	for _, path := range cases(t) {
		out, err := Translate(loadCase(t, path))
		if err != nil {
			t.Fatal(err)
		}
		snap, err := cache.NewSnapshot("1", out.Resources())
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if err := snap.Consistent(); err != nil {
			t.Errorf("%s: %v", path, err)
		}
	}
}

// TestInputOrder checks that the output does not depend on the order the
// store lists routes and instances in.
func TestInputOrder(t *testing.T) {
	for _, path := range cases(t) {
		in := loadCase(t, path)
		want := render(t, mustTranslate(t, in))
		reversed := Input{}
		for i := len(in.Routes) - 1; i >= 0; i-- {
			reversed.Routes = append(reversed.Routes, in.Routes[i])
		}
		for i := len(in.TrafficPolicies) - 1; i >= 0; i-- {
			reversed.TrafficPolicies = append(reversed.TrafficPolicies, in.TrafficPolicies[i])
		}
		for i := len(in.Instances) - 1; i >= 0; i-- {
			reversed.Instances = append(reversed.Instances, in.Instances[i])
		}
		if got := render(t, mustTranslate(t, reversed)); !bytes.Equal(got, want) {
			t.Errorf("%s: output depends on input order", path)
		}
	}
}

func mustTranslate(t *testing.T, in Input) *Output {
	t.Helper()
	out, err := Translate(in)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// render prints out as stable, indented JSON. protojson deliberately
// varies its whitespace between builds, so each resource is compacted and
// the whole document re-indented by encoding/json; map entries and Any
// payloads come out in a fixed order.
func render(t *testing.T, out *Output) []byte {
	t.Helper()
	marshal := func(msgs []proto.Message) []json.RawMessage {
		raws := []json.RawMessage{}
		for _, m := range msgs {
			b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			var c bytes.Buffer
			if err := json.Compact(&c, b); err != nil {
				t.Fatal(err)
			}
			raws = append(raws, c.Bytes())
		}
		return raws
	}
	doc := struct {
		Warnings  []string          `json:"warnings"`
		Listeners []json.RawMessage `json:"listeners"`
		Routes    []json.RawMessage `json:"routes"`
		Clusters  []json.RawMessage `json:"clusters"`
		Endpoints []json.RawMessage `json:"endpoints"`
	}{
		Warnings:  append([]string{}, out.Warnings...),
		Listeners: marshal(asMessages(out.Listeners)),
		Routes:    marshal(asMessages(out.Routes)),
		Clusters:  marshal(asMessages(out.Clusters)),
		Endpoints: marshal(asMessages(out.Endpoints)),
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

func asMessages[M proto.Message](in []M) []proto.Message {
	out := make([]proto.Message, len(in))
	for i, m := range in {
		out[i] = m
	}
	return out
}
