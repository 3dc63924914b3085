// Package run is "a pod without Kubernetes": it starts a sidecar in this
// process, waits until the sidecar has its config, then starts the app with
// the proxy environment set, forwards signals to it, and when the app exits
// deregisters the instance and returns the app's exit code, so jobs finish.
package run

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy"
)

// Config is what trellis run needs.
type Config struct {
	Service, Version, Zone string
	// Port is the app's port; 0 runs a client-only pod (a job), which is
	// not registered as an instance.
	Port int
	// Address is the IP peers use to reach this pod's inbound listener.
	Address      string
	InboundPort  int
	OutboundPort int
	AdminAddr    string
	Control      string
	// ReadyPath / ReadyGRPC: the app's readiness check (proxy.Config);
	// the instance is registered only while it passes.
	ReadyPath       string
	ReadyGRPC       bool
	XDSMaxRecvBytes int
	// AppProtocol is what the app speaks, when declared (proxy.Config):
	// tcp or tls relay every inbound connection without detection.
	AppProtocol string
	// Input limits of the sidecar's listeners (proxy.Config); 0: defaults.
	MaxHeaderBytes, MaxHeaders, MaxConnections int
	ReadyTimeout                               time.Duration
	// Drain is how long the pod keeps serving after it left the mesh on
	// SIGTERM, before the app gets the signal: peers stop sending to it
	// once the control plane's push without it reaches them. 0: the app
	// gets SIGTERM at once. Pods without a port (jobs) do not drain.
	Drain  time.Duration
	Args   []string // the app's command line
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Logger *slog.Logger
}

// Run runs the pod and returns the app's exit code. An error means the pod
// could not start (or the app could not be started).
func Run(ctx context.Context, cfg Config) (int, error) {
	if len(cfg.Args) == 0 {
		return 0, errors.New("command: required after -- (the app to run)")
	}
	if cfg.ReadyTimeout == 0 {
		cfg.ReadyTimeout = 30 * time.Second
	}
	proxy.SetRuntimeDefaults()               // GC tuned for a proxy (docs/performance.md)
	proxy.ReleaseExecutablePages(cfg.Logger) // idle memory (docs/performance.md)
	p, err := proxy.New(proxy.Config{
		Role:            meshxds.RoleSidecar,
		Service:         cfg.Service,
		Version:         cfg.Version,
		Zone:            cfg.Zone,
		Address:         cfg.Address,
		AppPort:         cfg.Port,
		InboundPort:     cfg.InboundPort,
		OutboundPort:    cfg.OutboundPort,
		AdminAddr:       cfg.AdminAddr,
		ControlAddr:     cfg.Control,
		ReadyPath:       cfg.ReadyPath,
		ReadyGRPC:       cfg.ReadyGRPC,
		XDSMaxRecvBytes: cfg.XDSMaxRecvBytes,
		AppProtocol:     cfg.AppProtocol,
		MaxHeaderBytes:  cfg.MaxHeaderBytes,
		MaxHeaders:      cfg.MaxHeaders,
		MaxConnections:  cfg.MaxConnections,
		Logger:          cfg.Logger,
	})
	if err != nil {
		return 0, err
	}
	// The sidecar outlives ctx's signal handling below: it is stopped only
	// after the app has exited.
	proxyCtx, stopProxy := context.WithCancel(context.WithoutCancel(ctx))
	defer stopProxy()
	if err := p.Start(proxyCtx); err != nil {
		return 0, fmt.Errorf("starting sidecar: %w", err)
	}
	shutdown := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = p.Shutdown(sctx)
	}
	// Until the app runs, a signal stops the pod; after that it goes to the app.
	readyCtx, stopSignals := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer stopSignals()
	select {
	case <-p.Ready():
		stopSignals()
	case <-time.After(cfg.ReadyTimeout):
		shutdown()
		return 0, fmt.Errorf("sidecar not ready after %s: no config from the control plane at %s", cfg.ReadyTimeout, cfg.Control)
	case <-readyCtx.Done():
		shutdown()
		return 0, fmt.Errorf("stopped before the app started: %w", context.Cause(readyCtx))
	}
	fmt.Fprintf(cfg.Stderr, "trellis run ready: service=%s version=%s inbound=%s outbound=%s admin=%s\n",
		cfg.Service, cfg.Version, p.InboundAddr(), p.OutboundAddr(), p.AdminAddr())

	leave := func() {
		lctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		p.Leave(lctx)
	}
	if cfg.Port == 0 {
		cfg.Drain = 0 // a job is not registered: nothing to drain
	}
	code, err := runApp(ctx, cfg, p.OutboundAddr(), leave)
	shutdown()
	return code, err
}

// runApp starts the app with the mesh environment and waits for it,
// forwarding SIGINT, SIGTERM and SIGHUP. The first SIGTERM (or ctx's end)
// first drains, when cfg.Drain is set: leave takes the pod out of the
// mesh, and the app gets the signal cfg.Drain later (at once on another
// SIGTERM). Without that, peers that have not yet got the push without
// this instance send it requests the app no longer answers: 503s while a
// pod stops cleanly.
func runApp(ctx context.Context, cfg Config, outbound string, leave func()) (int, error) {
	cmd := exec.Command(cfg.Args[0], cfg.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = cfg.Stdin, cfg.Stdout, cfg.Stderr
	proxyURL := "http://" + outbound
	cmd.Env = append(os.Environ(),
		"HTTP_PROXY="+proxyURL, "http_proxy="+proxyURL,
		"HTTPS_PROXY="+proxyURL, "https_proxy="+proxyURL,
		"NO_PROXY=localhost,127.0.0.1,::1", "no_proxy=localhost,127.0.0.1,::1",
		"TRELLIS_SERVICE="+cfg.Service,
		"TRELLIS_VERSION="+cfg.Version,
	)
	if cfg.Port > 0 {
		cmd.Env = append(cmd.Env, "PORT="+strconv.Itoa(cfg.Port))
	}
	// If trellis run is killed outright, the app must not live on without
	// its sidecar.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("starting %s: %w", cfg.Args[0], err)
	}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var drained chan struct{} // set while draining
	signalled := false        // the app got its SIGTERM
	terminate := func() {
		if cfg.Drain <= 0 || drained != nil {
			_ = cmd.Process.Signal(syscall.SIGTERM)
			signalled = true
			return
		}
		fmt.Fprintf(cfg.Stderr, "trellis run: draining for %s before stopping the app\n", cfg.Drain)
		d := make(chan struct{})
		drained = d
		go func() {
			t := time.NewTimer(cfg.Drain)
			defer t.Stop()
			leave()
			<-t.C
			close(d)
		}()
	}
	for {
		select {
		case s := <-sigs:
			if s == syscall.SIGTERM {
				terminate()
			} else {
				_ = cmd.Process.Signal(s)
			}
		case <-ctx.Done():
			terminate()
			ctx = context.Background() // once
		case <-drained:
			if !signalled {
				_ = cmd.Process.Signal(syscall.SIGTERM)
				signalled = true
			}
			drained = nil
			cfg.Drain = 0 // drained: a later SIGTERM goes straight to the app
		case err := <-done:
			return exitCode(cmd, err)
		}
	}
}

func exitCode(cmd *exec.Cmd, err error) (int, error) {
	var xe *exec.ExitError
	if err != nil && !errors.As(err, &xe) {
		return 0, err
	}
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if ok && ws.Signaled() {
		return 128 + int(ws.Signal()), nil
	}
	return cmd.ProcessState.ExitCode(), nil
}
