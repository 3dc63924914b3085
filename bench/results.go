package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Run is everything one harness run measured; it is saved as JSON next to
// the report so the report and chart can be rendered again (-render).
type Run struct {
	Started, Finished time.Time
	Command           string
	Quick             bool
	LoadAvg           string // /proc/loadavg before the run
	Machine           Machine
	Settings          Settings
	Paths             []PathInfo
	Results           []Result
	Notes             []string
}

// Machine describes where the run happened.
type Machine struct {
	CPU       string
	Cores     int
	MemoryGiB float64
	Kernel    string
	OS        string
	Commit    string
	Tools     map[string]string
}

// Settings is the load every path gets.
type Settings struct {
	Rate, Connections                   int
	LatencyDuration, ThroughputDuration string
	Warmup                              string
	ClientCPU, ProxyCPU, BackendCPU     string
	BodyBytes                           int
}

// PathInfo is a pathSpec without its start function.
type PathInfo struct {
	ID, Title, Ref, What string
	Hops                 int
}

// Result is one path × protocol.
type Result struct {
	Path, Protocol string
	Latency        *Latency    `json:",omitempty"`
	Throughput     *Throughput `json:",omitempty"`
	// CPUPer1k is the CPU seconds (user + system) all the path's proxy
	// processes used per 1,000 requests during the fixed-rate run.
	CPUPer1k float64
	// ProxyBusy and ClientBusy are the % of one core used by the path's
	// proxies, and the client core's busy %, during the max-rate run.
	ProxyBusy, ClientBusy float64
	// Noise and NoiseMax are the CPU the machine spent on anything but
	// this benchmark (other programs, the system; not interrupts), in % of
	// one core, during the fixed-rate and the max-rate run.
	Noise, NoiseMax float64
	// QuietWait is how long the harness waited for a quiet machine before
	// this measurement, in seconds.
	QuietWait float64
	// Attempts is 2 when a noisy measurement was taken again (the quieter
	// one is kept).
	Attempts int           `json:",omitempty"`
	Proxies  []ProxyResult `json:",omitempty"`
	Error    string        `json:",omitempty"`
}

// ProxyResult is one proxy process (with its children) on the path.
type ProxyResult struct {
	Name     string
	CPUPer1k float64
	IdleRSS  int64 // bytes, VmRSS after start, before any request
	PeakRSS  int64 // bytes, highest VmRSS sampled every 100 ms under load
}

func (r *Run) result(path, proto string) *Result {
	for i := range r.Results {
		if r.Results[i].Path == path && r.Results[i].Protocol == proto {
			return &r.Results[i]
		}
	}
	return nil
}

func (r *Run) pathInfo(id string) *PathInfo {
	for i := range r.Paths {
		if r.Paths[i].ID == id {
			return &r.Paths[i]
		}
	}
	return nil
}

func (r *Run) protocols() []string {
	var out []string
	for _, p := range allProtocols {
		for _, res := range r.Results {
			if res.Protocol == p {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

func saveRun(r *Run, file string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(file, append(b, '\n'), 0o644)
}

func loadRun(file string) (*Run, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var r Run
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("%s: %v", file, err)
	}
	return &r, nil
}

// describeMachine reads the CPU model, memory, kernel and OS.
func describeMachine(root string) Machine {
	m := Machine{Cores: runtime.NumCPU(), Tools: map[string]string{}}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 2 && f[0] == "MemTotal:" {
				kb, _ := strconv.ParseFloat(f[1], 64)
				m.MemoryGiB = kb / (1 << 20)
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	if out, err := exec.Command("git", "-C", root, "rev-parse", "--short", "HEAD").Output(); err == nil {
		m.Commit = strings.TrimSpace(string(out))
		if st, err := exec.Command("git", "-C", root, "status", "--porcelain", "--", "cmd", "internal").Output(); err == nil && len(st) > 0 {
			m.Commit += " + uncommitted changes"
		}
	}
	return m
}

// cpuTimes are one CPU's jiffies from /proc/stat.
type cpuTimes struct {
	// busy is everything but idle and iowait; tasks is user + nice +
	// system + steal: what programs (or the hypervisor) took, without the
	// interrupts and softirqs that loopback networking costs the core.
	busy, tasks, total int64
}

// readCPU reads the /proc/stat line of one CPU ("1").
func readCPU(cpu string) cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	return parseProcStat(string(b), "cpu"+cpu)
}

// parseProcStat reads the line named name ("cpu1").
func parseProcStat(s, name string) cpuTimes {
	var t cpuTimes
	for _, l := range strings.Split(s, "\n") {
		f := strings.Fields(l)
		if len(f) < 9 || f[0] != name {
			continue
		}
		for i, v := range f[1:] {
			if i >= 8 { // guest time is already in user
				break
			}
			n, _ := strconv.ParseInt(v, 10, 64)
			t.total += n
			switch i {
			case 3, 4: // idle, iowait
			case 0, 1, 2, 7: // user, nice, system, steal
				t.busy += n
				t.tasks += n
			default: // irq, softirq
				t.busy += n
			}
		}
	}
	return t
}

// machineTasks is the tasks time of every CPU together (the "cpu" line).
func machineTasks() cpuTimes {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	return parseProcStat(string(b), "cpu")
}
