package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// Readiness timing, as Kubernetes probes count it: the app is probed every
// readyPeriod once ready (every readyFastPeriod until it first is, so a pod
// joins the mesh within ~100 ms of its app listening), it leaves the mesh
// after readyFailures failed probes in a row, and each probe gets
// readyTimeout. Variables so tests can shorten them.
var (
	readyFastPeriod = 100 * time.Millisecond
	readyPeriod     = time.Second
	readyTimeout    = time.Second
	readyFailures   = 3
)

// appProbe checks the app beside the sidecar: it accepts connections on its
// port and, when configured, passes an HTTP or gRPC readiness check.
type appProbe struct {
	addr string // 127.0.0.1:AppPort
	path string // HTTP readiness path, "" for none
	grpc bool   // gRPC health check

	http *http.Client
	conn *grpc.ClientConn // gRPC health, made on first use
}

func newAppProbe(c *Config) *appProbe {
	a := &appProbe{addr: net.JoinHostPort("127.0.0.1", fmt.Sprint(c.AppPort)), path: c.ReadyPath, grpc: c.ReadyGRPC}
	if a.path != "" {
		// Never through HTTP_PROXY (the sidecar itself) and no pooled
		// connection that could hide a listener that went away.
		a.http = &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return a
}

// check returns nil when the app is ready, else why not.
func (a *appProbe) check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", a.addr)
	if err != nil {
		return fmt.Errorf("app not accepting connections on %s: %w", a.addr, err)
	}
	conn.Close()
	switch {
	case a.path != "":
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+a.addr+a.path, nil)
		if err != nil {
			return err
		}
		req.Header.Set("User-Agent", "trellis-readiness")
		resp, err := a.http.Do(req)
		if err != nil {
			return fmt.Errorf("readiness check GET %s: %w", a.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 399 {
			return fmt.Errorf("readiness check GET %s: status %d", a.path, resp.StatusCode)
		}
	case a.grpc:
		if a.conn == nil {
			c, err := grpc.NewClient("passthrough:///"+a.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithNoProxy())
			if err != nil {
				return err
			}
			a.conn = c
		}
		resp, err := healthpb.NewHealthClient(a.conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err != nil {
			return fmt.Errorf("gRPC health check: %w", err)
		}
		if s := resp.GetStatus(); s != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("gRPC health check: %s", s)
		}
	}
	return nil
}

func (a *appProbe) close() {
	if a.conn != nil {
		a.conn.Close()
	}
}

// watchApp probes the app until ctx ends and tells set whenever its
// readiness changes: ready after one passing probe, not ready after
// readyFailures failing ones in a row.
func (p *Proxy) watchApp(ctx context.Context, probe *appProbe, set func(ready bool)) {
	defer probe.close()
	ready, failures := false, 0
	lastWhy := ""
	for {
		err := probe.check(ctx)
		if ctx.Err() != nil {
			return
		}
		switch {
		case err == nil:
			failures = 0
			if !ready {
				ready = true
				p.log.Info("app ready: joining the mesh", "app", probe.addr)
				set(true)
			}
		case ready:
			failures++
			if failures >= readyFailures {
				ready = false
				p.log.Warn("app not ready: leaving the mesh until it is", "app", probe.addr, "error", err)
				set(false)
			}
		default:
			if why := err.Error(); why != lastWhy {
				p.log.Debug("app not ready yet", "app", probe.addr, "error", err)
				lastWhy = why
			}
		}
		period := readyPeriod
		if !ready && failures == 0 {
			period = readyFastPeriod
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(period):
		}
	}
}
