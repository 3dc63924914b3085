package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Protocols, in the order they run and are reported.
const (
	protoH1   = "http1"
	protoH2C  = "h2c"
	protoGRPC = "grpc"
)

var allProtocols = []string{protoH1, protoH2C, protoGRPC}

var protocolTitle = map[string]string{
	protoH1:   "HTTP/1.1 keep-alive",
	protoH2C:  "HTTP/2 cleartext (h2c, prior knowledge)",
	protoGRPC: "gRPC unary",
}

// target is where a path takes one protocol's load: the address to dial
// and the Host/:authority to send.
type target struct {
	Addr string // host:port
	Host string // Host / :authority ("" for the address itself)
}

func (t target) url() string { return "http://" + t.Addr + "/" }

// Latency is one fixed-rate run.
type Latency struct {
	P50, P90, P99, P999 float64 // milliseconds
	Requests            int64   // completed
	Errors              int64   // non-200 / non-OK / transport errors
	QPS                 float64 // achieved rate
}

// Throughput is one maximum-rate run.
type Throughput struct {
	RPS      float64
	Requests int64
	Errors   int64
}

// loader runs the established load generators, pinned to the client CPU.
type loader struct {
	tools       *toolset
	cpu         string
	connections int
	rate        int
	workDir     string
	protoFile   string // bench/proto/bench.proto
	grpcData    string // the 1 KiB request as ghz JSON
}

func newLoader(tools *toolset, cpu string, connections, rate int, workDir, protoFile string) *loader {
	// google.protobuf.BytesValue's JSON form is the base64 string itself.
	data, _ := json.Marshal(base64.StdEncoding.EncodeToString(body))
	return &loader{tools: tools, cpu: cpu, connections: connections, rate: rate,
		workDir: workDir, protoFile: protoFile, grpcData: string(data)}
}

// latency runs the fixed-rate test: fortio for HTTP/1.1 and h2c, ghz for
// gRPC.
func (l *loader) latency(ctx context.Context, proto string, t target, d time.Duration) (Latency, error) {
	if proto == protoGRPC {
		out, err := l.ghz(ctx, t, d, l.rate)
		if err != nil {
			return Latency{}, err
		}
		return parseGhzLatency(out)
	}
	file := filepath.Join(l.workDir, "fortio.json")
	_ = os.Remove(file)
	args := []string{l.tools.fortio, "load", "-quiet",
		"-qps", itoa(l.rate), "-c", itoa(l.connections), "-t", d.String(),
		// fortio's histogram buckets are 1, 2, …, 10, 12, …, 20, 25, …
		// times the resolution: 10 µs gives ~10-20 % buckets from 0.1 to
		// 10 ms (the default, 1 ms, cannot tell 0.1 ms from 0.9 ms).
		"-r", "0.00001", "-p", "50,90,99,99.9",
		// spread the 16 connections' requests over time instead of sending
		// them in bursts of 16 (ghz spaces its requests evenly too)
		"-uniform",
		"-json", file}
	if proto == protoH2C {
		args = append(args, "-h2")
	}
	if t.Host != "" {
		args = append(args, "-H", "Host: "+t.Host)
	}
	args = append(args, t.url())
	if _, err := runTool(ctx, l.cpu, args...); err != nil {
		return Latency{}, err
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return Latency{}, err
	}
	return parseFortio(b)
}

// throughput runs the maximum-rate test with the same connections: wrk
// for HTTP/1.1, h2load for h2c, ghz for gRPC.
func (l *loader) throughput(ctx context.Context, proto string, t target, d time.Duration) (Throughput, error) {
	secs := strconv.Itoa(int(math.Max(1, math.Round(d.Seconds()))))
	switch proto {
	case protoH1:
		args := []string{l.tools.wrk, "-t1", "-c" + itoa(l.connections), "-d" + secs + "s"}
		if t.Host != "" {
			args = append(args, "-H", "Host: "+t.Host)
		}
		out, err := runTool(ctx, l.cpu, append(args, t.url())...)
		if err != nil {
			return Throughput{}, err
		}
		return parseWrk(string(out))
	case protoH2C:
		// one stream at a time per connection: the same 16 requests in
		// flight as wrk and ghz
		args := []string{l.tools.h2load, "-t1", "-c" + itoa(l.connections), "-m1", "-D", secs}
		if t.Host != "" {
			args = append(args, "-H", ":authority: "+t.Host)
		}
		out, err := runTool(ctx, l.cpu, append(args, t.url())...)
		if err != nil {
			return Throughput{}, err
		}
		return parseH2load(string(out))
	default:
		out, err := l.ghz(ctx, t, d, 0)
		if err != nil {
			return Throughput{}, err
		}
		return parseGhzThroughput(out)
	}
}

// ghz runs ghz for d at rate (0: as fast as it goes) and returns its JSON.
func (l *loader) ghz(ctx context.Context, t target, d time.Duration, rate int) ([]byte, error) {
	file := filepath.Join(l.workDir, "ghz.json")
	_ = os.Remove(file)
	args := []string{l.tools.ghz, "--insecure", "--proto", l.protoFile, "--call", grpcCall,
		"-d", l.grpcData, "-c", itoa(l.connections), "--connections", itoa(l.connections),
		"-z", d.String(), "-O", "json", "-o", file}
	if rate > 0 {
		args = append(args, "--rps", itoa(rate))
	}
	if t.Host != "" {
		args = append(args, "--authority", t.Host)
	}
	if _, err := runTool(ctx, l.cpu, append(args, t.Addr)...); err != nil {
		return nil, err
	}
	return os.ReadFile(file)
}

// --- parsers (unit-tested against real outputs in testdata/) ---

// parseFortio reads fortio's -json result.
func parseFortio(b []byte) (Latency, error) {
	var r struct {
		ActualQPS               float64
		RetCodes                map[string]int64
		ErrorsDurationHistogram struct{ Count int64 }
		DurationHistogram       struct {
			Count       int64
			Percentiles []struct {
				Percentile float64
				Value      float64 // seconds
			}
		}
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return Latency{}, fmt.Errorf("fortio json: %v", err)
	}
	l := Latency{QPS: r.ActualQPS, Requests: r.DurationHistogram.Count}
	for code, n := range r.RetCodes {
		if code != "200" {
			l.Errors += n
		}
	}
	found := 0
	for _, p := range r.DurationHistogram.Percentiles {
		ms := p.Value * 1000
		switch p.Percentile {
		case 50:
			l.P50 = ms
		case 90:
			l.P90 = ms
		case 99:
			l.P99 = ms
		case 99.9:
			l.P999 = ms
		default:
			continue
		}
		found++
	}
	if found != 4 {
		return l, fmt.Errorf("fortio json: %d of the 4 percentiles", found)
	}
	if l.Requests == 0 {
		return l, fmt.Errorf("fortio json: no request completed")
	}
	return l, nil
}

type ghzReport struct {
	Count                  int64
	Total                  float64 // ns
	RPS                    float64
	StatusCodeDistribution map[string]int64
	Details                []struct {
		Latency float64 // ns
		Status  string
		Error   string
	}
}

func parseGhz(b []byte) (ghzReport, error) {
	var r ghzReport
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("ghz json: %v", err)
	}
	if r.Count == 0 {
		return r, fmt.Errorf("ghz json: no request completed")
	}
	return r, nil
}

// errors counts the failed requests, less those ghz fails itself when the
// duration ends: it closes its connections under the requests in flight
// ("use of closed network connection" on the client's side).
func (r ghzReport) errors() int64 {
	var n int64
	for code, c := range r.StatusCodeDistribution {
		if code != "OK" {
			n += c
		}
	}
	for _, d := range r.Details {
		if d.Status != "OK" && strings.Contains(d.Error, "use of closed network connection") {
			n--
		}
	}
	return max(n, 0)
}

// parseGhzLatency computes the percentiles from every request's latency
// (ghz's own distribution stops at p99).
func parseGhzLatency(b []byte) (Latency, error) {
	r, err := parseGhz(b)
	if err != nil {
		return Latency{}, err
	}
	var lat []float64
	for _, d := range r.Details {
		if d.Status == "OK" {
			lat = append(lat, d.Latency/1e6)
		}
	}
	if len(lat) == 0 {
		return Latency{}, fmt.Errorf("ghz json: no successful request (%v)", r.StatusCodeDistribution)
	}
	slices.Sort(lat)
	return Latency{
		P50: percentile(lat, 50), P90: percentile(lat, 90), P99: percentile(lat, 99), P999: percentile(lat, 99.9),
		Requests: int64(len(lat)), Errors: r.errors(), QPS: r.RPS,
	}, nil
}

func parseGhzThroughput(b []byte) (Throughput, error) {
	r, err := parseGhz(b)
	if err != nil {
		return Throughput{}, err
	}
	var ok int64
	for code, c := range r.StatusCodeDistribution {
		if code == "OK" {
			ok += c
		}
	}
	return Throughput{RPS: r.RPS * float64(ok) / float64(r.Count), Requests: ok, Errors: r.errors()}, nil
}

// percentile of sorted values, nearest rank.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	rank := int(math.Ceil(p*float64(len(sorted))/100-1e-9)) - 1
	return sorted[max(0, min(rank, len(sorted)-1))]
}

var (
	wrkRPS      = regexp.MustCompile(`(?m)^Requests/sec:\s+([0-9.]+)`)
	wrkTotal    = regexp.MustCompile(`(?m)^\s+(\d+) requests in`)
	wrkNon2xx   = regexp.MustCompile(`(?m)^\s+Non-2xx or 3xx responses: (\d+)`)
	wrkSockErrs = regexp.MustCompile(`(?m)^\s+Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
)

// parseWrk reads wrk's text summary.
func parseWrk(out string) (Throughput, error) {
	m := wrkRPS.FindStringSubmatch(out)
	t := wrkTotal.FindStringSubmatch(out)
	if m == nil || t == nil {
		return Throughput{}, fmt.Errorf("wrk output without Requests/sec:\n%s", tail(out, 1000))
	}
	var r Throughput
	r.RPS, _ = strconv.ParseFloat(m[1], 64)
	r.Requests, _ = strconv.ParseInt(t[1], 10, 64)
	if e := wrkNon2xx.FindStringSubmatch(out); e != nil {
		n, _ := strconv.ParseInt(e[1], 10, 64)
		r.Errors += n
	}
	if e := wrkSockErrs.FindStringSubmatch(out); e != nil {
		for _, s := range e[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			r.Errors += n
		}
	}
	if r.Errors > 0 && r.Requests > 0 { // count good responses only
		good := max(0, r.Requests-r.Errors)
		r.RPS *= float64(good) / float64(r.Requests)
		r.Requests = good
	}
	return r, nil
}

var (
	h2Finished = regexp.MustCompile(`(?m)^finished in [^,]+, ([0-9.]+) req/s`)
	h2Requests = regexp.MustCompile(`(?m)^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout`)
	h2Status   = regexp.MustCompile(`(?m)^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx`)
)

// parseH2load reads h2load's text summary. Its req/s counts every
// finished request; only 2xx count here.
func parseH2load(out string) (Throughput, error) {
	f := h2Finished.FindStringSubmatch(out)
	q := h2Requests.FindStringSubmatch(out)
	s := h2Status.FindStringSubmatch(out)
	if f == nil || q == nil || s == nil {
		return Throughput{}, fmt.Errorf("h2load output without a summary:\n%s", tail(out, 1000))
	}
	atoi := func(s string) int64 { n, _ := strconv.ParseInt(s, 10, 64); return n }
	rps, _ := strconv.ParseFloat(f[1], 64)
	done, ok2xx := atoi(q[3]), min(atoi(q[3]), atoi(s[1]))
	r := Throughput{RPS: rps, Requests: ok2xx,
		Errors: atoi(q[5]) + atoi(q[6]) + atoi(q[7]) + atoi(s[2]) + atoi(s[3]) + atoi(s[4])}
	if done > 0 && ok2xx < done {
		r.RPS *= float64(ok2xx) / float64(done)
	}
	if r.Requests == 0 {
		return r, fmt.Errorf("h2load: no 2xx response:\n%s", tail(out, 1000))
	}
	return r, nil
}

func joinArgs(a []string) string { return strings.Join(a, " ") }
