package admin

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

type fakeSource struct {
	ok  bool
	why string
}

func (f *fakeSource) Ready() (bool, string) { return f.ok, f.why }
func (f *fakeSource) ConfigDump() any       { return map[string]string{"node": "n1"} }

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func TestAdmin(t *testing.T) {
	src := &fakeSource{why: "waiting for the first configuration"}
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "trellis_proxy_test_total", Help: "x"})
	reg.MustRegister(c)
	c.Inc()
	h := Handler(src, reg)

	tests := []struct {
		name     string
		path     string
		ready    bool
		wantCode int
		wantBody string
	}{
		{"not ready", "/ready", false, 503, "not ready: waiting for the first configuration\n"},
		{"ready", "/ready", true, 200, "ready\n"},
		{"metrics", "/stats/prometheus", true, 200, "trellis_proxy_test_total 1"},
		{"index", "/", true, 200, "/config_dump"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src.ok = tt.ready
			code, body := get(t, h, tt.path)
			if code != tt.wantCode || !strings.Contains(body, tt.wantBody) {
				t.Fatalf("GET %s = %d %q, want %d containing %q", tt.path, code, body, tt.wantCode, tt.wantBody)
			}
		})
	}

	code, body := get(t, h, "/config_dump")
	var dump map[string]string
	if err := json.Unmarshal([]byte(body), &dump); code != 200 || err != nil || dump["node"] != "n1" {
		t.Fatalf("config_dump = %d %q (%v)", code, body, err)
	}
}
