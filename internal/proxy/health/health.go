// Package health checks endpoints actively: it probes every endpoint of
// every cluster that has a health check (model.HealthCheckPolicy: an HTTP
// GET, a grpc.health.v1 Check or a TCP connect) every interval, and marks
// an endpoint unhealthy after UnhealthyThreshold failed probes in a row and
// healthy again after HealthyThreshold successful ones.
//
// Its state lives outside config snapshots, keyed by cluster name and
// endpoint address, so a config push keeps it. An endpoint new to the
// checker starts healthy (Envoy starts it unhealthy until its first check
// passes): a push never takes traffic away from instances that were
// serving it, and a failing one leaves after UnhealthyThreshold probes.
// Endpoints and clusters that leave the snapshot stop being probed and
// their state is dropped.
//
// Probes run on a fixed number of worker goroutines fed by one scheduler,
// whatever the number of endpoints; each endpoint has at most one probe in
// flight, and its next one is due an interval (plus jitter) after the last
// ended. First probes are spread at random over one interval.
//
// It only sets status: View returns the cluster with the unhealthy
// endpoints marked not healthy, and the balancers, which only select among
// healthy endpoints, never learn about health checks.
package health

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"trellis.dev/trellis/internal/proxy/model"
)

// DefaultWorkers is how many probes run at once when Options.Workers is 0.
const DefaultWorkers = 32

// UserAgent is the User-Agent of HTTP probes.
const UserAgent = "trellis-health-check"

// Options configure a Checker.
type Options struct {
	// Logger gets a line per endpoint marked unhealthy or healthy again.
	Logger *slog.Logger
	// Workers bounds the probes in flight at once (DefaultWorkers when 0).
	Workers int
	// OnFailure, when set, is called (outside any lock) for each failed
	// probe, with the cluster's name: a metrics hook.
	OnFailure func(cluster string)
	// OnUnhealthy, when set, is called (outside any lock) for each endpoint
	// marked unhealthy, with the cluster's name: a metrics hook.
	OnUnhealthy func(cluster string)
}

// Checker holds the health of the endpoints of every cluster with a health
// check. The zero value is not usable; call New, and Stop when done.
type Checker struct {
	opts Options
	log  *slog.Logger

	// clusters maps a name to its *clusterState for View, without the
	// lock; the same states as states.
	clusters sync.Map

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	wake   chan struct{} // the scheduler looks at the queue again
	jobs   chan job

	mu      sync.Mutex // guards what follows and every target's fields
	states  map[string]*clusterState
	queue   queue
	started bool
	stopped bool
}

type clusterState struct {
	name   string
	policy *model.HealthCheckPolicy
	hosts  map[string]*target
	// unhealthy is how many hosts are unhealthy now; 0 lets View return
	// the cluster itself without locking.
	unhealthy atomic.Int32
	// view is the cluster with the unhealthy hosts marked not healthy, for
	// the snapshot's cluster it was made from.
	view atomic.Pointer[view]
}

type view struct{ src, out *model.Cluster }

// target is one endpoint of one cluster. Its fields are guarded by
// Checker.mu.
type target struct {
	cs   *clusterState
	addr string
	due  time.Time
	idx  int  // in the queue; -1 while not queued (probing, or dropped)
	gone bool // dropped: a probe in flight is not recorded

	healthy             bool
	failures, successes int // consecutive
	lastCheck           time.Time
	lastErr             string
}

type job struct {
	t       *target
	cluster string
	policy  *model.HealthCheckPolicy
}

// New returns a Checker. It starts its goroutines with the first cluster
// that has a health check.
func New(opts Options) *Checker {
	if opts.Workers <= 0 {
		opts.Workers = DefaultWorkers
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Checker{
		opts: opts, log: log, ctx: ctx, cancel: cancel,
		wake: make(chan struct{}, 1), jobs: make(chan job),
		states: map[string]*clusterState{},
	}
}

// Update makes s's clusters the ones probed: every endpoint of every
// cluster with a health check. New endpoints start healthy, their first
// probe at a random time within one interval; endpoints and clusters no
// longer in s (or no longer with a health check) are dropped with their
// state. A changed health check starts every count of its cluster over
// (the health found so far stays) and probes again within one interval.
// A nil s drops everything.
func (c *Checker) Update(s *model.Snapshot) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	var clusters map[string]*model.Cluster
	if s != nil {
		clusters = s.Clusters
	}
	for name, cl := range clusters {
		p := cl.HealthCheck
		if p == nil {
			continue
		}
		cs := c.states[name]
		if cs == nil {
			cs = &clusterState{name: name, hosts: map[string]*target{}}
			c.states[name] = cs
			c.clusters.Store(name, cs)
		}
		if cs.policy != nil && !samePolicy(cs.policy, p) {
			for _, t := range cs.hosts {
				t.failures, t.successes = 0, 0
				if t.idx >= 0 {
					t.due = now.Add(firstDelay(p))
					heap.Fix(&c.queue, t.idx)
				}
			}
		}
		cs.policy = p
		present := make(map[string]bool, len(cl.Endpoints))
		for _, ep := range cl.Endpoints {
			present[ep.Address] = true
			if cs.hosts[ep.Address] == nil {
				t := &target{cs: cs, addr: ep.Address, healthy: true, due: now.Add(firstDelay(p))}
				cs.hosts[ep.Address] = t
				heap.Push(&c.queue, t)
			}
		}
		for addr, t := range cs.hosts {
			if !present[addr] {
				c.drop(t)
			}
		}
	}
	for name, cs := range c.states {
		if cl := clusters[name]; cl == nil || cl.HealthCheck == nil {
			for _, t := range cs.hosts {
				c.drop(t)
			}
			delete(c.states, name)
			c.clusters.Delete(name)
		}
	}
	if !c.started && len(c.states) > 0 {
		c.started = true
		c.wg.Add(1 + c.opts.Workers)
		go c.schedule()
		for range c.opts.Workers {
			go c.work()
		}
	}
	c.signal()
}

// drop forgets t. c.mu is held.
func (c *Checker) drop(t *target) {
	t.gone = true
	if t.idx >= 0 {
		heap.Remove(&c.queue, t.idx)
	}
	delete(t.cs.hosts, t.addr)
	if !t.healthy {
		t.cs.unhealthy.Add(-1)
		t.cs.view.Store(nil)
	}
}

func samePolicy(a, b *model.HealthCheckPolicy) bool {
	return a == b || (a.Kind == b.Kind && a.Interval == b.Interval && a.IntervalJitter == b.IntervalJitter &&
		a.IntervalJitterPercent == b.IntervalJitterPercent && a.Timeout == b.Timeout &&
		a.UnhealthyThreshold == b.UnhealthyThreshold && a.HealthyThreshold == b.HealthyThreshold &&
		a.Host == b.Host && a.Path == b.Path && slices.Equal(a.ExpectedStatuses, b.ExpectedStatuses) &&
		a.GRPCService == b.GRPCService)
}

// firstDelay spreads the first probes of new endpoints over one interval.
func firstDelay(p *model.HealthCheckPolicy) time.Duration {
	return rand.N(p.Interval)
}

// nextDelay is the time from a probe's end to the next: the interval plus
// a random jitter up to interval_jitter and interval_jitter_percent.
func nextDelay(p *model.HealthCheckPolicy) time.Duration {
	d := p.Interval
	if j := p.IntervalJitter + p.Interval*time.Duration(p.IntervalJitterPercent)/100; j > 0 {
		d += rand.N(j)
	}
	return d
}

func (c *Checker) signal() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// Stop ends every probe and the goroutines; Update does nothing after.
func (c *Checker) Stop() {
	c.mu.Lock()
	c.stopped = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
}

// schedule hands each endpoint to a worker when its probe is due.
func (c *Checker) schedule() {
	defer c.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		var j job
		wait := time.Duration(-1)
		c.mu.Lock()
		if len(c.queue) > 0 {
			t := c.queue[0]
			if d := time.Until(t.due); d > 0 {
				wait = d
			} else {
				heap.Pop(&c.queue)
				j = job{t: t, cluster: t.cs.name, policy: t.cs.policy}
			}
		}
		c.mu.Unlock()
		if j.t != nil {
			select {
			case c.jobs <- j:
			case <-c.ctx.Done():
				return
			}
			continue
		}
		if wait >= 0 {
			timer.Reset(wait)
		} else {
			timer.Stop()
		}
		select {
		case <-c.wake:
		case <-timer.C:
		case <-c.ctx.Done():
			return
		}
	}
}

func (c *Checker) work() {
	defer c.wg.Done()
	for {
		select {
		case j := <-c.jobs:
			ctx, cancel := context.WithTimeout(c.ctx, j.policy.Timeout)
			err := probe(ctx, j.cluster, j.t.addr, j.policy)
			cancel()
			if c.ctx.Err() != nil {
				return
			}
			c.record(j, err)
		case <-c.ctx.Done():
			return
		}
	}
}

// record counts a probe's result and queues the endpoint's next probe.
func (c *Checker) record(j job, err error) {
	t := j.t
	now := time.Now()
	var turned string // "unhealthy", "healthy" or ""
	c.mu.Lock()
	if t.gone {
		c.mu.Unlock()
		return
	}
	cs, p := t.cs, t.cs.policy
	t.lastCheck = now
	if err != nil {
		t.lastErr = err.Error()
		t.successes = 0
		t.failures++
		if t.healthy && t.failures >= p.UnhealthyThreshold {
			t.healthy = false
			cs.unhealthy.Add(1)
			cs.view.Store(nil)
			turned = "unhealthy"
		}
	} else {
		t.lastErr = ""
		t.failures = 0
		t.successes++
		if !t.healthy && t.successes >= p.HealthyThreshold {
			t.healthy = true
			cs.unhealthy.Add(-1)
			cs.view.Store(nil)
			turned = "healthy"
		}
	}
	t.due = now.Add(nextDelay(p))
	heap.Push(&c.queue, t)
	c.signal()
	c.mu.Unlock()

	if err != nil && c.opts.OnFailure != nil {
		c.opts.OnFailure(j.cluster)
	}
	switch turned {
	case "unhealthy":
		c.log.Warn("health check: endpoint marked unhealthy", "cluster", j.cluster, "address", t.addr,
			"failures", p.UnhealthyThreshold, "error", err)
		if c.opts.OnUnhealthy != nil {
			c.opts.OnUnhealthy(j.cluster)
		}
	case "healthy":
		c.log.Info("health check: endpoint healthy again", "cluster", j.cluster, "address", t.addr)
	}
}

// View is cl as the balancer should see it: cl itself when no endpoint of
// it is unhealthy (the common case, without locking or allocating), else a
// copy (made once per change) whose unhealthy endpoints are not healthy.
// When every healthy endpoint is unhealthy by its checks, it is cl: the
// balancer chooses among them all rather than none, as Envoy's panic
// threshold does.
func (c *Checker) View(cl *model.Cluster) *model.Cluster {
	if cl == nil || cl.HealthCheck == nil {
		return cl
	}
	v, ok := c.clusters.Load(cl.Name)
	if !ok {
		return cl
	}
	cs := v.(*clusterState)
	if cs.unhealthy.Load() == 0 {
		return cl
	}
	if w := cs.view.Load(); w != nil && w.src == cl {
		return w.out
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	out := model.WithUnhealthy(cl, func(addr string) bool {
		t := cs.hosts[addr]
		return t != nil && !t.healthy
	})
	cs.view.Store(&view{src: cl, out: out})
	return out
}

// Status is one checked endpoint, for the config dump.
type Status struct {
	Address string `json:"address"`
	Healthy bool   `json:"healthy"`
	// ConsecutiveFailures and ConsecutiveSuccesses count the probes in a
	// row that failed or passed.
	ConsecutiveFailures  int       `json:"consecutiveFailures,omitempty"`
	ConsecutiveSuccesses int       `json:"consecutiveSuccesses,omitempty"`
	LastCheck            time.Time `json:"lastCheck,omitzero"`
	// LastError is why the last probe failed ("" when it passed).
	LastError string `json:"lastError,omitempty"`
}

// Status lists the checked endpoints per cluster name, sorted by address.
func (c *Checker) Status() map[string][]Status {
	out := map[string][]Status{}
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, cs := range c.states {
		list := make([]Status, 0, len(cs.hosts))
		for _, t := range cs.hosts {
			list = append(list, Status{Address: t.addr, Healthy: t.healthy, ConsecutiveFailures: t.failures,
				ConsecutiveSuccesses: t.successes, LastCheck: t.lastCheck, LastError: t.lastErr})
		}
		slices.SortFunc(list, func(a, b Status) int { return strings.Compare(a.Address, b.Address) })
		out[name] = list
	}
	return out
}

var dialer = &net.Dialer{}

// httpClient sends HTTP probes: a new connection each (a probe checks the
// connect too), no proxy from the environment, redirects not followed (a
// 3xx is judged as it is).
var httpClient = &http.Client{
	Transport: &http.Transport{
		Proxy:                  nil,
		DialContext:            dialer.DialContext,
		DisableKeepAlives:      true,
		MaxResponseHeaderBytes: 64 << 10,
	},
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// probe checks the endpoint at addr of cluster once; nil is a success.
func probe(ctx context.Context, cluster, addr string, p *model.HealthCheckPolicy) error {
	switch p.Kind {
	case model.HealthCheckHTTP:
		return probeHTTP(ctx, hostFor(p, cluster, addr), addr, p)
	case model.HealthCheckGRPC:
		return probeGRPC(ctx, hostFor(p, cluster, addr), addr, p.GRPCService)
	case model.HealthCheckTCP:
		conn, err := dialer.DialContext(ctx, "tcp", addr)
		if err != nil {
			return err
		}
		return conn.Close()
	}
	return fmt.Errorf("unknown health check kind %q", p.Kind)
}

// hostFor is the Host (:authority) of a probe: the policy's, else the
// cluster's name as in Envoy, else (a name like "reviews|v1" is no valid
// host) the endpoint's address.
func hostFor(p *model.HealthCheckPolicy, cluster, addr string) string {
	for _, h := range []string{p.Host, cluster} {
		if h != "" && httpguts.ValidHostHeader(h) {
			return h
		}
	}
	return addr
}

// maxBody is what an HTTP probe reads of an answer's body before closing.
const maxBody = 4 << 10

func probeHTTP(ctx context.Context, host, addr string, p *model.HealthCheckPolicy) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+p.Path, nil)
	if err != nil {
		return err
	}
	req.Host = host
	req.Header.Set("User-Agent", UserAgent)
	resp, err := httpClient.Do(req)
	if err != nil {
		var ue interface{ Unwrap() error }
		if errors.As(err, &ue) && ue.Unwrap() != nil {
			err = ue.Unwrap() // "context deadline exceeded", not the URL again
		}
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxBody))
	resp.Body.Close()
	if !p.Expects(resp.StatusCode) {
		return fmt.Errorf("GET %s answered %d", p.Path, resp.StatusCode)
	}
	return nil
}

func probeGRPC(ctx context.Context, authority, addr, service string) error {
	conn, err := grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithAuthority(authority),
		grpc.WithNoProxy(),
		grpc.WithUserAgent(UserAgent))
	if err != nil {
		return err
	}
	defer conn.Close()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return err
	}
	if st := resp.GetStatus(); st != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("grpc health of %q is %s", service, st)
	}
	return nil
}
