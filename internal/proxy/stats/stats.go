// Package stats holds one proxy's Prometheus metrics. Each proxy has its own
// registry, not the global one, because `trellis demo` runs several proxies
// in one process and their series must not collide.
package stats

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Directions of traffic, the "direction" label.
const (
	Outbound = "outbound" // app → mesh
	Inbound  = "inbound"  // mesh → app
	Gateway  = "gateway"  // outside → mesh
)

// Metrics of one proxy.
type Metrics struct {
	Registry *prometheus.Registry

	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	configUpdates prometheus.Counter
}

// durationBuckets start below a millisecond: a hop through a sidecar pair
// on one host takes a fraction of one.
var durationBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// New registers the proxy's metrics in a new registry. xdsConnected reports
// the state of the xDS stream at scrape time.
func New(xdsConnected func() bool) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "trellis_proxy_requests_total",
			Help: "Requests handled, by direction, destination (outbound, gateway) or own (inbound) service and version, and HTTP status code.",
		}, []string{"direction", "service", "version", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "trellis_proxy_request_duration_seconds",
			Help:    "Time from request to the end of the response, by direction, service and version.",
			Buckets: durationBuckets,
		}, []string{"direction", "service", "version"}),
		configUpdates: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "trellis_proxy_config_updates_total",
			Help: "Configuration snapshots applied.",
		}),
	}
	connected := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "trellis_proxy_xds_connected",
		Help: "1 while the xDS stream to the control plane is up.",
	}, func() float64 {
		if xdsConnected != nil && xdsConnected() {
			return 1
		}
		return 0
	})
	m.Registry.MustRegister(m.requests, m.duration, m.configUpdates, connected)
	return m
}

// ObserveRequest records one finished request.
func (m *Metrics) ObserveRequest(direction, service, version string, code int, d time.Duration) {
	m.requests.WithLabelValues(direction, service, version, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(direction, service, version).Observe(d.Seconds())
}

// ConfigUpdated counts one applied snapshot.
func (m *Metrics) ConfigUpdated() { m.configUpdates.Inc() }
