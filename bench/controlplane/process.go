package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// controlPlane is one running `trellis control` under test: a child
// process, or (for profiling) the control plane started in this process.
type controlPlane struct {
	pid      int // /proc/<pid> holds its memory and CPU
	httpAddr string
	xdsAddr  string
	stop     func() error
}

var readyLine = regexp.MustCompile(`trellis control ready: http=(\S+) xds=(\S+)`)

// buildTrellis builds the trellis binary of the module at root into dir.
func buildTrellis(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "trellis")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/trellis")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/trellis: %v\n%s", err, out)
	}
	return bin, nil
}

// moduleRoot is the directory of the main module (where go.mod is).
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the trellis module: run from the repository")
	}
	return filepath.Dir(gomod), nil
}

// startProcess starts `bin control` with its embedded etcd in dataDir on
// free loopback ports, and waits for its ready line. Its log goes to
// logPath. The child is killed if this process dies (Pdeathsig).
func startProcess(ctx context.Context, bin, dataDir, logPath string, controlArgs []string) (*controlPlane, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	args := append([]string{"control", "--data-dir", dataDir,
		"--http-addr", "127.0.0.1:0", "--xds-addr", "127.0.0.1:0"}, controlArgs...)
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logFile.Close()
		return nil, err
	}
	cmd.Stdout = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, err
	}
	exited := make(chan struct{})
	var waitErr error
	ready := make(chan []string, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logFile, line)
			if m := readyLine.FindStringSubmatch(line); m != nil {
				select {
				case ready <- m:
				default:
				}
			}
		}
		_, _ = io.Copy(logFile, stderr) // a line over 1 MiB: keep the rest
	}()
	go func() {
		<-copied
		waitErr = cmd.Wait()
		logFile.Close()
		close(exited)
	}()

	cp := &controlPlane{pid: cmd.Process.Pid}
	cp.stop = func() error {
		select {
		case <-exited:
			return fmt.Errorf("control plane had exited: %v", waitErr)
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
			return nil
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
			return errors.New("control plane did not stop within 20s of SIGTERM; killed")
		}
	}

	timer := time.NewTimer(60 * time.Second)
	defer timer.Stop()
	select {
	case m := <-ready:
		cp.httpAddr, cp.xdsAddr = m[1], m[2]
		return cp, nil
	case <-exited:
		return nil, fmt.Errorf("trellis control exited before it was ready (%v); log: %s", waitErr, logPath)
	case <-timer.C:
	case <-ctx.Done():
	}
	_ = cp.stop()
	return nil, fmt.Errorf("trellis control not ready in time; log: %s", logPath)
}

// procStats reads a process's memory and CPU from /proc.
type procStats struct{ pid int }

// memory returns VmRSS and VmHWM in bytes.
func (p procStats) memory() (rss, hwm int64, err error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return 0, 0, err
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		key, val, ok := strings.Cut(line, ":")
		if !ok || (key != "VmRSS" && key != "VmHWM") {
			continue
		}
		f := strings.Fields(val) // "123456 kB"
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("unexpected %s line %q", key, line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, err
		}
		if key == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm, nil
}

// resetPeak resets VmHWM to the current RSS (Linux ≥ 4.0), so the next
// reading of VmHWM is the peak since now.
func (p procStats) resetPeak() error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", p.pid), []byte("5"), 0)
}

// cpu returns the CPU time (user + system) of every thread of the
// process, from the schedulers' nanosecond counters.
func (p procStats) cpu() (time.Duration, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", p.pid))
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, t := range tasks {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", p.pid, t.Name()))
		if err != nil {
			continue // the thread exited
		}
		f := strings.Fields(string(data))
		if len(f) == 0 {
			continue
		}
		ns, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("schedstat: %w", err)
		}
		total += time.Duration(ns)
	}
	return total, nil
}

// systemBusy is the CPU time every CPU of the machine spent running
// tasks (user, nice, system) or stolen by the hypervisor, from /proc/stat.
// Interrupt time is left out: the kernel does not count it in any task's
// time (IRQ time accounting), and on loopback most of it is the
// benchmark's own traffic.
func systemBusy() (time.Duration, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(data), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("unexpected /proc/stat line %q", line)
	}
	var ticks int64
	for _, i := range []int{1, 2, 3, 8} { // user nice system [idle iowait irq softirq] steal
		n, err := strconv.ParseInt(f[i], 10, 64)
		if err != nil {
			return 0, err
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// userHZ is the unit of /proc/stat: USER_HZ is 100 on every Linux
// architecture Go supports.
const userHZ = 100
