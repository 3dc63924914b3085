package proxy

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/xdsclient"
)

func getAdmin(t *testing.T, p *Proxy, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + p.AdminAddr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestAdminReadyAndDump(t *testing.T) {
	m := newMesh(t)
	p, src := startProxy(t, Config{Role: meshxds.RoleSidecar, Service: "productpage", Version: "v1", Zone: "z1",
		NodeID: "productpage-1"}, nil)
	src.status = xdsclient.Status{Connected: true, Versions: map[string]string{"t": "7"},
		LastNACK: &xdsclient.NACK{TypeURL: "t", Version: "8", Nonce: "n", Error: "bad route", At: time.Unix(1, 0)}}

	select {
	case <-p.Ready():
		t.Fatal("ready before any config")
	default:
	}
	if code, body := getAdmin(t, p, "/ready"); code != 503 || !strings.HasPrefix(body, "not ready: no configuration from the control plane at 127.0.0.1:15010") {
		t.Fatalf("/ready = %d %q", code, body)
	}

	p.setSnapshot(m.snapshot(to("reviews|v1", 100)))
	<-p.Ready()
	if code, body := getAdmin(t, p, "/ready"); code != 200 || body != "ready\n" {
		t.Fatalf("/ready = %d %q", code, body)
	}

	code, body := getAdmin(t, p, "/config_dump")
	var dump struct {
		Node      string            `json:"node"`
		Role      string            `json:"role"`
		Listeners map[string]string `json:"listeners"`
		XDS       struct {
			Connected bool `json:"connected"`
			LastNACK  struct {
				Error string `json:"error"`
			} `json:"lastNack"`
		} `json:"xds"`
		Snapshot struct {
			Clusters map[string]any `json:"clusters"`
		} `json:"snapshot"`
	}
	if err := json.Unmarshal([]byte(body), &dump); code != 200 || err != nil {
		t.Fatalf("/config_dump = %d %v %s", code, err, body)
	}
	if dump.Node != "productpage-1" || dump.Role != "sidecar" || !dump.XDS.Connected || dump.XDS.LastNACK.Error != "bad route" ||
		dump.Snapshot.Clusters["reviews|v1"] == nil || dump.Listeners["outbound"] != p.OutboundAddr() {
		t.Fatalf("/config_dump: %s", body)
	}
}

func TestAdminMetrics(t *testing.T) {
	m := newMesh(t)
	c := h1ProxyClient(t, m.client.OutboundAddr())
	do(t, c, newRequest(t, "GET", "http://reviews/x", "", nil))
	do(t, c, newRequest(t, "GET", "http://nowhere/x", "", nil))

	tests := []struct {
		p    *Proxy
		want []string
	}{
		{m.client, []string{
			`trellis_proxy_requests_total{code="200",direction="outbound",service="reviews",version="v1"} 1`,
			`trellis_proxy_requests_total{code="404",direction="outbound",service="",version=""} 1`,
			`trellis_proxy_request_duration_seconds_count{direction="outbound",service="reviews",version="v1"} 1`,
			`trellis_proxy_config_updates_total 1`,
			`trellis_proxy_xds_connected 0`,
		}},
		{m.side1, []string{
			`trellis_proxy_requests_total{code="200",direction="inbound",service="reviews",version="v1"} 1`,
			`trellis_proxy_request_duration_seconds_bucket{direction="inbound",service="reviews",version="v1",le="+Inf"} 1`,
		}},
	}
	for _, tt := range tests {
		code, body := getAdmin(t, tt.p, "/stats/prometheus")
		if code != 200 {
			t.Fatalf("/stats/prometheus = %d", code)
		}
		for _, w := range tt.want {
			if !strings.Contains(body, w+"\n") {
				t.Errorf("%s: no %s in\n%s", tt.p.nodeID, w, body)
			}
		}
	}
}
