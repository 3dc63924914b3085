package proxy

import (
	"context"
	"io"
	"net/http"
	"runtime/pprof"
	"syscall"
	"testing"
	"time"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/model"
)

// The benchmarks below send one request at a time per goroutine
// (RunParallel) over keep-alive connections and compare each mesh path
// with the same request sent direct to the same app, so the difference is
// what the proxy costs. Client, proxies and app share the process: read
// ns/op as "CPU of everything on the path", and the proxy's share from a
// profile (see docs/performance.md, "Proxy hot path").
//
//	go test ./internal/proxy -run XXX -bench . -count 6 | tee new.txt
//	benchstat old.txt new.txt

// BenchmarkOutboundInboundHTTP1 measures one HTTP/1.1 keep-alive request
// app → outbound → inbound → app against the same request sent direct, so
// the difference is the cost of the sidecar pair.
func BenchmarkOutboundInboundHTTP1(b *testing.B) {
	backend := startApp(b, "v1")
	client := sidecarPair(b, backend)
	b.Run("direct", func(b *testing.B) {
		runGets(b, h1Client(b), "http://"+backend.addr+"/bench", "")
	})
	b.Run("outbound+inbound", func(b *testing.B) {
		runGets(b, h1ProxyClient(b, client.OutboundAddr()), "http://reviews/bench", "")
	})
}

// BenchmarkOutboundInboundH2C is the same over HTTP/2 with prior knowledge
// (how gRPC speaks cleartext): the app sends to the outbound listener with
// :authority reviews, and every hop keeps h2c.
func BenchmarkOutboundInboundH2C(b *testing.B) {
	backend := startApp(b, "v1")
	client := sidecarPair(b, backend)
	b.Run("direct", func(b *testing.B) {
		runGets(b, h2cClient(b, nil), "http://"+backend.addr+"/bench", "")
	})
	b.Run("outbound+inbound", func(b *testing.B) {
		runGets(b, h2cClient(b, nil), "http://"+client.OutboundAddr()+"/bench", "reviews")
	})
}

// BenchmarkGatewayHTTP1 measures one gateway hop (client → gateway → app),
// the path bench/ compares with nginx and HAProxy.
func BenchmarkGatewayHTTP1(b *testing.B) {
	backend := startApp(b, "v1")
	gw, _ := startProxy(b, Config{Role: meshxds.RoleGateway, GatewayAddr: "127.0.0.1:0"}, snapshot(
		[]*model.VirtualHost{vhost("reviews", to("reviews|v1", 100))},
		map[string][]string{"reviews|v1": {backend.addr}}))
	b.Run("direct", func(b *testing.B) {
		runGets(b, h1Client(b), "http://"+backend.addr+"/bench", "")
	})
	b.Run("gateway", func(b *testing.B) {
		runGets(b, h1Client(b), "http://"+gw.GatewayAddr()+"/bench", "reviews")
	})
}

// sidecarPair starts the inbound sidecar of backend (service reviews, v1)
// and a client-only sidecar whose outbound routes reviews to it.
func sidecarPair(b *testing.B, backend *app) *Proxy {
	side := sidecar(b, "reviews", "v1", backend.addr)
	client, _ := startProxy(b, Config{Role: meshxds.RoleSidecar}, snapshot(
		[]*model.VirtualHost{vhost("reviews", to("reviews|v1", 100))},
		map[string][]string{"reviews|v1": {side.InboundAddr()}}))
	return client
}

// runGets sends GET url (with Host host when not empty) from every
// RunParallel goroutine and checks for 200.
func runGets(b *testing.B, c *http.Client, url, host string) {
	b.ReportAllocs()
	cpu0 := processCPU(b)
	defer func() { b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op") }()
	b.RunParallel(func(pb *testing.PB) {
		// Labelled (and so are the transport goroutines it starts) so that
		// a profile can leave the client out: -tagignore bench=client.
		pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("bench", "client")))
		for pb.Next() {
			req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
			if err != nil {
				b.Error(err)
				return
			}
			if host != "" {
				req.Host = host
			}
			resp, err := c.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
}

// processCPU is the CPU time (user + system) the process used so far. On a
// shared machine wall time per op moves with everyone else's load; CPU time
// per op much less, and it is what "CPU seconds per 1,000 requests" counts.
// It covers the client and the app too, as ns/op does.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
