package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"sync"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/apiclient"
	"trellis.dev/trellis/internal/meshxds"
)

// result is what one (proxies, services) point measured.
type result struct {
	Proxies, Services, Instances int

	Connect time.Duration // first stream opened → every proxy has ACKed all four types

	Route     summary // every proxy's ACK of every route change
	RouteLast summary // per route change: time to the last proxy's ACK
	Endpoint  summary // per endpoint change: time to the last proxy's ACK

	RSSIdle, RSSPeak int64         // bytes: idle with every proxy connected; peak while pushing
	IdleCPU          float64       // cores used while idle (lease keepalives, gRPC keepalives)
	CPURoute         time.Duration // per route push, net of idle
	CPUEndpoint      time.Duration // per endpoint push, net of idle

	Config       size // full initial config of one proxy
	EndpointPush size // the EDS response of the last endpoint change, to proxy 0

	// OtherCPU is the CPU (in cores) that neither the control plane nor
	// the benchmark used while this point ran: other processes on the
	// machine, which skew the numbers when it is not near 0.
	OtherCPU float64

	// Err is why the point could not be measured ("" when it was).
	Err string

	// LeasesLost counts the times etcd expired the control plane's
	// registry lease while it ran (too busy to renew it): each time, every
	// instance was briefly gone from the mesh.
	LeasesLost int
}

// meshRun is one control plane populated with one mesh size, measured at
// every proxy count.
type meshRun struct {
	cfg      *config
	cp       *controlPlane
	api      *apiclient.Client
	stats    procStats
	services int
	logPath  string
	weights  map[string]int // service → v1 weight now applied
	extra    int            // endpoint changes so far (unique instance IDs)
}

func runMesh(ctx context.Context, cfg *config, bin, dir string, services int) ([]result, error) {
	dataDir := filepath.Join(dir, fmt.Sprintf("s%d", services))
	var (
		cp  *controlPlane
		err error
	)
	if cfg.inProcess {
		cp, err = startInProcess(ctx, dataDir, dataDir+".log")
	} else {
		cp, err = startProcess(ctx, bin, dataDir, dataDir+".log", cfg.controlArgs)
	}
	if err != nil {
		return nil, err
	}
	defer func() {
		if err := cp.stop(); err != nil {
			log.Printf("stopping control plane: %v", err)
		}
	}()
	m := &meshRun{cfg: cfg, cp: cp, api: apiclient.New(cp.httpAddr), stats: procStats{cp.pid},
		services: services, logPath: dataDir + ".log", weights: map[string]int{}}
	log.Printf("control plane pid %d: http=%s xds=%s", cp.pid, cp.httpAddr, cp.xdsAddr)

	start := time.Now()
	if err := applyRoutes(ctx, m.api, services); err != nil {
		return nil, err
	}
	for i := range services {
		m.weights[serviceName(i)] = initialWeight
	}
	insts := meshInstances(services)
	streams, conns, err := registerAll(ctx, m.api, cp.xdsAddr, insts, cfg.instancesPerConn)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, s := range streams {
			s.close()
		}
		closeAll(conns)
	}()
	if err := waitSettled(ctx, m.api, 500*time.Millisecond); err != nil {
		return nil, err
	}
	log.Printf("mesh of %d services (%d routes, %d instances on %d streams) populated in %s",
		services, services, len(insts), len(streams), time.Since(start).Round(time.Millisecond))

	var out []result
	for _, n := range cfg.proxies {
		r, err := m.measure(ctx, n, len(insts))
		if err != nil {
			// More proxies would fail the same way: the next mesh size
			// gets a fresh control plane.
			log.Printf("%d proxies × %d services: %v", n, services, err)
			r.Err = err.Error()
			out = append(out, r)
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			break
		}
		out = append(out, r)
	}
	return out, nil
}

// measure connects n proxies, measures, and disconnects them.
func (m *meshRun) measure(ctx context.Context, n, instances int) (res result, err error) {
	res = result{Proxies: n, Services: m.services, Instances: instances}
	label := fmt.Sprintf("%d proxies × %d services", n, m.services)
	perConn := m.cfg.proxiesPerConn
	conns, err := dialAll(m.cp.xdsAddr, (n+perConn-1)/perConn)
	if err != nil {
		return res, err
	}
	defer closeAll(conns)

	if m.cfg.waitIdle > 0 {
		m.waitIdle(ctx, m.cfg.waitIdle)
	}
	rec := &recorder{}
	proxies := make([]*proxy, n)
	lostBefore := countInFile(m.logPath, leaseLost)
	other := m.otherCPU()
	defer func() {
		res.OtherCPU = other()
		res.LeasesLost = countInFile(m.logPath, leaseLost) - lostBefore
		for _, p := range proxies {
			if p != nil {
				p.cancel()
			}
		}
		// Wait until the control plane has let them go, so the next point
		// starts clean.
		if werr := waitFor(ctx, 2*time.Minute, "proxies to disconnect", func() (bool, error) {
			p, err := getProxies(ctx, m.api)
			for _, item := range p.Items {
				if strings.HasPrefix(item.ID, proxyIDPrefix) {
					return false, err
				}
			}
			return true, err
		}); werr != nil && err == nil {
			err = werr
		}
	}()

	stopProfile := m.profile("connect", n)
	start := time.Now()
	if err := m.connect(conns, proxies, rec); err != nil {
		stopProfile()
		return res, err
	}
	err = waitFor(ctx, m.cfg.pushTimeout, label+": every proxy synced", func() (bool, error) {
		for _, p := range proxies {
			if err := p.failure(); err != nil {
				return false, fmt.Errorf("proxy %d: %w", p.idx, err)
			}
			select {
			case <-p.synced:
			default:
				return false, nil
			}
		}
		return true, nil
	})
	res.Connect = time.Since(start)
	stopProfile()
	if err != nil {
		return res, err
	}
	if err := m.checkSame(ctx, proxies); err != nil {
		return res, err
	}
	res.Config = proxies[0].initialSize()
	for _, p := range proxies {
		if s := p.initialSize(); s != res.Config {
			return res, fmt.Errorf("proxy %d received %+v of initial config, proxy 0 %+v", p.idx, s, res.Config)
		}
	}
	if got, want := proxies[0].endpoints(meshxds.ClusterName(serviceName(0), "")), len(versions)*instancesPerVersion; got != want {
		return res, fmt.Errorf("proxy 0 has %d endpoints for %s, want %d", got, serviceName(0), want)
	}
	log.Printf("%s: connected and synced in %s; full config %d B resources, %d B on the wire",
		label, res.Connect.Round(time.Millisecond), res.Config.resources, res.Config.message)
	m.heapProfile(n)

	// Idle: memory and the CPU the control plane burns doing nothing.
	sleep(ctx, 2*time.Second)
	cpu0, err := m.stats.cpu()
	if err != nil {
		return res, err
	}
	const idleWindow = 3 * time.Second
	sleep(ctx, idleWindow)
	cpu1, err := m.stats.cpu()
	if err != nil {
		return res, err
	}
	res.IdleCPU = float64(cpu1-cpu0) / float64(idleWindow)
	if res.RSSIdle, _, err = m.stats.memory(); err != nil {
		return res, err
	}

	// Pushes, with the memory peak sampled and VmHWM reset.
	peakStop := m.samplePeak()
	stopProfile = m.profile("push", n)
	var routeLat, routeLast []time.Duration
	var cpuRoute time.Duration
	for i := range m.cfg.changes {
		lat, last, cpu, err := m.routeChange(ctx, proxies, rec, i, res.IdleCPU)
		if err != nil {
			stopProfile()
			peakStop()
			return res, err
		}
		routeLat = append(routeLat, lat...)
		routeLast = append(routeLast, last)
		cpuRoute += cpu
	}
	var epLast []time.Duration
	var cpuEP time.Duration
	var extra *instanceStream
	for j := range m.cfg.endpointChanges {
		last, cpu, err := m.endpointChange(ctx, proxies, rec, conns[0], &extra, res.IdleCPU)
		if err != nil {
			stopProfile()
			peakStop()
			return res, fmt.Errorf("endpoint change %d: %w", j, err)
		}
		epLast = append(epLast, last)
		cpuEP += cpu
	}
	if m.cfg.endpointChanges > 0 {
		res.EndpointPush = proxies[0].lastSize(resource.EndpointType)
	}
	if extra != nil {
		extra.close()
	}
	stopProfile()
	res.RSSPeak = peakStop()
	res.Route, res.RouteLast, res.Endpoint = summarize(routeLat), summarize(routeLast), summarize(epLast)
	if c := m.cfg.changes; c > 0 {
		res.CPURoute = cpuRoute / time.Duration(c)
	}
	if c := m.cfg.endpointChanges; c > 0 {
		res.CPUEndpoint = cpuEP / time.Duration(c)
	}
	log.Printf("%s: route change to last ACK p50 %s p99 %s ms; endpoint change to last ACK p50 %s ms; RSS idle %.0f MB peak %.0f MB; other load %.2f cores so far",
		label, ms(res.RouteLast.P50), ms(res.RouteLast.P99), ms(res.Endpoint.P50), mb(res.RSSIdle), mb(res.RSSPeak), other())
	return res, nil
}

// connect opens every proxy's stream, 64 at a time; proxy 0 verifies what
// it receives.
func (m *meshRun) connect(conns []*grpc.ClientConn, proxies []*proxy, rec *recorder) error {
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		sem      = make(chan struct{}, 64)
	)
	for i := range proxies {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			p, err := startProxy(conns[i/m.cfg.proxiesPerConn], i, i == 0, rec)
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("proxy %d: %w", i, err)
			}
			proxies[i] = p
		})
	}
	wg.Wait()
	return firstErr
}

// checkSame waits until every proxy runs the same versions as the
// control plane published.
func (m *meshRun) checkSame(ctx context.Context, proxies []*proxy) error {
	return waitFor(ctx, m.cfg.pushTimeout, "every proxy on the same versions", func() (bool, error) {
		for _, t := range types {
			want := proxies[0].version(t)
			for _, p := range proxies {
				if err := p.failure(); err != nil {
					return false, fmt.Errorf("proxy %d: %w", p.idx, err)
				}
				if p.version(t) != want {
					return false, nil
				}
			}
		}
		return true, nil
	})
}

// push runs one measured change: change is applied after the round starts
// and the round ends when every proxy has ACKed a version of typeURL that
// carries it — the first version in which proxy 0 finds what match looks
// for, or a later one. cpu is the control plane's CPU from the change
// until 250 ms after the last ACK, minus what it burns idle in that time.
func (m *meshRun) push(ctx context.Context, proxies []*proxy, rec *recorder, typeURL string, idleCPU float64, match func(*proxy) bool, change func() error) (lat []time.Duration, last, cpu time.Duration, err error) {
	if err := m.checkSame(ctx, proxies); err != nil {
		return nil, 0, 0, err
	}
	rd := newRound(typeURL, proxies[0].version(typeURL), len(proxies), match)
	cpu0, err := m.stats.cpu()
	if err != nil {
		return nil, 0, 0, err
	}
	rd.start = time.Now()
	rec.cur.Store(rd)
	defer rec.cur.Store(nil)
	if err := change(); err != nil {
		return nil, 0, 0, err
	}
	if err := m.await(ctx, rd, proxies); err != nil {
		return nil, 0, 0, err
	}
	lat, _ = rd.results()
	last = summarize(lat).Max
	sleep(ctx, 250*time.Millisecond)
	cpu1, err := m.stats.cpu()
	if err != nil {
		return nil, 0, 0, err
	}
	wall := time.Since(rd.start)
	cpu = max(cpu1-cpu0-time.Duration(idleCPU*float64(wall)), 0)
	return lat, last, cpu, nil
}

// await waits for the round to end, failing at once if a proxy's stream
// broke.
func (m *meshRun) await(ctx context.Context, rd *round, proxies []*proxy) error {
	timeout := time.NewTimer(m.cfg.pushTimeout)
	defer timeout.Stop()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-rd.done:
			return nil
		case <-timeout.C:
			_, missing := rd.results()
			return fmt.Errorf("%d of %d proxies did not ACK a new %s within %s", missing, len(proxies), rd.typeURL, m.cfg.pushTimeout)
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			for _, p := range proxies {
				if err := p.failure(); err != nil {
					return fmt.Errorf("proxy %d: %w", p.idx, err)
				}
			}
		}
	}
}

// routeChange applies a new weight to one service's Route.
func (m *meshRun) routeChange(ctx context.Context, proxies []*proxy, rec *recorder, i int, idleCPU float64) ([]time.Duration, time.Duration, time.Duration, error) {
	svc := serviceName(i % m.services)
	w := []int{80, 70, 60, 50, 40}[i%5]
	if w == m.weights[svc] {
		w -= 5
	}
	want := fmt.Sprintf("v1=%d,v2=%d", w, 100-w)
	match := func(p *proxy) bool { return p.routeWeights(svc) == want }
	lat, last, cpu, err := m.push(ctx, proxies, rec, resource.RouteType, idleCPU, match, func() error {
		_, err := m.api.Apply(ctx, []byte(routeYAML(svc, w)))
		return err
	})
	if err != nil {
		return nil, 0, 0, fmt.Errorf("route change %d (%s to %s): %w", i, svc, want, err)
	}
	m.weights[svc] = w
	return lat, last, cpu, nil
}

// endpointChange adds an instance of svc-0001 v1 by opening its sidecar's
// stream, or removes it by closing the stream.
func (m *meshRun) endpointChange(ctx context.Context, proxies []*proxy, rec *recorder, conn *grpc.ClientConn, extra **instanceStream, idleCPU float64) (time.Duration, time.Duration, error) {
	svc := serviceName(1 % m.services)
	cluster := meshxds.ClusterName(svc, "v1")
	want := instancesPerVersion
	change := func() error { (*extra).close(); *extra = nil; return nil }
	if *extra == nil {
		m.extra++
		inst := api.Instance{ID: fmt.Sprintf("%s-v1-extra%d", svc, m.extra), Service: svc, Version: "v1",
			Address: "10.254.0.1", Port: 15006 + m.extra, Zone: "zone-a"}
		want++
		change = func() error {
			s, err := registerInstance(conn, inst)
			*extra = s
			return err
		}
	}
	match := func(p *proxy) bool { return p.endpoints(cluster) == want }
	_, last, cpu, err := m.push(ctx, proxies, rec, resource.EndpointType, idleCPU, match, change)
	if err != nil {
		return 0, 0, fmt.Errorf("%s to %d endpoints: %w", cluster, want, err)
	}
	return last, cpu, nil
}

// samplePeak samples the control plane's RSS every 20 ms (and resets its
// VmHWM) until the returned function is called; that returns the peak.
func (m *meshRun) samplePeak() func() int64 {
	resetOK := m.stats.resetPeak() == nil
	stop := make(chan struct{})
	done := make(chan int64)
	go func() {
		var peak int64
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if rss, _, err := m.stats.memory(); err == nil {
				peak = max(peak, rss)
			}
			select {
			case <-stop:
				if _, hwm, err := m.stats.memory(); err == nil && resetOK {
					peak = max(peak, hwm)
				}
				done <- peak
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 { close(stop); return <-done }
}

// otherCPU starts measuring the CPU that neither the control plane nor
// this process uses; the returned function ends it, in cores.
func (m *meshRun) otherCPU() func() float64 {
	self := procStats{os.Getpid()}
	ours := func() time.Duration {
		cp, _ := m.stats.cpu()
		if m.stats.pid == self.pid {
			return cp
		}
		me, _ := self.cpu()
		return cp + me
	}
	start, busy0, ours0 := time.Now(), must(systemBusy()), ours()
	return func() float64 {
		other := must(systemBusy()) - busy0 - (ours() - ours0)
		return max(float64(other)/float64(time.Since(start)), 0)
	}
}

// waitIdle waits, at most max, until other processes have used less than
// 0.1 cores for 5 s: the machine may be shared with other benchmarks.
func (m *meshRun) waitIdle(ctx context.Context, max time.Duration) {
	deadline := time.Now().Add(max)
	for {
		other := m.otherCPU()
		sleep(ctx, 5*time.Second)
		load := other()
		if load < 0.1 || ctx.Err() != nil {
			return
		}
		if time.Now().After(deadline) {
			log.Printf("other processes still use %.2f cores; measuring anyway", load)
			return
		}
		log.Printf("other processes use %.2f cores; waiting for the machine to be idle", load)
	}
}

func must(d time.Duration, err error) time.Duration {
	if err != nil {
		return 0
	}
	return d
}

// profile starts a CPU profile of this process (in-process mode with
// -cpuprofile) and returns its stop.
func (m *meshRun) profile(phase string, n int) func() {
	if m.cfg.cpuProfile == "" {
		return func() {}
	}
	path := fmt.Sprintf("%s.%dx%d.%s.pprof", m.cfg.cpuProfile, n, m.services, phase)
	f, err := os.Create(path)
	if err != nil {
		log.Printf("cpu profile: %v", err)
		return func() {}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		log.Printf("cpu profile: %v", err)
		f.Close()
		return func() {}
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		log.Printf("wrote %s", path)
	}
}

// heapProfile writes the in-use heap (in-process mode with -cpuprofile).
func (m *meshRun) heapProfile(n int) {
	if m.cfg.cpuProfile == "" {
		return
	}
	path := fmt.Sprintf("%s.%dx%d.heap.pprof", m.cfg.cpuProfile, n, m.services)
	f, err := os.Create(path)
	if err != nil {
		log.Printf("heap profile: %v", err)
		return
	}
	defer f.Close()
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		log.Printf("heap profile: %v", err)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// leaseLost is what internal/registry logs when etcd expired the lease
// its instances share while the control plane was running: every instance
// of that control plane left the mesh until it was written again.
const leaseLost = "registry lease lost"

// countInFile counts the lines of path that contain s.
func countInFile(path, s string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return strings.Count(string(data), s)
}

func mb(b int64) float64 { return float64(b) / (1 << 20) }
