package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"trellis.dev/trellis/internal/api"
)

// steadyLoad sends requests for service through a meshClient from a few
// workers until stop, bounded in count and time, and records every failure.
type steadyLoad struct {
	stop    chan struct{}
	wg      sync.WaitGroup
	mu      sync.Mutex
	ok      int
	failed  []string
	workers int
}

func startLoad(t *testing.T, mc *meshClient, service string, workers int) *steadyLoad {
	t.Helper()
	l := &steadyLoad{stop: make(chan struct{}), workers: workers}
	for range workers {
		l.wg.Go(func() {
			deadline := time.Now().Add(3 * time.Minute) // bounds, in case stop never comes
			for n := 0; n < 100000 && time.Now().Before(deadline); n++ {
				select {
				case <-l.stop:
					return
				default:
				}
				code, v, merr, err := mc.get(service, "/", nil)
				l.mu.Lock()
				switch {
				case err != nil:
					l.failed = append(l.failed, err.Error())
				case code != 200:
					l.failed = append(l.failed, fmt.Sprintf("status %d %s from %q", code, merr, v))
				default:
					l.ok++
				}
				l.mu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	t.Cleanup(l.end)
	return l
}

// end stops the load and waits for the workers; safe to call twice.
func (l *steadyLoad) end() {
	select {
	case <-l.stop:
	default:
		close(l.stop)
	}
	l.wg.Wait()
}

// counts is how many requests succeeded so far and the failures.
func (l *steadyLoad) counts() (int, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ok, append([]string(nil), l.failed...)
}

// check ends the load and fails the test on any failure or too little
// traffic to tell.
func (l *steadyLoad) check(t *testing.T, during string, atLeast int) {
	t.Helper()
	l.end()
	ok, failed := l.counts()
	if len(failed) > 0 {
		t.Errorf("%d of %d requests failed %s; first: %s", len(failed), ok+len(failed), during, failed[0])
	}
	if ok < atLeast {
		t.Errorf("only %d requests succeeded %s: too little traffic to tell", ok, during)
	}
	t.Logf("%d requests %s, %d failed", ok+len(failed), during, len(failed))
}

// slowPod runs `trellis run` whose app starts listening only after delay,
// as an app with a slow start (a JVM, a cache warm-up) does.
func slowPod(t *testing.T, control, service, version string, delay time.Duration, extra ...string) *pod {
	t.Helper()
	port := freePort(t)
	ps := strconv.Itoa(port)
	script := fmt.Sprintf("sleep %.1f; exec %s sample echo --port %s", delay.Seconds(), binary, ps)
	args := append([]string{"run", "--service", service, "--version", version, "--port", ps, "--control", control}, extra...)
	args = append(args, "--", "/bin/sh", "-c", script)
	p := start(t, service+"-"+version+"-slow", args...)
	m := p.waitLine(runReady, 30*time.Second)
	return &pod{proc: p, service: service, version: version, inbound: m[1], outbound: m[2], admin: m[3], appPort: port}
}

// registered lists the registered instances of service.
func registered(t *testing.T, cp *controlPlane, service string) []api.Instance {
	t.Helper()
	is, err := cp.client().Instances(context.Background())
	if err != nil {
		t.Fatalf("listing instances: %v", err)
	}
	var out []api.Instance
	for _, i := range is {
		if i.Service == service {
			out = append(out, i)
		}
	}
	return out
}

func hasInstanceAt(is []api.Instance, inbound string) bool {
	for _, i := range is {
		if i.Address+":"+strconv.Itoa(i.Port) == inbound {
			return true
		}
	}
	return false
}

// leftLines counts the control plane's log lines saying an instance left.
var leftLine = regexp.MustCompile(`instance left the mesh`)

func countLines(p *proc, re *regexp.Regexp) int {
	n := 0
	for _, l := range strings.Split(p.output(), "\n") {
		if re.MatchString(l) {
			n++
		}
	}
	return n
}

// joinedLine is the control plane's log line for a registration.
var joinedLine = regexp.MustCompile(`instance joined the mesh`)
