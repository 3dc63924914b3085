package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat:
// 100 on every Linux architecture Go supports.
const clockTicks = 100

// cpuTicks is utime+stime of one process (all its threads) from
// /proc/PID/stat.
func cpuTicks(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatTicks(b)
}

// selfTicks is this process's utime+stime plus cutime+cstime (the CPU of
// the children it waited for: the load generators).
func selfTicks() int64 {
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		return 0
	}
	own, err := parseStatTicks(b)
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 15 {
		return own
	}
	cu, _ := strconv.ParseInt(f[13], 10, 64)
	cs, _ := strconv.ParseInt(f[14], 10, 64)
	return own + cu + cs
}

// parseStatTicks reads fields 14 (utime) and 15 (stime) of a
// /proc/PID/stat line. The command name (field 2) may hold spaces and
// parentheses, so fields are counted after the last ')'.
func parseStatTicks(b []byte) (int64, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat: no ')' in %q", b)
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("stat: %d fields after the name", len(f))
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("stat: utime %q stime %q", f[11], f[12])
	}
	return ut + st, nil
}

// parentPID is field 4 of /proc/PID/stat.
func parentPID(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

// memInfo is VmRSS and VmHWM of one process, in bytes.
type memInfo struct{ RSS, HWM int64 }

func readMem(pid int) (memInfo, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memInfo{}, err
	}
	return parseStatus(b)
}

// parseStatus reads VmRSS and VmHWM (kB) from /proc/PID/status.
func parseStatus(b []byte) (memInfo, error) {
	var m memInfo
	var seen int
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		f := strings.Fields(val)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("status: %s: %q", key, val)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("status: %s: %v", key, err)
		}
		if key == "VmRSS" {
			m.RSS = kb * 1024
		} else {
			m.HWM = kb * 1024
		}
		seen++
	}
	if seen != 2 {
		return m, fmt.Errorf("status: VmRSS or VmHWM missing")
	}
	return m, nil
}

// processTree is pid and its descendants (an nginx master and its worker).
func processTree(root int) []int {
	children := map[int][]int{}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if pp := parentPID(pid); pp > 0 {
			children[pp] = append(children[pp], pid)
		}
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// proxyProc is one proxy under test: a root process and its descendants,
// whose CPU and memory count together.
type proxyProc struct {
	Name string
	PID  int
	pids []int // PID and its descendants, found once by resolve
}

// resolve finds the proxy's processes (call it once the proxy is ready:
// nginx forks its worker after start).
func (p *proxyProc) resolve() { p.pids = processTree(p.PID) }

// cpuSeconds is the CPU time used so far by the proxy's processes.
func (p proxyProc) cpuSeconds() float64 {
	var t int64
	for _, pid := range p.pids {
		if n, err := cpuTicks(pid); err == nil {
			t += n
		}
	}
	return float64(t) / clockTicks
}

// rss is the sum of VmRSS over the proxy's processes, in bytes.
func (p proxyProc) rss() int64 {
	var t int64
	for _, pid := range p.pids {
		if m, err := readMem(pid); err == nil {
			t += m.RSS
		}
	}
	return t
}

// hwm is the sum of VmHWM (each process's own peak) over the proxy's
// processes, in bytes: an upper bound of the peak of the sum.
func (p proxyProc) hwm() int64 {
	var t int64
	for _, pid := range p.pids {
		if m, err := readMem(pid); err == nil {
			t += m.HWM
		}
	}
	return t
}

// rssSampler samples the RSS of a set of proxies every interval and keeps
// each one's maximum.
type rssSampler struct {
	mu   sync.Mutex
	peak map[string]int64
	stop chan struct{}
	done chan struct{}
}

func sampleRSS(procs []proxyProc, every time.Duration) *rssSampler {
	s := &rssSampler{peak: map[string]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	sample := func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, p := range procs {
			if r := p.rss(); r > s.peak[p.Name] {
				s.peak[p.Name] = r
			}
		}
	}
	sample()
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				sample()
				return
			case <-t.C:
				sample()
			}
		}
	}()
	return s
}

// Stop ends sampling and returns the peaks by proxy name.
func (s *rssSampler) Stop() map[string]int64 {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}
