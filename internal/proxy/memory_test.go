package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/model/modeltest"
)

// BenchmarkSidecarProcess runs the real `trellis proxy` binary (a
// client-only sidecar, so one hop: app → outbound → instance) configured
// by a go-control-plane ADS server over a real stream with a mesh of 0 or
// 1,000 services (2 versions, 2 instances each, shaped as the control
// plane publishes them: modeltest.Scale), and reports from /proc:
//
//   - rss-ready-MB when /ready first answers 200; rss-MB after 5 s idle,
//     and its parts anon-MB (heap, stacks: the proxy's own) and file-MB
//     (the binary's pages, shared by every process running the binary);
//   - with services: loaded-rss-MB at the end of 20,000 HTTP/1.1 keep-alive
//     requests from 16 connections to the last service (whose instances
//     are an app in this process), and cpu-ms/1k-req, the proxy process's
//     CPU time per 1,000 of them; then cpu-ms/1k-req@1k-rps, the same at
//     1,000 requests/s for 5 s (the fixed rate).
//
// It builds the binary. The child inherits the environment, so GOGC and
// GOMEMLIMIT can be compared:
//
//	go test ./internal/proxy -run XXX -bench SidecarProcess -benchtime 1x
//	GOGC=400 go test ./internal/proxy -run XXX -bench SidecarProcess -benchtime 1x
func BenchmarkSidecarProcess(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads /proc")
	}
	bin := filepath.Join(b.TempDir(), "trellis")
	if out, err := exec.Command("go", "build", "-o", bin, "trellis.dev/trellis/cmd/trellis").CombinedOutput(); err != nil {
		b.Fatalf("go build: %v\n%s", err, out)
	}
	for _, services := range []int{0, 1000} {
		b.Run(fmt.Sprintf("services=%d", services), func(b *testing.B) {
			var m processMetrics
			for range b.N {
				m.add(runSidecar(b, bin, services))
			}
			n := float64(b.N)
			b.ReportMetric(m.ready.total/n, "rss-ready-MB")
			b.ReportMetric(m.idle.total/n, "rss-MB")
			b.ReportMetric(m.idle.anon/n, "anon-MB")
			b.ReportMetric(m.idle.file/n, "file-MB")
			if services > 0 {
				b.ReportMetric(m.loaded.total/n, "loaded-rss-MB")
				b.ReportMetric(m.cpuPer1k/n, "cpu-ms/1k-req")
				b.ReportMetric(m.cpuPer1kFixed/n, "cpu-ms/1k-req@1k-rps")
			}
		})
	}
}

type processMetrics struct {
	ready, idle, loaded rss
	cpuPer1k            float64 // ms, as fast as it goes
	cpuPer1kFixed       float64 // ms, at fixedRate
}

func (m *processMetrics) add(o processMetrics) {
	m.ready.add(o.ready)
	m.idle.add(o.idle)
	m.loaded.add(o.loaded)
	m.cpuPer1k += o.cpuPer1k
	m.cpuPer1kFixed += o.cpuPer1kFixed
}

const (
	loadRequests    = 20000
	loadConnections = 16
	fixedRate       = 1000 // requests/s
	fixedSeconds    = 5
)

func runSidecar(b *testing.B, bin string, services int) (m processMetrics) {
	backend := startApp(b, "v1")
	res := modeltest.Scale(services, 2, 2)
	target := fmt.Sprintf("svc-%04d", services-1) // the last: routing's worst case
	if services > 0 {
		// The target's instances, all versions, are the app here.
		host, port, _ := net.SplitHostPort(backend.addr)
		p, _ := strconv.Atoi(port)
		for i, l := range res.Loads {
			if s, _ := meshxds.SplitClusterName(l.GetClusterName()); s == target {
				res.Loads[i] = modeltest.Load(l.GetClusterName(), "zone-a",
					modeltest.Endpoint(host, uint32(p), "v1", "app", corev3.HealthStatus_HEALTHY))
			}
		}
	}
	srv := startXDS(b)
	admin, outbound := freeAddr(b), freeAddr(b)
	_, outPort, _ := net.SplitHostPort(outbound)
	cmd := exec.Command(bin, "proxy", "--service", "bench", "--control", srv.addr, "--admin-addr", admin,
		"--outbound-port", outPort, "--log-level", "warn")
	if os.Getenv("PROXY_GCTRACE") != "" {
		cmd.Env = append(os.Environ(), "GODEBUG=gctrace=1")
		cmd.Stderr = os.Stderr
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}()
	// The node ID is random: configure whichever node connects.
	var node string
	waitFor(b, "the proxy's ADS stream", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		for id := range srv.nodes {
			node = id
		}
		return node != ""
	})
	srv.set(b, node, "1", res)
	waitFor(b, "/ready", func() bool {
		resp, err := http.Get("http://" + admin + "/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	pid := cmd.Process.Pid
	m.ready = rssMB(b, pid)
	time.Sleep(5 * time.Second)
	m.idle = rssMB(b, pid)
	if services == 0 {
		return m
	}

	c := h1ProxyClient(b, outbound)
	get := func() bool {
		resp, err := c.Get("http://" + target + "/load")
		if err != nil {
			b.Error(err)
			return false
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Errorf("status %d", resp.StatusCode)
			return false
		}
		return true
	}

	// As fast as 16 connections go.
	cpu0 := cpuTime(b, pid)
	var wg sync.WaitGroup
	var next sync.Mutex
	left := loadRequests
	for range loadConnections {
		wg.Go(func() {
			for {
				next.Lock()
				if left == 0 {
					next.Unlock()
					return
				}
				left--
				next.Unlock()
				if !get() {
					return
				}
			}
		})
	}
	wg.Wait()
	m.loaded = rssMB(b, pid)
	m.cpuPer1k = float64(cpuTime(b, pid)-cpu0) / float64(time.Millisecond) / (loadRequests / 1000)

	// At 1,000 requests/s over 16 connections, the fixed rate: a
	// proxy that is mostly waiting pays its wake-ups on every request.
	cpu0 = cpuTime(b, pid)
	for range loadConnections {
		wg.Go(func() {
			tick := time.NewTicker(loadConnections * time.Second / fixedRate)
			defer tick.Stop()
			for range fixedRate * fixedSeconds / loadConnections {
				<-tick.C
				if !get() {
					return
				}
			}
		})
	}
	wg.Wait()
	m.cpuPer1kFixed = float64(cpuTime(b, pid)-cpu0) / float64(time.Millisecond) / (fixedRate * fixedSeconds / 1000)
	return m
}

// rss is resident memory in MiB: total, anonymous (the process's own:
// heap, stacks) and file-backed (the binary's pages, shared with every
// process running the same binary).
type rss struct{ total, anon, file float64 }

func (r *rss) add(o rss) { r.total, r.anon, r.file = r.total+o.total, r.anon+o.anon, r.file+o.file }

// rssMB reads pid's VmRSS, RssAnon and RssFile.
func rssMB(b *testing.B, pid int) rss {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var r rss
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key, val, _ := strings.Cut(sc.Text(), ":")
		kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(val), " kB"))
		if err != nil {
			continue
		}
		switch key {
		case "VmRSS":
			r.total = float64(kb) / 1024
		case "RssAnon":
			r.anon = float64(kb) / 1024
		case "RssFile":
			r.file = float64(kb) / 1024
		}
	}
	return r
}

// cpuTime is pid's user + system CPU time (/proc/pid/stat, in clock ticks
// of 10 ms: USER_HZ is 100 on Linux).
func cpuTime(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name may hold spaces; the fields after it do not.
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	utime, _ := strconv.Atoi(fields[11]) // field 14 of stat
	stime, _ := strconv.Atoi(fields[12]) // field 15
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

func freeAddr(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
