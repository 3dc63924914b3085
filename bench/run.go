package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// options are the command line.
type options struct {
	quick                           bool
	latency, throughput, warmup     time.Duration
	rate, connections               int
	protocols                       []string
	clientCPU, proxyCPU, backendCPU string
	install                         bool
	outDir                          string
	docs                            bool
	quietWait                       time.Duration
	// deadline bounds the whole run: the time left over the nominal
	// durations (the slack) pays for waiting for quiet and for measuring
	// noisy cells again. 0: no waiting, no retries.
	deadline time.Duration
}

// harness holds what lives for the whole run.
type harness struct {
	opts  options
	tools *toolset
	load  *loader
	work  string
	logf  func(string, ...any)

	backendHTTP, backendGRPC string // host:port
	xdsAddr                  string // trellis control, started on first use
	registered               bool
	waited                   time.Duration // waiting for quiet, whole run
	ownPIDs                  []int         // backend, control plane
	started                  time.Time     // the run's start, for the deadline
	cellsLeft                int           // path × protocol measurements still to do
}

// cellTime is the nominal duration of one path × protocol measurement.
func (h *harness) cellTime() time.Duration {
	return h.opts.warmup + h.opts.latency + h.opts.throughput + 3*time.Second
}

// slack is what the deadline leaves after the measurements still to do.
func (h *harness) slack() time.Duration {
	if h.opts.deadline <= 0 {
		return 0
	}
	return h.opts.deadline - time.Since(h.started) - time.Duration(h.cellsLeft)*h.cellTime()
}

var backendReady = regexp.MustCompile(`bench backend ready: http=(\S+) grpc=(\S+)`)

// startBackend runs this binary as the backend on the backend CPU.
func (h *harness) startBackend() error {
	httpAddr, err := freeAddr()
	if err != nil {
		return err
	}
	grpcAddr, err := freeAddr()
	if err != nil {
		return err
	}
	_, hp, _ := net.SplitHostPort(httpAddr)
	_, gp, _ := net.SplitHostPort(grpcAddr)
	p, err := startProc("backend", h.opts.backendCPU, nil, h.tools.self, "backend", "--http-port", hp, "--grpc-port", gp)
	if err != nil {
		return err
	}
	m, err := p.waitLine(backendReady, 10*time.Second)
	if err != nil {
		return err
	}
	h.backendHTTP, h.backendGRPC = m[1], m[2]
	h.ownPIDs = append(h.ownPIDs, p.pid())
	return nil
}

// measurePath starts a path, measures every protocol on it, and stops it.
func (h *harness) measurePath(ctx context.Context, spec pathSpec) []Result {
	fail := func(err error) []Result {
		var out []Result
		for _, proto := range h.opts.protocols {
			out = append(out, Result{Path: spec.ID, Protocol: proto, Error: err.Error()})
		}
		return out
	}
	lp, err := spec.start(ctx, h)
	if err != nil {
		return fail(fmt.Errorf("starting: %v", err))
	}
	defer lp.stop()
	for _, proto := range h.opts.protocols {
		if err := probeUntil(ctx, proto, lp.targets[proto], lp.procs, 60*time.Second); err != nil {
			return fail(err)
		}
	}
	// nginx forks its worker at start: find every proxy's processes now,
	// let start-up settle, and take the idle memory before any load.
	for _, p := range lp.all {
		p.resolve()
	}
	time.Sleep(time.Second)
	idle := map[string]int64{}
	for _, p := range lp.all {
		idle[p.Name] = p.rss()
	}
	var out []Result
	for _, proto := range h.opts.protocols {
		if ctx.Err() != nil {
			break
		}
		h.logf("  %s %s", spec.ID, proto)
		h.cellsLeft--
		res := h.measure(ctx, spec.ID, proto, lp, idle)
		// A measurement disturbed by other programs is taken again when
		// the deadline leaves room; the quieter one is kept.
		if res.Error == "" && noiseOf(&res) > noisyAbove && h.slack() > h.cellTime() && ctx.Err() == nil {
			h.logf("    noisy (%.0f%% of a core outside the benchmark): measuring again", noiseOf(&res))
			again := h.measure(ctx, spec.ID, proto, lp, idle)
			if again.Error == "" && noiseOf(&again) < noiseOf(&res) {
				again.QuietWait += res.QuietWait
				res = again
			}
			res.Attempts = 2
		}
		out = append(out, res)
	}
	return out
}

// measure runs the warm-up, the fixed-rate run (latency, CPU per request)
// and the max-rate run (throughput) of one protocol on one path, sampling
// the proxies' memory throughout.
func (h *harness) measure(ctx context.Context, path, proto string, lp *livePath, idle map[string]int64) Result {
	t, proxies := lp.targets[proto], lp.proxies[proto]
	res := Result{Path: path, Protocol: proto}
	res.QuietWait = h.waitQuiet(ctx, lp).Seconds()
	procs := make([]proxyProc, len(proxies))
	for i, p := range proxies {
		procs[i] = *p
	}
	sampler := sampleRSS(procs, 100*time.Millisecond)
	if _, err := h.load.latency(ctx, proto, t, h.opts.warmup); err != nil {
		sampler.Stop()
		res.Error = "warm-up: " + err.Error()
		return res
	}
	cpu0 := cpuOf(procs)
	n0 := h.noiseMark(lp)
	lat, err := h.load.latency(ctx, proto, t, h.opts.latency)
	cpu1 := cpuOf(procs)
	res.Noise = h.noiseSince(n0, lp)
	if err != nil {
		sampler.Stop()
		res.Error = "fixed rate: " + err.Error()
		return res
	}
	res.Latency = &lat
	for i, p := range procs {
		d := cpu1[i] - cpu0[i]
		res.CPUPer1k += d / float64(lat.Requests) * 1000
		res.Proxies = append(res.Proxies, ProxyResult{Name: p.Name, CPUPer1k: d / float64(lat.Requests) * 1000, IdleRSS: idle[p.Name]})
	}

	c0 := readCPU(h.opts.clientCPU)
	n1 := h.noiseMark(lp)
	start := time.Now()
	thr, err := h.load.throughput(ctx, proto, t, h.opts.throughput)
	wall := time.Since(start).Seconds()
	cpu2 := cpuOf(procs)
	res.NoiseMax = h.noiseSince(n1, lp)
	c1 := readCPU(h.opts.clientCPU)
	peaks := sampler.Stop()
	for i := range res.Proxies {
		res.Proxies[i].PeakRSS = peaks[res.Proxies[i].Name]
	}
	if err != nil {
		res.Error = "max rate: " + err.Error()
		return res
	}
	res.Throughput = &thr
	var used float64
	for i := range procs {
		used += cpu2[i] - cpu1[i]
	}
	if wall > 0 {
		res.ProxyBusy = 100 * used / wall
	}
	if c1.total > c0.total {
		res.ClientBusy = 100 * float64(c1.busy-c0.busy) / float64(c1.total-c0.total)
	}
	return res
}

// waitQuiet waits, before a measurement, until the machine is quiet: the
// CPU spent over one second on anything but this benchmark below 10 % of
// one core. Other people's builds,
// tests and benchmarks on a shared machine would otherwise land in the
// numbers. It waits at most -quiet-wait per measurement and
// -quiet-budget per run, then goes on; the report shows the noise either
// way (Noise).
func (h *harness) waitQuiet(ctx context.Context, lp *livePath) time.Duration {
	start := time.Now()
	limit := min(h.opts.quietWait, h.slack())
	if limit <= 0 {
		return 0
	}
	logged := false
	for {
		m := h.noiseMark(lp)
		select {
		case <-ctx.Done():
			return time.Since(start)
		case <-time.After(time.Second):
		}
		busy := h.noiseSince(m, lp)
		waited := time.Since(start)
		if busy < 10 || waited >= limit {
			if !logged { // quiet at the first look: no wait to speak of
				return 0
			}
			h.waited += waited
			h.logf("    waited %s for a quiet machine (%.0f%% of a core busy)", waited.Round(time.Second), busy)
			return waited
		}
		if !logged {
			h.logf("    machine busy (%.0f%% of a core outside the benchmark): waiting up to %s", busy, limit.Round(time.Second))
			logged = true
		}
	}
}

// noiseMark is the machine's task time and this benchmark's CPU time at
// one moment.
type noiseMark struct {
	machine cpuTimes
	ours    float64 // seconds
}

// ourCPU is the CPU time of every process of this benchmark: the harness
// and the load generators it waited for (/proc/self: utime, stime, cutime,
// cstime), the backend, the control plane, and every proxy of the path
// (idle ones too).
func (h *harness) ourCPU(lp *livePath) float64 {
	t := float64(selfTicks()) / clockTicks
	for _, pid := range h.ownPIDs {
		if n, err := cpuTicks(pid); err == nil {
			t += float64(n) / clockTicks
		}
	}
	for _, p := range lp.all {
		t += p.cpuSeconds()
	}
	return t
}

func (h *harness) noiseMark(lp *livePath) noiseMark {
	return noiseMark{machine: machineTasks(), ours: h.ourCPU(lp)}
}

// noiseSince is the CPU the machine spent on anything but this benchmark
// (other people's programs, the system) since m, in % of one core.
// Interrupts and softirqs (loopback networking) are not counted.
func (h *harness) noiseSince(m noiseMark, lp *livePath) float64 {
	now := h.noiseMark(lp)
	perCore := float64(now.machine.total-m.machine.total) / float64(max(1, runtime.NumCPU()))
	if perCore <= 0 {
		return 0
	}
	other := float64(now.machine.tasks-m.machine.tasks) - (now.ours-m.ours)*clockTicks
	return max(0, 100*other/perCore)
}

func cpuOf(ps []proxyProc) []float64 {
	out := make([]float64, len(ps))
	for i, p := range ps {
		out[i] = p.cpuSeconds()
	}
	return out
}

// probeUntil sends one request of proto to t until it succeeds: proxies
// are ready and configured (Trellis: the route and endpoints arrived).
func probeUntil(ctx context.Context, proto string, t target, procs []*proc, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	var err error
	for time.Now().Before(deadline) {
		if err = probe(ctx, proto, t); err == nil {
			return nil
		}
		for _, p := range procs {
			if err := p.exited(); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("%s %s (Host %q) not answering after %s: %v", proto, t.Addr, t.Host, limit, err)
}

func probe(ctx context.Context, proto string, t target) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if proto == protoGRPC {
		opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
		if t.Host != "" {
			opts = append(opts, grpc.WithAuthority(t.Host))
		}
		conn, err := grpc.NewClient(t.Addr, opts...)
		if err != nil {
			return err
		}
		defer conn.Close()
		out := new(wrapperspb.BytesValue)
		if err := conn.Invoke(ctx, "/"+grpcService+"/"+grpcMethod, wrapperspb.Bytes(body), out); err != nil {
			return err
		}
		if len(out.GetValue()) != BodySize {
			return fmt.Errorf("gRPC reply of %d bytes", len(out.GetValue()))
		}
		return nil
	}
	var protos http.Protocols
	if proto == protoH2C {
		protos.SetUnencryptedHTTP2(true)
	} else {
		protos.SetHTTP1(true)
	}
	tr := &http.Transport{Protocols: &protos, DisableKeepAlives: proto == protoH1}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, t.url(), nil)
	if err != nil {
		return err
	}
	if t.Host != "" {
		req.Host = t.Host
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || len(b) != BodySize {
		return fmt.Errorf("status %d, %d bytes: %.200s", resp.StatusCode, len(b), b)
	}
	return nil
}
