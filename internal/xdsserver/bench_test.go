package xdsserver

import (
	"fmt"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/translate"
)

// benchInput is a 20-service mesh (2 versions × 3 instances each); round
// moves one instance to another port, an endpoint-only change (the common
// case during a rollout).
func benchInput(round int) translate.Input { return meshInput(20, round) }

// meshInput is benchInput with services services.
func meshInput(services, round int) translate.Input {
	var in translate.Input
	for svc := range services {
		for _, v := range []string{"v1", "v2"} {
			for i := range 3 {
				in.Instances = append(in.Instances, api.Instance{
					ID:      fmt.Sprintf("svc%d-%s-%d", svc, v, i),
					Service: fmt.Sprintf("svc%d", svc), Version: v,
					Address: fmt.Sprintf("10.%d.%d.%d", svc/250, svc%250, i), Port: 15006,
				})
			}
		}
	}
	in.Instances[0].Port = 20000 + round
	return in
}

// pushRound is one measured push: done closes when every client has
// received target.
type pushRound struct {
	target    string
	remaining atomic.Int32
	done      chan struct{}
}

// BenchmarkPushLatency100 measures the time from Update until 100 connected
// ADS SotW clients have all received the new endpoints.
func BenchmarkPushLatency100(b *testing.B) { benchmarkPush(b, 100, 20) }

// BenchmarkPushLatency200x1000 is the same push of all endpoints (3,000
// ClusterLoadAssignments) to 200 clients, a mesh of 1,000 services; run
// it with -cpuprofile to see what a push costs the server. The scale
// benchmark (bench/controlplane) measures the whole control plane.
func BenchmarkPushLatency200x1000(b *testing.B) { benchmarkPush(b, 200, 1000) }

func benchmarkPush(b *testing.B, clients, services int) {
	s, addr := startServer(b, nil)
	if err := s.Update(meshInput(services, 0)); err != nil {
		b.Fatal(err)
	}

	var cur atomic.Pointer[pushRound]
	onVersion := func(typeURL, version string) {
		if typeURL != resource.EndpointType {
			return
		}
		if r := cur.Load(); r != nil && version == r.target && r.remaining.Add(-1) == 0 {
			close(r.done)
		}
	}
	var cs []*sotwClient
	for i := range clients {
		n := sidecar(b, fmt.Sprintf("bench-%d", i), "svc0", "v1", 15006)
		cs = append(cs, newSotwClient(b, dial(b, addr), n, onVersion))
	}
	eventually(b, "initial config on every client", func() bool {
		for _, c := range cs {
			if c.version(resource.EndpointType) != "1" {
				return false
			}
		}
		return true
	})

	latencies := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		v, _ := strconv.Atoi(s.Version())
		r := &pushRound{target: strconv.Itoa(v + 1), done: make(chan struct{})}
		r.remaining.Store(int32(clients))
		cur.Store(r)

		start := time.Now()
		if err := s.Update(meshInput(services, i+1)); err != nil {
			b.Fatal(err)
		}
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			b.Fatalf("round %d: %d clients did not get version %s", i, r.remaining.Load(), r.target)
		}
		latencies = append(latencies, time.Since(start))
	}
	b.StopTimer()

	slices.Sort(latencies)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(latencies[len(latencies)/2]), "p50-ms")
	b.ReportMetric(ms(latencies[(len(latencies)*99+99)/100-1]), "p99-ms")
}
