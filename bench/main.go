// Command bench compares Trellis with a direct connection, nginx and
// HAProxy: the same backend, the same load, in one run. From the
// repository root:
//
//	go run ./bench            # full run (~13 min): report in bench/results/
//	go run ./bench -quick     # short durations, to iterate (report *-quick.md, not committed)
//	make bench
//
// It installs what is missing (apt-get: wrk, nghttp2-client, nginx,
// haproxy; go install: ghz, fortio into bench/.tools), builds trellis,
// starts the backend (this binary, `bench backend`), and for every path
// and protocol measures latency at a fixed rate, maximum throughput, CPU
// per request and memory of every proxy process. See docs/performance.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "backend" {
		if err := runBackend(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "backend:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		stopAll()
		os.Exit(1)
	}
}

func run() error {
	var o options
	var paths, protocols, render string
	noInstall := false
	flag.BoolVar(&o.quick, "quick", false, "short durations (5 s fixed rate, 3 s max rate, 1 s warm-up) to iterate; the report is not for docs")
	flag.DurationVar(&o.latency, "latency", 20*time.Second, "duration of each fixed-rate (latency, CPU) run")
	flag.DurationVar(&o.throughput, "throughput", 10*time.Second, "duration of each max-rate (throughput) run")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "fixed-rate warm-up before each protocol's runs, not measured")
	flag.IntVar(&o.rate, "rate", 1000, "requests per second of the fixed-rate runs")
	flag.IntVar(&o.connections, "connections", 16, "connections (and requests in flight) of every run")
	flag.StringVar(&paths, "paths", strings.Join(defaultPaths, ","), "paths to measure, comma-separated, or \"all\"; known: "+pathIDs())
	flag.StringVar(&protocols, "protocols", strings.Join(allProtocols, ","), "protocols: http1,h2c,grpc")
	flag.StringVar(&o.clientCPU, "client-cpu", "0", "CPU list (taskset -c) of the load generators and the control plane")
	flag.StringVar(&o.proxyCPU, "proxy-cpu", "1", "CPU list of the proxies under test (all proxies of a path share it)")
	flag.StringVar(&o.backendCPU, "backend-cpu", "0", "CPU list of the backend")
	flag.BoolVar(&noInstall, "no-install", false, "fail instead of installing missing tools")
	flag.StringVar(&o.outDir, "out", "", "results directory (default <repo>/bench/results)")
	flag.BoolVar(&o.docs, "docs", true, "copy the results into docs/performance.md (full runs of every path and protocol only)")
	flag.DurationVar(&o.quietWait, "quiet-wait", 30*time.Second, "before each measurement, wait up to this long for the machine to be quiet (0: do not wait)")
	flag.DurationVar(&o.deadline, "deadline", 14*time.Minute+30*time.Second, "the run's time limit: what it leaves over the nominal durations pays for waiting for quiet and re-measuring noisy cells (quick runs: nominal + 1 min; 0: neither)")
	flag.StringVar(&render, "render", "", "render the report and chart again from a results .json, and exit")
	flag.Parse()
	o.install = !noInstall

	root, err := moduleRoot()
	if err != nil {
		return err
	}
	if o.outDir == "" {
		o.outDir = filepath.Join(root, "bench", "results")
	}
	if render != "" {
		r, err := loadRun(render)
		if err != nil {
			return err
		}
		base := strings.TrimSuffix(render, ".json")
		return writeReport(r, base)
	}
	if o.quick {
		setDefault := func(name string, d *time.Duration, v time.Duration) {
			if !flagSet(name) {
				*d = v
			}
		}
		setDefault("latency", &o.latency, 5*time.Second)
		setDefault("throughput", &o.throughput, 3*time.Second)
		setDefault("warmup", &o.warmup, time.Second)
	}
	if paths == "all" {
		paths = pathIDs()
	}
	var specs []pathSpec
	for _, id := range strings.Split(paths, ",") {
		s, ok := findPath(strings.TrimSpace(id))
		if !ok {
			return fmt.Errorf("-paths: unknown path %q (known: %s)", id, pathIDs())
		}
		specs = append(specs, s)
	}
	for _, p := range strings.Split(protocols, ",") {
		p = strings.TrimSpace(p)
		if _, ok := protocolTitle[p]; !ok {
			return fmt.Errorf("-protocols: unknown protocol %q", p)
		}
		o.protocols = append(o.protocols, p)
	}
	if runtime.NumCPU() < 2 {
		fmt.Fprintln(os.Stderr, "bench: one CPU only: proxies, client and backend share it")
		o.clientCPU, o.proxyCPU, o.backendCPU = "0", "0", "0"
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer stopAll()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	// The harness itself (RSS sampling, probes, the registration stream)
	// stays off the proxy core.
	_ = exec.Command("taskset", "-a", "-p", "-c", o.clientCPU, fmt.Sprint(os.Getpid())).Run()

	started := time.Now().UTC()
	loadavg, _ := os.ReadFile("/proc/loadavg")
	tools, err := ensureTools(root, filepath.Join(root, "bench", ".tools"), o.install, logf)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "trellis-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	h := &harness{opts: o, tools: tools, work: work, logf: logf, started: started, cellsLeft: len(specs) * len(o.protocols),
		load: newLoader(tools, o.clientCPU, o.connections, o.rate, work, filepath.Join(root, "bench", "proto", "bench.proto"))}
	if err := h.startBackend(); err != nil {
		return err
	}

	nominal := time.Duration(h.cellsLeft)*h.cellTime() + time.Duration(len(specs))*3*time.Second
	if o.quick && !flagSet("deadline") {
		h.opts.deadline = time.Since(h.started) + nominal + time.Minute
	}
	logf("measuring %d paths × %d protocols: about %s", len(specs), len(o.protocols), nominal.Round(time.Second))
	if h.opts.deadline > 0 {
		logf("the run ends by %s at the latest (waiting for a quiet machine and re-measuring noisy cells use the slack)",
			started.Add(h.opts.deadline).Local().Format("15:04:05"))
	}

	r := &Run{
		Started: started, Command: commandLine(), Quick: o.quick, LoadAvg: strings.TrimSpace(string(loadavg)),
		Machine: describeMachine(root),
		Settings: Settings{Rate: o.rate, Connections: o.connections,
			LatencyDuration: o.latency.String(), ThroughputDuration: o.throughput.String(), Warmup: o.warmup.String(),
			ClientCPU: o.clientCPU, ProxyCPU: o.proxyCPU, BackendCPU: o.backendCPU, BodyBytes: BodySize},
	}
	r.Machine.Tools = tools.versions()
	for _, s := range specs {
		r.Paths = append(r.Paths, PathInfo{ID: s.ID, Title: s.Title, Ref: s.Ref, What: s.What, Hops: s.Hops})
	}
	for _, s := range specs {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		logf("path %s", s.ID)
		res := h.measurePath(ctx, s)
		for _, x := range res {
			if x.Error != "" {
				logf("  %s %s failed: %s", x.Path, x.Protocol, firstLine(x.Error))
			}
		}
		r.Results = append(r.Results, res...)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	r.Finished = time.Now().UTC()
	stopAll()

	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		return err
	}
	name := started.Format("2006-01-02T15-04-05Z")
	if o.quick {
		name += "-quick"
	}
	base := filepath.Join(o.outDir, name)
	if err := saveRun(r, base+".json"); err != nil {
		return err
	}
	if err := writeReport(r, base); err != nil {
		return err
	}
	logf("report: %s.md (chart %s.png, data %s.json)", base, base, base)
	fmt.Println(renderTables(r))
	full := !o.quick && len(specs) >= len(defaultPaths) && len(o.protocols) == len(allProtocols)
	if o.docs && full {
		doc := filepath.Join(root, "docs", "performance.md")
		rel, _ := filepath.Rel(filepath.Dir(doc), base)
		if err := updateDocs(doc, r, rel); err != nil {
			logf("docs/performance.md not updated: %v", err)
		} else {
			logf("docs/performance.md updated")
		}
	}
	return nil
}

func writeReport(r *Run, base string) error {
	if err := writeChart(r, base+".png"); err != nil {
		return fmt.Errorf("chart: %v", err)
	}
	return os.WriteFile(base+".md", []byte(renderReport(r, filepath.Base(base)+".png")), 0o644)
}

func pathIDs() string {
	var ids []string
	for _, p := range allPaths {
		ids = append(ids, p.ID)
	}
	return strings.Join(ids, ",")
}

func flagSet(name string) bool {
	set := false
	flag.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

func commandLine() string {
	if len(os.Args) == 1 {
		return "go run ./bench"
	}
	return "go run ./bench " + strings.Join(os.Args[1:], " ")
}

// moduleRoot is the directory of trellis's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %v", err)
	}
	mod := strings.TrimSpace(string(out))
	if mod == "" || mod == os.DevNull {
		return "", fmt.Errorf("run from inside the trellis repository (no go.mod found)")
	}
	return filepath.Dir(mod), nil
}
