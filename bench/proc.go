package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// proc is a long-running process the harness started (backend, proxy,
// control plane), pinned to a CPU with taskset, killed with the harness.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// procs is every process started, so that an interrupted run stops them.
var (
	procsMu sync.Mutex
	procs   []*proc
)

// startProc runs argv on cpu ("" for no pinning). Its process group is
// its own and it dies with the harness (Pdeathsig), whatever happens.
func startProc(name, cpu string, env []string, argv ...string) (*proc, error) {
	if cpu != "" {
		argv = append([]string{"taskset", "-c", cpu}, argv...)
	}
	p := &proc{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(argv[0], argv[1:]...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %v", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	procsMu.Lock()
	procs = append(procs, p)
	procsMu.Unlock()
	return p, nil
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process ended, with its output.
func (p *proc) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited (%v):\n%s", p.name, p.cmd.ProcessState, tail(p.out.String(), 2000))
	default:
		return nil
	}
}

// waitLine waits for a line of output matching re.
func (p *proc) waitLine(re *regexp.Regexp, limit time.Duration) ([]string, error) {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(p.out.String()); m != nil {
			return m, nil
		}
		if err := p.exited(); err != nil {
			return nil, err
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil, fmt.Errorf("%s did not print %q within %s:\n%s", p.name, re, limit, tail(p.out.String(), 2000))
}

// stop sends SIGTERM, then SIGKILL to its process group after 5 s.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
		<-p.done
	}
	// nginx workers outlive a master killed hard: end the group.
	_ = syscall.Kill(-p.pid(), syscall.SIGKILL)
}

// stopAll stops every process the harness started, newest first.
func stopAll() {
	procsMu.Lock()
	all := procs
	procs = nil
	procsMu.Unlock()
	for i := len(all) - 1; i >= 0; i-- {
		all[i].stop()
	}
}

// runTool runs a load generator to completion on cpu and returns its
// stdout; stderr is kept for errors.
func runTool(ctx context.Context, cpu string, argv ...string) ([]byte, error) {
	if cpu != "" {
		argv = append([]string{"taskset", "-c", cpu}, argv...)
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), fmt.Errorf("%s: %v\n%s", argv, err, tail(stderr.String()+stdout.String(), 2000))
	}
	return stdout.Bytes(), nil
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 { // a chatty process must not grow without end
		s.b.Reset()
	}
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}

func itoa(n int) string { return strconv.Itoa(n) }
