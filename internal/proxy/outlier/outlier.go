// Package outlier ejects failing endpoints passively: it counts each
// exchange's outcome per cluster and endpoint address, and ejects an
// endpoint whose consecutive 5xx or gateway errors reach the cluster's
// thresholds (model.OutlierPolicy), as Envoy's outlier detection does.
//
// Its state lives outside config snapshots, keyed by cluster name and
// address, so counts and ejections outlive config changes. It only sets
// status: View returns the cluster with the ejected endpoints marked not
// healthy, and the balancers, which only select among healthy endpoints,
// never learn about ejection.
//
// Un-ejection is lazy: an ejection whose time has passed ends on the next
// View or Report of its cluster, with no timer or goroutine.
package outlier

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/proxy/syncmap"
)

// Detector holds the outlier state of every cluster with outlier detection.
// The zero value is not usable; call New.
type Detector struct {
	now func() time.Time
	// OnEject, when set, is called (outside any lock) for each ejection,
	// with the cluster's name: the metrics hook.
	OnEject  func(cluster string)
	clusters sync.Map // cluster name → *clusterState
}

// New returns a Detector reading the time from now (time.Now when nil).
func New(now func() time.Time) *Detector {
	if now == nil {
		now = time.Now
	}
	return &Detector{now: now}
}

type clusterState struct {
	// ejected is how many hosts are ejected now; 0 lets View return the
	// cluster itself without locking.
	ejected atomic.Int32
	// view is the cluster with the ejected hosts marked not healthy, for
	// the snapshot's cluster it was made from, valid until soonest (the
	// earliest end of an ejection, unix nanoseconds).
	view atomic.Pointer[view]

	mu    sync.Mutex
	hosts map[string]*host
}

type view struct {
	src, out *model.Cluster
	soonest  int64
}

type host struct {
	consecutive5xx, consecutiveGateway int
	// ejections is how many times the host was ejected (the multiplier of
	// the base ejection time), lessened by one per interval not ejected.
	ejections int
	ejected   bool
	until     time.Time // the ejection's end, when ejected
	since     time.Time // when the last ejection ended
}

// Outcome is what one exchange with an endpoint reported.
type Outcome struct {
	// Status is the answer's status code (0 when ConnectFailed).
	Status int
	// ConnectFailed: connecting to the endpoint failed.
	ConnectFailed bool
}

func (o Outcome) gatewayError() bool {
	return o.ConnectFailed || o.Status == 502 || o.Status == 503 || o.Status == 504
}

func (o Outcome) is5xx() bool { return o.ConnectFailed || o.Status >= 500 }

func (d *Detector) state(name string) *clusterState {
	if s, ok := d.clusters.Load(name); ok {
		return s.(*clusterState)
	}
	s, _ := d.clusters.LoadOrStore(name, &clusterState{hosts: map[string]*host{}})
	return s.(*clusterState)
}

// Report counts an exchange's outcome with the endpoint at addr of c, and
// ejects the endpoint when a threshold of c's policy is reached and the
// share of ejected endpoints allows it. A cluster without outlier
// detection is ignored, as is an endpoint ejected already.
func (d *Detector) Report(c *model.Cluster, addr string, o Outcome) {
	p := c.Outlier
	if p == nil {
		return
	}
	s := d.state(c.Name)
	now := d.now()
	ejected := false
	s.mu.Lock()
	s.expire(now)
	h := s.hosts[addr]
	if h == nil {
		h = &host{}
		s.hosts[addr] = h
	}
	switch {
	case h.ejected:
	case !o.is5xx():
		h.consecutive5xx, h.consecutiveGateway = 0, 0
	default:
		h.consecutive5xx++
		if o.gatewayError() {
			h.consecutiveGateway++
		}
		if (p.Consecutive5xx > 0 && h.consecutive5xx >= p.Consecutive5xx) ||
			(p.ConsecutiveGateway > 0 && h.consecutiveGateway >= p.ConsecutiveGateway) {
			h.consecutive5xx, h.consecutiveGateway = 0, 0
			ejected = s.eject(p, h, len(c.Endpoints), now)
		}
	}
	s.mu.Unlock()
	if ejected && d.OnEject != nil {
		d.OnEject(c.Name)
	}
}

// eject ejects h if one more ejected endpoint of total stays within the
// policy's share (Envoy: 100 × (ejected+1) / total ≤ max_ejection_percent,
// so a share that allows less than one endpoint allows none).
func (s *clusterState) eject(p *model.OutlierPolicy, h *host, total int, now time.Time) bool {
	n := int(s.ejected.Load())
	if total == 0 || 100*(n+1) > p.MaxEjectionPercent*total {
		return false
	}
	if p.Interval > 0 && !h.since.IsZero() {
		h.ejections = max(0, h.ejections-int(now.Sub(h.since)/p.Interval))
	}
	h.ejections++
	d := min(p.BaseEjection*time.Duration(h.ejections), max(p.MaxEjection, p.BaseEjection))
	h.ejected, h.until = true, now.Add(d)
	s.ejected.Add(1)
	s.view.Store(nil)
	return true
}

// expire ends the ejections whose time has passed. s.mu is held.
func (s *clusterState) expire(now time.Time) {
	if s.ejected.Load() == 0 {
		return
	}
	for _, h := range s.hosts {
		if h.ejected && !now.Before(h.until) {
			h.ejected, h.since = false, now
			h.consecutive5xx, h.consecutiveGateway = 0, 0
			s.ejected.Add(-1)
			s.view.Store(nil)
		}
	}
}

// View is c as the balancer should see it: c itself when nothing of it is
// ejected (the common case, without locking or allocating), else a copy
// (made once per change) whose ejected endpoints are not healthy. When
// every healthy endpoint is ejected, it is c: the balancer chooses among
// all healthy ones, as Envoy's panic threshold does.
func (d *Detector) View(c *model.Cluster) *model.Cluster {
	if c == nil || c.Outlier == nil {
		return c
	}
	v, ok := d.clusters.Load(c.Name)
	if !ok {
		return c
	}
	s := v.(*clusterState)
	if s.ejected.Load() == 0 {
		return c
	}
	now := d.now()
	if w := s.view.Load(); w != nil && w.src == c && now.UnixNano() < w.soonest {
		return w.out
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.expire(now)
	if s.ejected.Load() == 0 {
		return c
	}
	out := model.WithUnhealthy(c, func(addr string) bool {
		h := s.hosts[addr]
		return h != nil && h.ejected
	})
	soonest := int64(1<<63 - 1)
	for _, h := range s.hosts {
		if h.ejected {
			soonest = min(soonest, h.until.UnixNano())
		}
	}
	s.view.Store(&view{src: c, out: out, soonest: soonest})
	return out
}

// Ejected is one ejected endpoint, for the config dump.
type Ejected struct {
	Address   string    `json:"address"`
	Until     time.Time `json:"until"`
	Ejections int       `json:"ejections"`
}

// Ejected lists the endpoints ejected now, per cluster name, sorted by
// address; clusters without any are left out.
func (d *Detector) Ejected() map[string][]Ejected {
	out := map[string][]Ejected{}
	now := d.now()
	d.clusters.Range(func(k, v any) bool {
		s := v.(*clusterState)
		s.mu.Lock()
		s.expire(now)
		for addr, h := range s.hosts {
			if h.ejected {
				out[k.(string)] = append(out[k.(string)], Ejected{Address: addr, Until: h.until, Ejections: h.ejections})
			}
		}
		s.mu.Unlock()
		slices.SortFunc(out[k.(string)], func(a, b Ejected) int {
			if a.Address < b.Address {
				return -1
			}
			if a.Address > b.Address {
				return 1
			}
			return 0
		})
		return true
	})
	return out
}

// Retain drops the outlier state (counts, ejections) of every cluster keep
// refuses (gone from the configuration).
func (d *Detector) Retain(keep func(cluster string) bool) {
	syncmap.DeleteUnless(&d.clusters, keep)
}
