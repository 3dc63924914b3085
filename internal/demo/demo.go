// Package demo is `trellis demo`: the whole mesh on one laptop, with
// nothing installed but this binary. It starts a control plane on an
// embedded etcd in a temporary directory, an ingress gateway, and a small
// application (productpage → reviews v1/v2/v3 → ratings), each instance a
// real `trellis run` pod (sidecar + sample echo app) in its own process;
// it applies a canary Route and prints the curl commands that show it.
package demo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"time"

	"trellis.dev/trellis/internal/apiclient"
	"trellis.dev/trellis/internal/control"
	"trellis.dev/trellis/internal/freeport"
	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy"
)

// Config says where the demo listens.
type Config struct {
	HTTPAddr    string // control plane API, default 127.0.0.1:15000
	XDSAddr     string // control plane xDS, default 127.0.0.1:15010
	GatewayAddr string // ingress, default 127.0.0.1:8080
	Binary      string // the trellis binary for the pods (default: this one)
	Stdout      io.Writer
	Logger      *slog.Logger
	// Ready, if set, is closed once the demo is serving (for tests).
	Ready chan<- struct{}
}

// CanaryRoute is the Route the demo applies: the brief's example.
const CanaryRoute = `apiVersion: trellis.dev/v1alpha1
kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules:
  - version: v3                  # rule-based: any one match sends the request to v3
    matches:
    - headers: {gray: {exact: "1"}}
    - queryParams: {debug: {exact: "true"}}
  - version: v1                  # the rest is split by weight
    weight: 80
  - version: v2
    weight: 20
`

// pods of the sample application.
var pods = []struct{ service, version, zone string }{
	{"productpage", "v1", "zone-a"},
	{"reviews", "v1", "zone-a"},
	{"reviews", "v2", "zone-b"},
	{"reviews", "v3", "zone-b"},
	{"ratings", "v1", "zone-a"},
}

// Run runs the demo until ctx ends, then stops everything and removes the
// temporary state.
func Run(ctx context.Context, cfg Config) error {
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:15000"
	}
	if cfg.XDSAddr == "" {
		cfg.XDSAddr = "127.0.0.1:15010"
	}
	if cfg.GatewayAddr == "" {
		cfg.GatewayAddr = "127.0.0.1:8080"
	}
	if cfg.Binary == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		cfg.Binary = exe
	}
	log := cfg.Logger
	out := cfg.Stdout

	dir, err := os.MkdirTemp("", "trellis-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fmt.Fprintf(out, "Starting the control plane (embedded etcd in %s)...\n", dir)
	cp, err := control.Start(ctx, control.Config{DataDir: dir, HTTPAddr: cfg.HTTPAddr, XDSAddr: cfg.XDSAddr, Logger: log})
	if err != nil {
		return fmt.Errorf("control plane: %w", err)
	}
	defer cp.Close()

	gw, err := proxy.New(proxy.Config{Role: meshxds.RoleGateway, GatewayAddr: cfg.GatewayAddr, ControlAddr: cp.XDSAddr(), Logger: log})
	if err != nil {
		return err
	}
	if err := gw.Start(ctx); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.Shutdown(sctx)
	}()

	fmt.Fprintf(out, "Starting %d pods (sidecar + sample app each)...\n", len(pods))
	var wg sync.WaitGroup
	var cmds []*exec.Cmd
	defer func() {
		for _, c := range cmds {
			_ = c.Process.Signal(syscall.SIGTERM)
		}
		wg.Wait()
	}()
	for _, p := range pods {
		port, err := freeport.Loopback()
		if err != nil {
			return err
		}
		c := exec.Command(cfg.Binary, "run", "--service", p.service, "--version", p.version, "--zone", p.zone,
			"--port", strconv.Itoa(port), "--control", cp.XDSAddr(), "--log-level", "warn",
			"--drain", "0s", // the demo stops the whole mesh at once: nobody to drain for
			"--", cfg.Binary, "sample", "echo", "--port", strconv.Itoa(port), "--log-level", "warn")
		c.Stdout, c.Stderr = io.Discard, io.Discard
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
		if err := c.Start(); err != nil {
			return fmt.Errorf("starting pod %s %s: %w", p.service, p.version, err)
		}
		cmds = append(cmds, c)
		wg.Add(1)
		go func() { defer wg.Done(); _ = c.Wait() }()
	}

	client := apiclient.New(cp.HTTPAddr())
	if err := waitFor(ctx, 30*time.Second, func() bool {
		is, err := client.Instances(ctx)
		return err == nil && len(is) == len(pods)
	}); err != nil {
		return fmt.Errorf("pods did not register: %w", err)
	}
	if _, err := client.Apply(ctx, []byte(CanaryRoute)); err != nil {
		return fmt.Errorf("applying the canary Route: %w", err)
	}
	// The Route is applied when the gateway sends gray traffic to v3.
	if err := waitFor(ctx, 30*time.Second, func() bool {
		return versionAt(ctx, "http://"+gw.GatewayAddr()+"/", "reviews", "1") == "v3"
	}); err != nil {
		return fmt.Errorf("route did not reach the gateway: %w", err)
	}
	printTour(out, gw.GatewayAddr(), cp.HTTPAddr())
	if cfg.Ready != nil {
		close(cfg.Ready)
	}
	<-ctx.Done()
	fmt.Fprintln(out, "\nStopping the demo and removing its state...")
	return nil
}

func printTour(out io.Writer, gw, api string) {
	fmt.Fprintf(out, `
Trellis demo is running.
  gateway:        http://%[1]s
  control plane:  http://%[2]s   (trellis get services --server http://%[2]s)

The canary Route it applied (the whole of it):

%[3]s
80/20 split of reviews between v1 and v2 over 100 requests:

  for i in $(seq 100); do curl -s -o /dev/null -D - -H 'Host: reviews' http://%[1]s/ | grep -i '^x-trellis-version'; done | sort | uniq -c

The header rule (gray: 1) and the query rule (debug=true) send everything to v3:

  curl -s -D - -o /dev/null -H 'Host: reviews' -H 'gray: 1' http://%[1]s/ | grep -i '^x-trellis-version'
  curl -s -D - -o /dev/null -H 'Host: reviews' 'http://%[1]s/?debug=true' | grep -i '^x-trellis-version'

A chain: productpage calls reviews through its sidecar (the gray header goes along):

  curl -s -H 'Host: productpage' -H 'gray: 1' 'http://%[1]s/call?to=reviews'

Change the split and watch it move (in another shell):

  trellis apply --server http://%[2]s -f - <<'YAML'
  apiVersion: trellis.dev/v1alpha1
  kind: Route
  metadata: {name: reviews}
  spec: {service: reviews, rules: [{version: v1, weight: 50}, {version: v2, weight: 50}]}
  YAML

Press Ctrl-C to stop everything.
`, gw, api, CanaryRoute)
}

// versionAt asks the gateway once and returns the answering version.
func versionAt(ctx context.Context, url, host, gray string) string {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return ""
	}
	req.Host = host
	if gray != "" {
		req.Header.Set("gray", gray)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	resp.Body.Close()
	return resp.Header.Get(meshxds.HeaderVersion)
}

func waitFor(ctx context.Context, limit time.Duration, ok func() bool) error {
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			return errors.New("timed out after " + limit.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}
