package model_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"trellis.dev/trellis/internal/proxy/model"
)

// translatorGoldens are the control plane's translator outputs. Building
// them here checks the contract from the other side: everything the
// translator publishes, the proxy accepts (no NACK) as a complete snapshot.
const translatorGoldens = "../../translate/testdata/*.golden"

func TestTranslatorOutputIsAccepted(t *testing.T) {
	files, _ := filepath.Glob(translatorGoldens)
	if len(files) == 0 {
		t.Skip("no translator goldens found at " + translatorGoldens)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var out struct {
				Listeners []json.RawMessage `json:"listeners"`
				Routes    []json.RawMessage `json:"routes"`
				Clusters  []json.RawMessage `json:"clusters"`
				Endpoints []json.RawMessage `json:"endpoints"`
			}
			if err := json.NewDecoder(bytes.NewReader(raw)).Decode(&out); err != nil {
				t.Fatal(err)
			}
			_, err = model.Build(nil,
				decodeAll[*listenerv3.Listener](t, out.Listeners),
				decodeAll[*routev3.RouteConfiguration](t, out.Routes),
				decodeAll[*clusterv3.Cluster](t, out.Clusters),
				decodeAll[*endpointv3.ClusterLoadAssignment](t, out.Endpoints))
			if err != nil {
				t.Errorf("the proxy would reject the translator's output: %v", err)
			}
		})
	}
}
