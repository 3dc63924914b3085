// Command controlplane measures one `trellis control` under many proxies:
// how long a Route change and an endpoint change take to reach every
// proxy, the control plane's memory and CPU, and how much config each
// proxy receives.
//
//	go run ./bench/controlplane [-proxies 100,1000,2000] [-services 100,1000] [-changes 20]
//
// It builds cmd/trellis, starts `trellis control` (embedded etcd in a temp
// dir, :0 ports), populates a mesh of S services (a Route each; versions v1
// and v2 of two instances each, registered the way sidecars register: one
// membership stream per instance announcing it ready), connects N
// simulated proxies (one ADS SotW stream each, subscribing like the real
// proxy and ACKing every response), and measures. The report goes to
// bench/controlplane/results/<UTC date>.md. See docs/performance.md,
// "Control plane at scale".
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	proxies, services []int
	changes           int
	endpointChanges   int
	proxiesPerConn    int
	instancesPerConn  int
	pushTimeout       time.Duration
	deadline          time.Duration
	waitIdle          time.Duration
	report            string
	inProcess         bool
	binary            string
	cpuProfile        string
	controlArgs       []string // extra flags for trellis control
	args              []string
}

func main() {
	log.SetFlags(log.Ltime | log.Lmicroseconds)
	cfg, err := parseFlags(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, cfg.deadline)
	err = run(ctx, cfg)
	cancel()
	stop()
	if err != nil {
		log.Printf("error: %v", err)
		os.Exit(1)
	}
}

func parseFlags(args []string) (*config, error) {
	fs := flag.NewFlagSet("controlplane", flag.ContinueOnError)
	cfg := &config{args: args}
	proxies := fs.String("proxies", "100,1000,2000", "simulated proxy counts, comma-separated")
	services := fs.String("services", "100,1000", "mesh sizes in services, comma-separated")
	fs.IntVar(&cfg.changes, "changes", 20, "Route changes measured per point")
	fs.IntVar(&cfg.endpointChanges, "endpoint-changes", 4, "endpoint changes measured per point (an instance added, then removed, ...)")
	fs.IntVar(&cfg.proxiesPerConn, "proxies-per-conn", 1, "proxy streams sharing one gRPC connection (1: one connection per proxy, as real proxies)")
	fs.IntVar(&cfg.instancesPerConn, "instances-per-conn", 100, "instance registration streams sharing one gRPC connection")
	fs.DurationVar(&cfg.pushTimeout, "push-timeout", time.Minute, "longest wait for one push (or the initial sync) to reach every proxy")
	fs.DurationVar(&cfg.waitIdle, "wait-idle", 0, "before each point, wait up to this long for other processes to leave the CPUs idle (a shared machine)")
	fs.DurationVar(&cfg.deadline, "deadline", 20*time.Minute, "the whole run ends after this")
	fs.StringVar(&cfg.report, "report", "", "Markdown report path (default bench/controlplane/results/<UTC date>.md; \"-\" for none)")
	fs.StringVar(&cfg.binary, "binary", "", "a trellis binary to measure instead of building ./cmd/trellis (e.g. an older build, for before/after)")
	fs.BoolVar(&cfg.inProcess, "inprocess", false, "run the control plane inside this process (for -cpuprofile; its memory and CPU then include the proxies)")
	fs.StringVar(&cfg.cpuProfile, "cpuprofile", "", "with -inprocess: write CPU profiles of the connect and push phases, and a heap profile, to <prefix>.<N>x<S>.<phase>.pprof")
	controlArgs := fs.String("control-args", "", "extra flags for trellis control, space-separated (e.g. \"--xds-admit-rate 0\"; not with -inprocess)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	cfg.controlArgs = strings.Fields(*controlArgs)
	var err error
	if cfg.proxies, err = intList(*proxies); err != nil {
		return nil, fmt.Errorf("-proxies: %w", err)
	}
	if cfg.services, err = intList(*services); err != nil {
		return nil, fmt.Errorf("-services: %w", err)
	}
	if cfg.changes < 1 || cfg.endpointChanges < 0 || cfg.proxiesPerConn < 1 || cfg.instancesPerConn < 1 {
		return nil, fmt.Errorf("-changes must be ≥ 1, -endpoint-changes ≥ 0, the per-conn counts ≥ 1")
	}
	if cfg.binary != "" && cfg.inProcess {
		return nil, fmt.Errorf("-binary and -inprocess exclude each other")
	}
	if cfg.cpuProfile != "" && !cfg.inProcess {
		return nil, fmt.Errorf("-cpuprofile needs -inprocess (the child process is not profiled)")
	}
	return cfg, nil
}

func intList(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a count ≥ 1", f)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

func run(ctx context.Context, cfg *config) error {
	root, err := moduleRoot(ctx)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "trellis-cpbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	bin := cfg.binary
	if !cfg.inProcess && bin == "" {
		log.Printf("building trellis")
		if bin, err = buildTrellis(ctx, root, dir); err != nil {
			return err
		}
	}
	started := time.Now()
	var results []result
	failed := false
	for _, s := range cfg.services {
		rs, err := runMesh(ctx, cfg, bin, dir, s)
		results = append(results, rs...)
		for _, r := range rs {
			failed = failed || r.Err != ""
		}
		if err != nil {
			keepLogs(dir)
			return err
		}
	}
	if failed {
		keepLogs(dir)
	}
	elapsed := time.Since(started)

	md := report(cfg, results, elapsed)
	fmt.Println(md)
	if cfg.report == "-" {
		return nil
	}
	path := cfg.report
	if path == "" {
		path = filepath.Join(root, "bench", "controlplane", "results", time.Now().UTC().Format("2006-01-02")+".md")
	}
	if err := os.WriteFile(path, []byte(md), 0o644); err != nil {
		return err
	}
	log.Printf("report written to %s", path)
	return nil
}

// keepLogs copies the control plane logs out of the temp dir before it is
// removed, so a failed run can be read.
func keepLogs(dir string) {
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, l := range logs {
		data, err := os.ReadFile(l)
		if err != nil {
			continue
		}
		dst := filepath.Join(os.TempDir(), "trellis-cpbench-"+filepath.Base(l))
		if os.WriteFile(dst, data, 0o644) == nil {
			log.Printf("control plane log kept at %s", dst)
		}
	}
}

func machine() string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				model = strings.TrimSpace(v)
				break
			}
		}
	}
	mem := ""
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(strings.SplitN(string(data), "\n", 2)[0]); len(f) >= 2 {
			if kb, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				mem = fmt.Sprintf(", %.0f GiB RAM", float64(kb)/(1<<20))
			}
		}
	}
	kernel := ""
	if data, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		kernel = ", Linux " + strings.TrimSpace(string(data))
	}
	return fmt.Sprintf("%s, %d CPUs%s%s, %s %s/%s", model, runtime.NumCPU(), mem, kernel, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
