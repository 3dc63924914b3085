package main

// Unit tests of the parsers and the report. Nothing here runs a load
// generator or a proxy, and nothing asserts a time: the benchmark itself
// runs only with `go run ./bench`.

import (
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseWrk(t *testing.T) {
	r, err := parseWrk(string(readTestdata(t, "wrk.txt")))
	if err != nil {
		t.Fatal(err)
	}
	if r.RPS != 48220.21 || r.Requests != 53073 || r.Errors != 0 {
		t.Errorf("got %+v", r)
	}
	withErrors := `Running 1s test @ http://127.0.0.1:1/
  1000 requests in 1.00s, 1.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 1
  Non-2xx or 3xx responses: 96
Requests/sec:   1000.00
`
	r, err = parseWrk(withErrors)
	if err != nil {
		t.Fatal(err)
	}
	if r.Errors != 100 || r.Requests != 900 || math.Abs(r.RPS-900) > 1e-9 {
		t.Errorf("with errors: got %+v, want 100 errors, 900 good requests at 900 rps", r)
	}
	if _, err := parseWrk("unable to connect to 127.0.0.1:1 Connection refused"); err == nil {
		t.Error("no summary: want an error")
	}
}

func TestParseH2load(t *testing.T) {
	r, err := parseH2load(string(readTestdata(t, "h2load.txt")))
	if err != nil {
		t.Fatal(err)
	}
	if r.RPS != 45771.00 || r.Requests != 45771 || r.Errors != 0 {
		t.Errorf("got %+v", r)
	}
	bad := `finished in 1.00s, 100.00 req/s, 1.00MB/s
requests: 100 total, 110 started, 100 done, 50 succeeded, 50 failed, 0 errored, 0 timeout
status codes: 50 2xx, 0 3xx, 0 4xx, 50 5xx
`
	r, err = parseH2load(bad)
	if err != nil {
		t.Fatal(err)
	}
	if r.Requests != 50 || r.Errors != 100 || r.RPS != 50 { // 50 failed + 50 5xx
		t.Errorf("with errors: got %+v", r)
	}
}

func TestParseFortio(t *testing.T) {
	l, err := parseFortio(readTestdata(t, "fortio.json"))
	if err != nil {
		t.Fatal(err)
	}
	if l.Requests != 992 || l.Errors != 0 {
		t.Errorf("requests %d errors %d", l.Requests, l.Errors)
	}
	if !(l.P50 > 0 && l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999) {
		t.Errorf("percentiles out of order: %+v", l)
	}
	if math.Abs(l.P50-0.1331) > 0.001 { // 0.000133 s in the file
		t.Errorf("p50 = %v ms, want 0.133", l.P50)
	}
}

func TestParseGhz(t *testing.T) {
	b := readTestdata(t, "ghz.json")
	l, err := parseGhzLatency(b)
	if err != nil {
		t.Fatal(err)
	}
	if l.Requests == 0 || !(l.P50 <= l.P90 && l.P90 <= l.P99 && l.P99 <= l.P999) {
		t.Errorf("got %+v", l)
	}
	thr, err := parseGhzThroughput(b)
	if err != nil {
		t.Fatal(err)
	}
	if thr.Requests != l.Requests || thr.RPS <= 0 {
		t.Errorf("throughput %+v, latency %+v", thr, l)
	}

	// ghz's own end-of-run closes are not errors; anything else is.
	r, err := parseGhz([]byte(`{"count": 4, "rps": 4, "statusCodeDistribution": {"OK": 2, "Unavailable": 2},
	  "details": [{"latency": 1000000, "status": "OK"}, {"latency": 3000000, "status": "OK"},
	    {"status": "Unavailable", "error": "rpc error: code = Unavailable desc = error reading from server: read tcp 127.0.0.1:1->127.0.0.1:2: use of closed network connection"},
	    {"status": "Unavailable", "error": "rpc error: code = Unavailable desc = connection refused"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if r.errors() != 1 {
		t.Errorf("errors = %d, want 1", r.errors())
	}
}

func TestPercentile(t *testing.T) {
	v := make([]float64, 1000)
	for i := range v {
		v[i] = float64(i + 1)
	}
	for p, want := range map[float64]float64{50: 500, 90: 900, 99: 990, 99.9: 999, 100: 1000} {
		if got := percentile(v, p); got != want {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
}

func TestProcParsers(t *testing.T) {
	stat := []byte("1234 (nginx: worker (1)) S 1233 1233 1233 0 -1 4194624 300 0 0 0 517 212 0 0 20 0 1 0 100 10000 300 18446744073709551615")
	if n, err := parseStatTicks(stat); err != nil || n != 729 {
		t.Errorf("parseStatTicks = %d, %v; want 729", n, err)
	}
	status := []byte("Name:\tnginx\nVmPeak:\t  20000 kB\nVmHWM:\t    9000 kB\nVmRSS:\t    8192 kB\nThreads:\t1\n")
	m, err := parseStatus(status)
	if err != nil || m.RSS != 8192*1024 || m.HWM != 9000*1024 {
		t.Errorf("parseStatus = %+v, %v", m, err)
	}
	procStat := "cpu  1 2 3 4 5 6 7 8 9 10\ncpu0 10 0 10 100 0 0 0 0 0 0\ncpu1 20 1 9 50 10 4 6 0 0 0\n"
	if c := parseProcStat(procStat, "cpu1"); c.busy != 40 || c.tasks != 30 || c.total != 100 {
		t.Errorf("cpu1: %+v, want busy 40 tasks 30 total 100", c)
	}
}

func TestConfigs(t *testing.T) {
	n := nginxConfig{Dir: "/tmp/x", Listen: listenAddrs{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}, HTTPUp: "127.0.0.1:8", GRPCUp: "127.0.0.1:9"}.render()
	for _, want := range []string{"worker_processes 1;", "keepalive 64;", "proxy_http_version 1.1;", `proxy_set_header Connection "";`,
		"listen 127.0.0.1:2 http2;", "grpc_pass grpc://grpc_up;", "server 127.0.0.1:8;", "access_log off;"} {
		if !strings.Contains(n, want) {
			t.Errorf("nginx config lacks %q:\n%s", want, n)
		}
	}
	h := haproxyConfig{Listen: listenAddrs{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}, H1Up: "127.0.0.1:7", H2CUp: "127.0.0.1:8", GRPCUp: "127.0.0.1:9"}.render()
	for _, want := range []string{"nbthread 1", "mode http", "http-reuse always", "bind 127.0.0.1:2 proto h2", "server s1 127.0.0.1:9 proto h2"} {
		if !strings.Contains(h, want) {
			t.Errorf("haproxy config lacks %q:\n%s", want, h)
		}
	}
}

// sampleRun is a small made-up run: direct, nginx and the Trellis gateway
// over HTTP/1.1.
func sampleRun() *Run {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return &Run{
		Started: start, Finished: start.Add(time.Minute), Command: "go run ./bench",
		Machine:  Machine{CPU: "Test CPU", Cores: 2, Tools: map[string]string{"go": "go1.26.8", "wrk": "4.1.0"}},
		Settings: Settings{Rate: 1000, Connections: 16, LatencyDuration: "20s", ThroughputDuration: "10s", Warmup: "2s", ClientCPU: "0", ProxyCPU: "1", BackendCPU: "0"},
		Paths: []PathInfo{
			{ID: "direct", Title: "direct", Hops: 0},
			{ID: "nginx", Title: "nginx", Hops: 1, Ref: "nginx"},
			{ID: "trellis-gateway", Title: "Trellis gateway", Hops: 1, Ref: "nginx"},
		},
		Results: []Result{
			{Path: "direct", Protocol: protoH1, Latency: &Latency{P50: 0.05, P90: 0.08, P99: 0.15, P999: 1, Requests: 20000},
				Throughput: &Throughput{RPS: 50000}, ClientBusy: 100},
			{Path: "nginx", Protocol: protoH1, Latency: &Latency{P50: 0.15, P90: 0.2, P99: 0.35, P999: 2, Requests: 20000},
				Throughput: &Throughput{RPS: 40000}, CPUPer1k: 0.05,
				Proxies: []ProxyResult{{Name: "nginx", CPUPer1k: 0.05, IdleRSS: 10 << 20, PeakRSS: 12 << 20}}},
			{Path: "trellis-gateway", Protocol: protoH1, Latency: &Latency{P50: 0.25, P90: 0.3, P99: 0.55, P999: 3, Requests: 20000},
				Throughput: &Throughput{RPS: 20000, Errors: 3}, CPUPer1k: 0.1, Noise: 12,
				Proxies: []ProxyResult{{Name: "gateway", CPUPer1k: 0.1, IdleRSS: 20 << 20, PeakRSS: 24 << 20}}},
		},
	}
}

func TestRenderReport(t *testing.T) {
	md := renderReport(sampleRun(), "x.png")
	for _, want := range []string{
		"| Trellis gateway | 1 | 0.250 | 0.300 | 0.550 | 3.000 | 20,000 | 0.100 | 20.0 | 24.0 |",
		// added p50 per hop, p50 × direct, rps × nginx, CPU × nginx, RSS × nginx
		"| Trellis gateway | +0.200 | +0.400 | 5.00 | 3.67 | 0.40 | 1.67 | 1.57 | 0.50 | 2.00 | 2.00 |",
		"![latency percentiles per path](x.png)",
		"Noisy (over 10% of a core), rerun before quoting their tails and max rps:** Trellis gateway / http1 (12%)",
		"| 3 | **12%** |",
		"| Test CPU, 2 cores |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
}

func TestChartAndDocs(t *testing.T) {
	dir := t.TempDir()
	r := sampleRun()
	if err := writeChart(r, filepath.Join(dir, "c.png")); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "c.png"))
	if err != nil || len(b) < 1000 || string(b[1:4]) != "PNG" {
		t.Fatalf("chart: %d bytes, %v", len(b), err)
	}
	doc := filepath.Join(dir, "performance.md")
	os.WriteFile(doc, []byte("# Perf\n\nbefore\n<!-- bench:results:begin -->\nold\n<!-- bench:results:end -->\nafter\n"), 0o644)
	if err := updateDocs(doc, r, "../bench/results/x"); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(doc)
	s := string(got)
	if strings.Contains(s, "\nold\n") || !strings.Contains(s, "before") || !strings.Contains(s, "after") ||
		!strings.Contains(s, "### HTTP/1.1 keep-alive") || !strings.Contains(s, "(../bench/results/x.md)") {
		t.Errorf("docs:\n%s", s)
	}
}
