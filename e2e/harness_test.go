// Package e2e starts real trellis processes on 127.0.0.1 with free ports
// and checks the mesh end to end through real sockets.
package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"trellis.dev/trellis/internal/apiclient"
	"trellis.dev/trellis/internal/freeport"
	"trellis.dev/trellis/internal/testutil"
)

// binary is the trellis binary built once for all tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "trellis-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "trellis")
	build := exec.Command("go", "build", "-o", binary, "../cmd/trellis")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building trellis:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proc is a running trellis process whose stderr is scanned for lines.
type proc struct {
	t     *testing.T
	name  string
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	seen  chan struct{} // signalled on each new line
	done  chan struct{}
}

// start runs trellis with args and keeps its output for diagnostics.
func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, seen: make(chan struct{}, 1), done: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Env = append(os.Environ(), "NO_PROXY=", "HTTP_PROXY=", "HTTPS_PROXY=")
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		for sc.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, sc.Text())
			p.mu.Unlock()
			select {
			case p.seen <- struct{}{}:
			default:
			}
		}
	}()
	go func() {
		_ = p.cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			t.Logf("--- output of %s:\n%s", name, p.output())
		}
	})
	return p
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// waitLine waits for a line matching re and returns its submatches.
func (p *proc) waitLine(re *regexp.Regexp, limit time.Duration) []string {
	p.t.Helper()
	deadline := time.After(limit)
	for {
		p.mu.Lock()
		for _, l := range p.lines {
			if m := re.FindStringSubmatch(l); m != nil {
				p.mu.Unlock()
				return m
			}
		}
		p.mu.Unlock()
		select {
		case <-p.seen:
		case <-p.done:
			p.t.Fatalf("%s exited before printing %q:\n%s", p.name, re, p.output())
		case <-deadline:
			p.t.Fatalf("%s did not print %q within %s:\n%s", p.name, re, limit, p.output())
		}
	}
}

// stop sends SIGTERM and waits (SIGKILL after 10 s).
func (p *proc) stop() {
	if p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// kill sends SIGKILL and waits.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// exitCode waits for the process to end and returns its exit code.
func (p *proc) exitCode(limit time.Duration) int {
	p.t.Helper()
	select {
	case <-p.done:
	case <-time.After(limit):
		p.t.Fatalf("%s still running after %s:\n%s", p.name, limit, p.output())
	}
	return p.cmd.ProcessState.ExitCode()
}

// controlPlane is a running trellis control.
type controlPlane struct {
	*proc
	http, xds string
	dataDir   string
}

var controlReady = regexp.MustCompile(`trellis control ready: http=(\S+) xds=(\S+)`)

// startControl starts a control plane on free ports (or the given ones).
func startControl(t *testing.T, dataDir string, extra ...string) *controlPlane {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	args := append([]string{"control", "--data-dir", dataDir, "--http-addr", "127.0.0.1:0", "--xds-addr", "127.0.0.1:0"}, extra...)
	p := start(t, "control", args...)
	m := p.waitLine(controlReady, 30*time.Second)
	return &controlPlane{proc: p, http: m[1], xds: m[2], dataDir: dataDir}
}

func (c *controlPlane) client() *apiclient.Client { return apiclient.New(c.http) }

// pod is a trellis run with a sample echo app.
type pod struct {
	*proc
	service, version  string
	inbound, outbound string
	admin             string
	appPort           int
}

var runReady = regexp.MustCompile(`trellis run ready: service=\S+ version=\S+ inbound=(\S*) outbound=(\S+) admin=(\S+)`)

// startPod runs `trellis run -- trellis sample echo` for service/version.
func startPod(t *testing.T, control, service, version string) *pod {
	t.Helper()
	return startPodWith(t, control, service, version)
}

// startPodWith is startPod with more arguments for the sample echo app
// (like --fail-status 500).
func startPodWith(t *testing.T, control, service, version string, appArgs ...string) *pod {
	t.Helper()
	port := freePort(t)
	ps := strconv.Itoa(port)
	args := []string{"run", "--service", service, "--version", version, "--port", ps,
		"--control", control, "--", binary, "sample", "echo", "--port", ps}
	p := start(t, service+"-"+version, append(args, appArgs...)...)
	m := p.waitLine(runReady, 30*time.Second)
	pd := &pod{proc: p, service: service, version: version, inbound: m[1], outbound: m[2], admin: m[3], appPort: port}
	// The app starts after the sidecar is ready; wait until it says it
	// listens (a connect to the port could reach another listener, and
	// would not tell why the app is not there).
	p.waitLine(regexp.MustCompile(`sample echo listening on 127\.0\.0\.1:`+ps+`$`), 10*time.Second)
	return pd
}

// gateway is a running trellis gateway.
type gateway struct {
	*proc
	addr, admin string
}

var gatewayReady = regexp.MustCompile(`trellis gateway listening: .*gateway=(\S+) admin=(\S+)`)

func startGateway(t *testing.T, control string) *gateway {
	t.Helper()
	p := start(t, "gateway", "gateway", "--listen", "127.0.0.1:0", "--control", control)
	m := p.waitLine(gatewayReady, 30*time.Second)
	g := &gateway{proc: p, addr: m[1], admin: m[2]}
	testutil.Eventually(t, 20*time.Second, "gateway ready", func() bool { return httpStatus("http://"+g.admin+"/ready") == 200 })
	return g
}

// gatewayHasEndpoint reports whether the gateway's current config has an
// endpoint at addr (an instance's inbound host:port).
func gatewayHasEndpoint(t *testing.T, g *gateway, addr string) bool {
	t.Helper()
	var dump struct {
		Snapshot struct {
			Clusters map[string]struct {
				Endpoints []struct {
					Address string `json:"address"`
				} `json:"endpoints"`
			} `json:"clusters"`
		} `json:"snapshot"`
	}
	if err := json.Unmarshal([]byte(configDump(t, g.admin)), &dump); err != nil {
		t.Fatalf("gateway config_dump: %v", err)
	}
	for _, c := range dump.Snapshot.Clusters {
		for _, e := range c.Endpoints {
			if e.Address == addr {
				return true
			}
		}
	}
	return false
}

// trellisCLI runs a CLI command to completion: stdout, stderr, exit code.
func trellisCLI(t *testing.T, stdin string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if err != nil {
		xe, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("running trellis %v: %v", args, err)
		}
		code = xe.ExitCode()
	}
	return out.String(), errb.String(), code
}

func apply(t *testing.T, c *controlPlane, doc string) {
	t.Helper()
	out, errs, code := trellisCLI(t, doc, "apply", "--server", c.http, "-f", "-")
	if code != 0 {
		t.Fatalf("apply failed (%d): %s %s", code, out, errs)
	}
}

// meshRequest sends one request through a gateway (Host routing) or a
// sidecar's outbound listener used as an HTTP proxy.
type meshClient struct {
	http *http.Client
	base string // gateway base URL, or "" when proxying
	// bodyVersion reads the answering version from the sample app's JSON
	// body instead of the x-trellis-version header.
	bodyVersion bool
}

func viaGateway(g *gateway) *meshClient {
	return &meshClient{http: &http.Client{Timeout: 10 * time.Second}, base: "http://" + g.addr}
}

func viaSidecar(p *pod) *meshClient {
	u, _ := url.Parse("http://" + p.outbound)
	return &meshClient{http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(u), MaxIdleConnsPerHost: 16}}}
}

// get asks service for path with headers; it returns status, the answering
// version header and the mesh error header.
func (m *meshClient) get(service, path string, headers map[string]string) (int, string, string, error) {
	target := "http://" + service + path
	if m.base != "" {
		target = m.base + path
	}
	req, err := http.NewRequestWithContext(context.Background(), "GET", target, nil)
	if err != nil {
		return 0, "", "", err
	}
	req.Host = service
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := m.http.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	version := resp.Header.Get("x-trellis-version")
	if m.bodyVersion {
		var echo struct{ Version string }
		_ = json.NewDecoder(resp.Body).Decode(&echo)
		version = echo.Version
	}
	io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, version, resp.Header.Get("x-trellis-error"), nil
}

// split sends n requests and counts answering versions.
func (m *meshClient) split(t *testing.T, service, path string, headers map[string]string, n int) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		code, v, merr, err := m.get(service, path, headers)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if code != 200 {
			t.Fatalf("request %d: status %d, x-trellis-error %q, x-trellis-version %q", i, code, merr, v)
		}
		counts[v]++
	}
	return counts
}

func httpStatus(u string) int {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// freePort returns a loopback port for a process to bind a moment later
// (see internal/freeport: not one the kernel would hand to a :0 listener
// meanwhile).
func freePort(t *testing.T) int {
	t.Helper()
	p, err := freeport.Loopback()
	if err != nil {
		t.Fatal(err)
	}
	return p
}
