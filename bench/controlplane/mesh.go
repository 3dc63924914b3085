package main

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/apiclient"
	trellisproxy "trellis.dev/trellis/internal/proxy"
)

// The mesh: S services, each with versions v1 and v2 of two instances, and
// a Route splitting its traffic 90/10.
const (
	instancesPerVersion = 2
	initialWeight       = 90
)

var versions = []string{"v1", "v2"}

func serviceName(i int) string { return fmt.Sprintf("svc-%04d", i) }

func meshInstances(services int) []api.Instance {
	var out []api.Instance
	for i := range services {
		for vi, v := range versions {
			for k := range instancesPerVersion {
				out = append(out, api.Instance{
					ID:      fmt.Sprintf("%s-%s-%d", serviceName(i), v, k),
					Service: serviceName(i), Version: v,
					Address: fmt.Sprintf("10.%d.%d.%d", i/250, i%250, 1+vi*instancesPerVersion+k),
					Port:    15006,
					Zone:    []string{"zone-a", "zone-b"}[k%2],
				})
			}
		}
	}
	return out
}

// routeYAML is the canary Route of one service: v1 gets weight, v2 the rest.
func routeYAML(service string, weight int) string {
	return fmt.Sprintf(`apiVersion: trellis.dev/v1alpha1
kind: Route
metadata: {name: %s}
spec:
  service: %s
  rules:
  - {version: v1, weight: %d}
  - {version: v2, weight: %d}
`, service, service, weight, 100-weight)
}

// applyRoutes stores a Route for every service, 100 per apply (the API
// takes at most 128 resources per call).
func applyRoutes(ctx context.Context, c *apiclient.Client, services int) error {
	for start := 0; start < services; start += 100 {
		var docs []string
		for i := start; i < min(start+100, services); i++ {
			docs = append(docs, routeYAML(serviceName(i), initialWeight))
		}
		if _, err := c.Apply(ctx, []byte(strings.Join(docs, "---\n"))); err != nil {
			return fmt.Errorf("applying routes: %w", err)
		}
	}
	return nil
}

// dialAll opens n client connections to addr. Connections are lazy: each
// connects when its first stream opens. They take what a real proxy takes:
// its default receive limit (a larger one here hid, once, that real proxies
// got no config past ~3,300 services).
func dialAll(addr string, n int) ([]*grpc.ClientConn, error) {
	conns := make([]*grpc.ClientConn, 0, n)
	for range n {
		conn, err := grpc.NewClient(addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(trellisproxy.DefaultXDSMaxRecvBytes)))
		if err != nil {
			closeAll(conns)
			return nil, err
		}
		conns = append(conns, conn)
	}
	return conns, nil
}

func closeAll(conns []*grpc.ClientConn) {
	for _, c := range conns {
		c.Close()
	}
}

// registerAll opens one instance stream per instance, perConn streams to a
// connection, with a bounded number of registrations in flight, and waits
// until the control plane lists them all.
func registerAll(ctx context.Context, c *apiclient.Client, xdsAddr string, insts []api.Instance, perConn int) ([]*instanceStream, []*grpc.ClientConn, error) {
	conns, err := dialAll(xdsAddr, (len(insts)+perConn-1)/perConn)
	if err != nil {
		return nil, nil, err
	}
	streams := make([]*instanceStream, len(insts))
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		sem      = make(chan struct{}, 32)
	)
	for i, inst := range insts {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			s, err := registerInstance(conns[i/perConn], inst)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			streams[i] = s
		})
	}
	wg.Wait()
	cleanup := func() {
		for _, s := range streams {
			if s != nil {
				s.close()
			}
		}
		closeAll(conns)
	}
	if firstErr != nil {
		cleanup()
		return nil, nil, firstErr
	}
	err = waitFor(ctx, 3*time.Minute, fmt.Sprintf("%d instances registered", len(insts)), func() (bool, error) {
		for _, s := range streams {
			if err := s.failure(); err != nil {
				return false, err
			}
		}
		got, err := c.Instances(ctx)
		return len(got) == len(insts), err
	})
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return streams, conns, nil
}

// proxiesAnswer is the part of GET /v1/proxies the benchmark reads.
type proxiesAnswer struct {
	ConfigVersion string `json:"configVersion"`
	Items         []struct {
		ID string `json:"id"`
	} `json:"items"`
}

func getProxies(ctx context.Context, c *apiclient.Client) (proxiesAnswer, error) {
	var out proxiesAnswer
	err := c.Do(ctx, "GET", "/v1/proxies", nil, &out)
	return out, err
}

// waitSettled waits until the published config version has not changed for
// quiet (the aggregator debounces for at most 100 ms).
func waitSettled(ctx context.Context, c *apiclient.Client, quiet time.Duration) error {
	last, since := "", time.Now()
	return waitFor(ctx, time.Minute, "config to settle", func() (bool, error) {
		p, err := getProxies(ctx, c)
		if err != nil {
			return false, err
		}
		if p.ConfigVersion != last {
			last, since = p.ConfigVersion, time.Now()
		}
		return time.Since(since) >= quiet, nil
	})
}

// waitFor polls cond every 50 ms until it holds, fails, or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	for {
		ok, err := cond()
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
