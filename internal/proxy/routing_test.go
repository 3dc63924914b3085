package proxy

import (
	"io"
	"net/http"
	"testing"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/model"
)

func TestWeightedSplit(t *testing.T) {
	m := newMesh(t)
	m.client.setSnapshot(m.snapshot(to("reviews|v1", 80, "reviews|v2", 20)))
	c := h1ProxyClient(t, m.client.OutboundAddr())
	const n = 2000
	count := map[string]int{}
	for range n {
		r := do(t, c, newRequest(t, "GET", "http://reviews/w", "", nil))
		if r.code != 200 {
			t.Fatalf("%d %q", r.code, r.body)
		}
		count[r.header.Get(meshxds.HeaderVersion)]++
	}
	if share := count["v2"] * 100 / n; share < 15 || share > 25 {
		t.Fatalf("v2 got %d%% of %d requests, want 20±5 (%v)", share, n, count)
	}
}

func TestMatchRules(t *testing.T) {
	m := newMesh(t)
	gray := &model.Route{
		Match:    model.Match{Headers: []model.StringMatch{{Name: "gray", Kind: model.Exact, Value: "1"}}},
		Clusters: []model.WeightedCluster{{Name: "reviews|v2", Weight: 1}}, TotalWeight: 1,
	}
	debug := &model.Route{
		Match:    model.Match{QueryParams: []model.StringMatch{{Name: "debug", Kind: model.Exact, Value: "true"}}},
		Clusters: []model.WeightedCluster{{Name: "reviews|v2", Weight: 1}}, TotalWeight: 1,
	}
	m.client.setSnapshot(m.snapshot(gray, debug, to("reviews|v1", 100)))
	c := h1ProxyClient(t, m.client.OutboundAddr())
	tests := []struct {
		name   string
		url    string
		header http.Header
		want   string
	}{
		{"header match", "http://reviews/m", http.Header{"Gray": {"1"}}, "v2"},
		{"header mismatch", "http://reviews/m", http.Header{"Gray": {"0"}}, "v1"},
		{"query match", "http://reviews/m?x=1&debug=true", nil, "v2"},
		{"query mismatch", "http://reviews/m?debug=yes", nil, "v1"},
		{"neither", "http://reviews/m", nil, "v1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := newRequest(t, "GET", tt.url, "", nil)
			for k, v := range tt.header {
				req.Header[k] = v
			}
			r := do(t, c, req)
			if r.code != 200 || r.header.Get(meshxds.HeaderVersion) != tt.want {
				t.Fatalf("%d %q from %q, want %s", r.code, r.body, r.header.Get(meshxds.HeaderVersion), tt.want)
			}
		})
	}
}

// A config swap does not touch a request in flight: it finishes on the
// snapshot it started with, while new requests see the new one.
func TestConfigSwapKeepsRequestInFlight(t *testing.T) {
	m := newMesh(t)
	c := h1ProxyClient(t, m.client.OutboundAddr())
	done := make(chan result, 1)
	go func() {
		resp, err := c.Get("http://reviews/slow")
		if err != nil {
			done <- result{body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		done <- result{code: resp.StatusCode, header: resp.Header, body: string(b)}
	}()
	<-m.v1.arrived

	// The new config no longer knows reviews at all.
	m.client.setSnapshot(snapshot(nil, nil))
	if r := do(t, c, newRequest(t, "GET", "http://reviews/after", "", nil)); r.code != http.StatusNotFound {
		t.Fatalf("new request after the swap: %d %q, want no_route", r.code, r.body)
	}

	close(m.v1.release)
	r := <-done
	if r.code != 200 || r.body != "v1 HTTP/1.1 reviews /slow" {
		t.Fatalf("request in flight: %d %q", r.code, r.body)
	}
}
