package main

import (
	"fmt"
	"math"
	"os"
	"sort"
	"strings"
	"time"
)

// renderReport is the Markdown report of one run; chart is the PNG's file
// name, next to the report.
func renderReport(r *Run, chart string) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	kind := "full run"
	if r.Quick {
		kind = "quick run (short durations: for iterating, not for quoting)"
	}
	w("# Trellis data-plane benchmark, %s UTC\n\n", r.Started.Format("2006-01-02 15:04"))
	w("`%s` · %s · took %s · Trellis %s\n\n", r.Command, kind, r.Finished.Sub(r.Started).Round(time.Second), orDash(r.Machine.Commit))
	w("![latency percentiles per path](%s)\n\n", chart)
	if s := renderSummary(r); s != "" {
		w("## Summary\n\n%s\n", s)
	}
	w("## Machine\n\n")
	w("| | |\n|---|---|\n")
	w("| CPU | %s, %d cores |\n", orDash(r.Machine.CPU), r.Machine.Cores)
	w("| memory | %.1f GiB |\n", r.Machine.MemoryGiB)
	w("| kernel | %s |\n", orDash(r.Machine.Kernel))
	w("| OS | %s |\n", orDash(r.Machine.OS))
	w("| Go | %s |\n", orDash(r.Machine.Tools["go"]))
	w("| tools | %s |\n\n", toolLine(r.Machine.Tools))
	w("## Method\n\n%s\n", renderMethod(r))
	w("## Run conditions\n\n%s\n", renderConditions(r))
	w("## Paths\n\n| path | proxy hops | what | compared with |\n|---|---|---|---|\n")
	for _, p := range r.Paths {
		ref := "—"
		if p.Ref != "" && p.Ref != p.ID {
			ref = titleOf(r, p.Ref)
		}
		w("| %s | %d | %s | %s |\n", p.Title, p.Hops, p.What, ref)
	}
	w("\n%s", renderTables(r))
	w("## Per proxy process\n\nCPU seconds per 1,000 requests at the fixed rate, and resident memory (MB), of each proxy on the path.\n\n")
	w("| path | protocol | proxy | CPU s / 1k req | RSS idle MB | RSS peak MB |\n|---|---|---|---|---|---|\n")
	for _, p := range r.Paths {
		for _, proto := range r.protocols() {
			res := r.result(p.ID, proto)
			if res == nil {
				continue
			}
			for _, x := range res.Proxies {
				w("| %s | %s | %s | %s | %s | %s |\n", p.Title, proto, x.Name, fmtCPU(x.CPUPer1k), fmtMB(x.IdleRSS), fmtMB(x.PeakRSS))
			}
		}
	}
	if errs := renderErrors(r); errs != "" {
		w("\n## Failed or skipped\n\n%s", errs)
	}
	if len(r.Notes) > 0 {
		w("\n## Notes\n\n")
		for _, n := range r.Notes {
			w("- %s\n", n)
		}
	}
	return b.String()
}

func renderMethod(r *Run) string {
	s := r.Settings
	return fmt.Sprintf(`- **Same backend for every path**: bench's own Go server (`+"`bench backend`"+`, GOMAXPROCS 1): HTTP/1.1 and h2c on one port, gRPC (hand-written service, `+"`bench/proto/bench.proto`"+`) on another; %d-byte response bodies, %d-byte gRPC requests.
- **Cores**: the proxies under test run on CPU %s (`+"`taskset`"+`; every proxy of a two-hop path shares that one core, so one core compares with one core); the load generator, `+"`trellis control`"+` and this harness run on CPU %s, the backend on CPU %s. nginx has one worker, HAProxy one thread, a Trellis proxy one P (Go sizes GOMAXPROCS from the affinity).
- **Latency** at a fixed rate: %d requests/s over %d connections for %s, after a %s warm-up; fortio (`+"`-uniform`"+`, histogram resolution 10 µs, interpolated within buckets of 10-20 %%) for HTTP/1.1 and h2c (`+"`-h2`"+`), ghz (`+"`--rps`"+`) for gRPC, whose percentiles are computed here from every request's latency.
- **Max throughput**: the same %d connections, one request in flight each, for %s: wrk (`+"`-t1`"+`) for HTTP/1.1, h2load (`+"`-t1 -m1`"+`) for h2c, ghz (`+"`--connections`"+`) for gRPC. The client shares its core with the backend: when "client core" reads ~100%%, the number is the client's limit, not the proxy's; "proxy core" is the CPU the path's proxies used, in %% of one core.
- **CPU s / 1k req**: user + system time of every process of every proxy on the path (`+"`/proc/PID/stat`"+`, 10 ms ticks) during the fixed-rate run, per 1,000 completed requests.
- **RSS**: VmRSS (`+"`/proc/PID/status`"+`) of each proxy, summed over its processes (nginx: master + worker), before the first request ("idle") and the highest sampled every 100 ms during that protocol's runs ("peak"). Two-hop paths show the sum and each proxy.
- **Trellis** runs plaintext: mTLS does not exist yet. The gateway's one-hop path reaches the backend registered without a sidecar (a membership stream that announces it ready, as a sidecar does); the sidecar pair is an outbound sidecar (client-only, the client dials it with Host = the service) and the backend's inbound sidecar.
- **References**: nginx with `+"`upstream { keepalive }`"+`, `+"`proxy_http_version 1.1`"+`, `+"`Connection \"\"`"+`, `+"`listen … http2`"+` for h2c (nginx proxies h2c to the next hop over HTTP/1.1), `+"`grpc_pass`"+` for gRPC, `+"`keepalive_requests`"+` raised, no access log; HAProxy `+"`mode http`"+`, `+"`http-reuse always`"+`, `+"`proto h2`"+` for h2c and gRPC on both sides. The generated configurations are in `+"`bench/configs.go`"+`.
`, BodySize, BodySize, s.ProxyCPU, s.ClientCPU, s.BackendCPU, s.Rate, s.Connections, s.LatencyDuration, s.Warmup,
		s.Connections, s.ThroughputDuration)
}

// renderTables is one results table and one ratio table per protocol (what
// docs/performance.md copies).
func renderTables(r *Run) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	for _, proto := range r.protocols() {
		w("## %s\n\n", protocolTitle[proto])
		w("| path | hops | p50 ms | p90 ms | p99 ms | p99.9 ms | max rps | CPU s / 1k req | RSS idle MB | RSS peak MB | proxy core at max | client core at max | errors | noise |\n")
		w("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, p := range r.Paths {
			res := r.result(p.ID, proto)
			if res == nil {
				continue
			}
			row := []string{p.Title, fmt.Sprint(p.Hops)}
			if l := res.Latency; l != nil {
				row = append(row, fmtMS(l.P50), fmtMS(l.P90), fmtMS(l.P99), fmtMS(l.P999))
			} else {
				row = append(row, "—", "—", "—", "—")
			}
			if t := res.Throughput; t != nil {
				row = append(row, fmtInt(t.RPS))
			} else {
				row = append(row, "—")
			}
			if p.Hops == 0 || res.Latency == nil {
				row = append(row, "—", "—", "—")
			} else {
				row = append(row, fmtCPU(res.CPUPer1k), fmtMBs(res.Proxies, false), fmtMBs(res.Proxies, true))
			}
			if p.Hops == 0 {
				row = append(row, "—")
			} else {
				row = append(row, fmtPct(res.ProxyBusy, res.Throughput != nil))
			}
			row = append(row, fmtPct(res.ClientBusy, res.Throughput != nil), fmtErrors(res), fmtNoise(res))
			w("| %s |\n", strings.Join(row, " | "))
		}
		w("\n%s\n", renderRatios(r, proto))
	}
	return b.String()
}

// renderRatios compares each proxied path with direct and with nginx of
// the same number of hops.
func renderRatios(r *Run, proto string) string {
	direct := r.result("direct", proto)
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("Against direct and against nginx with the same number of hops (\"added per hop\" = (path − direct) ÷ hops; × = path ÷ reference; for CPU and RSS lower is better, for rps higher):\n\n")
	w("| path | added p50 ms / hop | added p99 ms / hop | p50 × direct | p99 × direct | rps × direct | p50 × nginx | p99 × nginx | rps × nginx | CPU × nginx | RSS peak × nginx |\n")
	w("|---|---|---|---|---|---|---|---|---|---|---|\n")
	rows := 0
	for _, p := range r.Paths {
		if p.Hops == 0 {
			continue
		}
		res := r.result(p.ID, proto)
		if res == nil || res.Latency == nil {
			continue
		}
		ref := r.result(p.Ref, proto)
		row := []string{p.Title}
		if direct != nil && direct.Latency != nil {
			row = append(row,
				fmtSigned((res.Latency.P50-direct.Latency.P50)/float64(p.Hops)),
				fmtSigned((res.Latency.P99-direct.Latency.P99)/float64(p.Hops)),
				fmtRatio(res.Latency.P50, direct.Latency.P50), fmtRatio(res.Latency.P99, direct.Latency.P99))
		} else {
			row = append(row, "—", "—", "—", "—")
		}
		if direct != nil && direct.Throughput != nil && res.Throughput != nil {
			row = append(row, fmtRatio(res.Throughput.RPS, direct.Throughput.RPS))
		} else {
			row = append(row, "—")
		}
		if ref != nil && ref.Latency != nil {
			row = append(row, fmtRatio(res.Latency.P50, ref.Latency.P50), fmtRatio(res.Latency.P99, ref.Latency.P99))
			if ref.Throughput != nil && res.Throughput != nil {
				row = append(row, fmtRatio(res.Throughput.RPS, ref.Throughput.RPS))
			} else {
				row = append(row, "—")
			}
			row = append(row, fmtRatio(res.CPUPer1k, ref.CPUPer1k), fmtRatio(float64(peakSum(res)), float64(peakSum(ref))))
		} else {
			row = append(row, "—", "—", "—", "—", "—")
		}
		w("| %s |\n", strings.Join(row, " | "))
		rows++
	}
	if rows == 0 {
		return ""
	}
	return b.String()
}

// renderSummary quotes, per protocol, each Trellis path against direct and
// against nginx and HAProxy with the same hops.
func renderSummary(r *Run) string {
	var b strings.Builder
	for _, proto := range r.protocols() {
		direct := r.result("direct", proto)
		for _, p := range r.Paths {
			if !strings.HasPrefix(p.ID, "trellis") {
				continue
			}
			res := r.result(p.ID, proto)
			if res == nil || res.Latency == nil || res.Throughput == nil {
				continue
			}
			nginx, haproxy := r.result("nginx", proto), r.result("haproxy", proto)
			if p.Hops == 2 {
				nginx, haproxy = r.result("nginx-2", proto), r.result("haproxy-2", proto)
			}
			fmt.Fprintf(&b, "- **%s, %s** (%d hop%s):", p.Title, proto, p.Hops, plural(p.Hops))
			if noiseOf(res) > noisyAbove {
				b.WriteString(" _(noisy measurement)_")
			}
			if direct != nil && direct.Latency != nil {
				fmt.Fprintf(&b, " p50 %s ms (%s over direct), p99 %s ms (%s);",
					fmtMS(res.Latency.P50), fmtSigned(res.Latency.P50-direct.Latency.P50),
					fmtMS(res.Latency.P99), fmtSigned(res.Latency.P99-direct.Latency.P99))
			}
			fmt.Fprintf(&b, " %s rps max; %s CPU s / 1k req; %s MB peak RSS.", fmtInt(res.Throughput.RPS), fmtCPU(res.CPUPer1k), fmtMB(peakSum(res)))
			for _, ref := range []struct {
				name string
				res  *Result
			}{{"nginx", nginx}, {"HAProxy", haproxy}} {
				if ref.res == nil || ref.res.Latency == nil || ref.res.Throughput == nil {
					continue
				}
				fmt.Fprintf(&b, " %s: p50 %s ms, p99 %s ms, %s rps, %s CPU s / 1k, %s MB.", ref.name,
					fmtMS(ref.res.Latency.P50), fmtMS(ref.res.Latency.P99), fmtInt(ref.res.Throughput.RPS),
					fmtCPU(ref.res.CPUPer1k), fmtMB(peakSum(ref.res)))
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// renderConditions says how quiet the machine was: the proxy core's load
// that was not the proxies' during the fixed-rate runs.
func renderConditions(r *Run) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Load average before the run: %s.", orDash(r.LoadAvg))
	var waited float64
	for _, x := range r.Results {
		waited += x.QuietWait
	}
	if waited > 0 {
		fmt.Fprintf(&b, " Before each measurement the harness waited for the machine to be quiet (under 10%% of a core busy with anything else): %.0f s in all.", waited)
	}
	retried := 0
	for _, x := range r.Results {
		if x.Attempts > 1 {
			retried++
		}
	}
	if retried > 0 {
		fmt.Fprintf(&b, " Measured a second time because the first was noisy: %d (the quieter kept, marked \"2nd try\").", retried)
	}
	var worst *Result
	var noisy []string
	for i := range r.Results {
		x := &r.Results[i]
		if x.Latency == nil {
			continue
		}
		if worst == nil || noiseOf(x) > noiseOf(worst) {
			worst = x
		}
		if noiseOf(x) > noisyAbove {
			noisy = append(noisy, fmt.Sprintf("%s / %s (%.0f%%)", titleOf(r, x.Path), x.Protocol, noiseOf(x)))
		}
	}
	if worst != nil {
		fmt.Fprintf(&b, " CPU spent on anything but this benchmark (other programs, the system; interrupts not counted) during the measurements (column \"noise\"): at most %.0f%% of a core (%s / %s).",
			noiseOf(worst), titleOf(r, worst.Path), worst.Protocol)
	}
	if len(noisy) > 0 {
		fmt.Fprintf(&b, " **Noisy (over %d%% of a core), rerun before quoting their tails and max rps:** %s.", noisyAbove, strings.Join(noisy, ", "))
	} else if worst != nil {
		fmt.Fprintf(&b, " No measurement was noisy (over %d%% of a core).", noisyAbove)
	}
	return b.String() + "\n"
}

// noisyAbove is the noise (% of a core) over which a measurement is
// flagged.
const noisyAbove = 10

func noiseOf(r *Result) float64 { return max(r.Noise, r.NoiseMax) }

func fmtNoise(r *Result) string {
	if r.Latency == nil {
		return "—"
	}
	n, again := noiseOf(r), ""
	if r.Attempts > 1 {
		again = " (2nd try)"
	}
	if n > noisyAbove {
		return fmt.Sprintf("**%.0f%%**%s", n, again)
	}
	return fmt.Sprintf("%.0f%%%s", n, again)
}

func renderErrors(r *Run) string {
	var b strings.Builder
	for _, res := range r.Results {
		if res.Error != "" {
			fmt.Fprintf(&b, "- %s / %s: `%s`\n", titleOf(r, res.Path), res.Protocol, strings.ReplaceAll(firstLine(res.Error), "`", "'"))
		}
	}
	return b.String()
}

// updateDocs replaces the part of docs/performance.md between the markers
// with this run's tables; report is the report's path relative to docs/,
// without extension.
func updateDocs(doc string, r *Run, report string) error {
	const begin, end = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"
	b, err := os.ReadFile(doc)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		return fmt.Errorf("%s has no %s … %s markers", doc, begin, end)
	}
	var n strings.Builder
	fmt.Fprintf(&n, "%s\n<!-- written by go run ./bench: edit outside the markers -->\n\n", begin)
	fmt.Fprintf(&n, "Latest full run: %s UTC, Trellis %s, on %s (%d cores), %s. Report: [%s.md](%s.md), chart: [%s.png](%s.png).\n\n",
		r.Started.Format("2006-01-02 15:04"), orDash(r.Machine.Commit), orDash(r.Machine.CPU), r.Machine.Cores, orDash(r.Machine.OS),
		lastElem(report), report, lastElem(report), report)
	fmt.Fprintf(&n, "![latency percentiles per path](%s.png)\n\n", report)
	if s := renderSummary(r); s != "" {
		fmt.Fprintf(&n, "%s\n", s)
	}
	fmt.Fprintf(&n, "Run conditions: %s\n", renderConditions(r))
	tables := strings.ReplaceAll(renderTables(r), "\n## ", "\n### ")
	tables = strings.Replace(tables, "## ", "### ", 1)
	n.WriteString(tables)
	if errs := renderErrors(r); errs != "" {
		fmt.Fprintf(&n, "Failed or skipped in that run:\n\n%s\n", errs)
	}
	n.WriteString(end)
	return os.WriteFile(doc, []byte(s[:i]+n.String()+s[j+len(end):]), 0o644)
}

// --- formatting ---

func fmtMS(v float64) string {
	switch {
	case math.IsNaN(v):
		return "—"
	case math.Abs(v) < 10:
		return fmt.Sprintf("%.3f", v)
	case math.Abs(v) < 100:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}

func fmtSigned(v float64) string {
	if v >= 0 {
		return "+" + fmtMS(v)
	}
	return fmtMS(v)
}

func fmtInt(v float64) string {
	s := fmt.Sprintf("%.0f", v)
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 && s[i-1] != '-' {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func fmtCPU(v float64) string { return fmt.Sprintf("%.3f", v) }

func fmtMB(b int64) string { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }

// fmtMBs is the idle or peak RSS of a path's proxies: the sum, and each
// one when there are several.
func fmtMBs(ps []ProxyResult, peak bool) string {
	var sum int64
	var parts []string
	for _, p := range ps {
		v := p.IdleRSS
		if peak {
			v = p.PeakRSS
		}
		sum += v
		parts = append(parts, fmtMB(v))
	}
	if len(ps) < 2 {
		return fmtMB(sum)
	}
	return fmt.Sprintf("%s (%s)", fmtMB(sum), strings.Join(parts, " + "))
}

func peakSum(r *Result) int64 {
	var s int64
	for _, p := range r.Proxies {
		s += p.PeakRSS
	}
	return s
}

func fmtPct(v float64, ok bool) string {
	if !ok {
		return "—"
	}
	return fmt.Sprintf("%.0f%%", v)
}

func fmtRatio(v, ref float64) string {
	if ref <= 0 || math.IsNaN(v) || math.IsNaN(ref) {
		return "—"
	}
	return fmt.Sprintf("%.2f", v/ref)
}

func fmtErrors(r *Result) string {
	if r.Error != "" {
		return "failed"
	}
	var n int64
	if r.Latency != nil {
		n += r.Latency.Errors
	}
	if r.Throughput != nil {
		n += r.Throughput.Errors
	}
	return fmt.Sprint(n)
}

func toolLine(t map[string]string) string {
	var keys []string
	for k := range t {
		if k != "go" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+" "+t[k])
	}
	return strings.Join(parts, ", ")
}

func titleOf(r *Run, id string) string {
	if p := r.pathInfo(id); p != nil {
		return p.Title
	}
	return id
}

func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

func lastElem(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}
