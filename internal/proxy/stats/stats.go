// Package stats holds one proxy's Prometheus metrics. Each proxy has its own
// registry, not the global one, because `trellis demo` runs several proxies
// in one process and their series must not collide.
package stats

import (
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Directions of traffic, the "direction" label.
const (
	Outbound = "outbound" // app → mesh
	Inbound  = "inbound"  // mesh → app
	Gateway  = "gateway"  // outside → mesh
)

// Reasons a connection is refused, the "reason" label of
// trellis_proxy_connections_rejected_total.
const (
	// ReasonOverloaded: the listener is at its cap of concurrent
	// connections; the connection is answered 503 overloaded and closed.
	ReasonOverloaded = "overloaded"
	// ReasonFDExhausted: accept failed with EMFILE or ENFILE; the
	// connection waits in the backlog until descriptors free up.
	ReasonFDExhausted = "fd_exhausted"
)

// Metrics of one proxy.
type Metrics struct {
	Registry *prometheus.Registry

	requests      *prometheus.CounterVec
	duration      *prometheus.HistogramVec
	configUpdates prometheus.Counter
	rejected      *prometheus.CounterVec
	tunnels       *prometheus.CounterVec
	tunnelBytes   *prometheus.CounterVec
	ejections     *prometheus.CounterVec
	overflows     *prometheus.CounterVec
	retries       *prometheus.CounterVec
	retryOverflow *prometheus.CounterVec
	hcFailures    *prometheus.CounterVec
	hcUnhealthy   *prometheus.CounterVec
	inboundConns  *prometheus.CounterVec
	inboundBytes  *prometheus.CounterVec

	cache sync.Map // seriesKey → *series
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
	m.rejected = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trellis_proxy_connections_rejected_total",
		Help: "Connections refused by a listener, by listener and reason (overloaded: over its connection cap; fd_exhausted: accept failed for want of file descriptors).",
	}, []string{"listener", "reason"})
	m.tunnels = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trellis_proxy_tunnels_total",
		Help: "CONNECT tunnels ended, by destination (mesh, external), protocol sniffed inside (http/1.1, h2, tls, tcp) and mode (routed: request by request; relayed: TCP).",
	}, []string{"destination", "protocol", "mode"})
	m.tunnelBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trellis_proxy_tunnel_bytes_total",
		Help: "Bytes relayed by TCP tunnels, by destination (mesh, external) and direction (sent: client to upstream; received: upstream to client), counted when a tunnel ends.",
	}, []string{"destination", "direction"})
	m.ejections = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trellis_proxy_outlier_ejections_total",
		Help: "Endpoints ejected by outlier detection, by cluster.",
	}, []string{"cluster"})
	m.overflows = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trellis_proxy_circuit_breaker_overflows_total",
		Help: "Requests answered 503 overloaded because their cluster had max_requests in flight (circuit breaker), by cluster.",
	}, []string{"cluster"})
	m.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trellis_proxy_retries_total",
		Help: "Requests sent again by their route's retry policy, by cluster.",
	}, []string{"cluster"})
	m.retryOverflow = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trellis_proxy_retry_budget_overflows_total",
		Help: "Retries not made because their cluster's retry budget was spent, by cluster.",
	}, []string{"cluster"})
	connected := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "trellis_proxy_xds_connected",
		Help: "1 while the xDS stream to the control plane is up.",
	}, func() float64 {
		if xdsConnected != nil && xdsConnected() {
			return 1
		}
		return 0
	})
	m.Registry.MustRegister(m.requests, m.duration, m.configUpdates, m.rejected, m.tunnels, m.tunnelBytes, m.ejections, m.overflows, m.retries, m.retryOverflow, connected)
	m.hcFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trellis_proxy_health_check_failures_total",
		Help: "Active health check probes that failed, by cluster.",
	}, []string{"cluster"})
	m.hcUnhealthy = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trellis_proxy_health_check_unhealthy_total",
		Help: "Endpoints marked unhealthy by active health checks (unhealthy_threshold failed probes in a row), by cluster.",
	}, []string{"cluster"})
	m.Registry.MustRegister(m.hcFailures, m.hcUnhealthy)
	m.inboundConns = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trellis_proxy_inbound_connections_total",
		Help: "Connections the inbound listener took, by protocol (http/1.1, h2, tls, tcp) and how it was known (sniffed: from the first bytes; silence: no byte within the wait, a server-first protocol; declared: --app-protocol). http/1.1 and h2 are served as HTTP, tls and tcp relayed to the app.",
	}, []string{"protocol", "by"})
	m.inboundBytes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "trellis_proxy_inbound_relay_bytes_total",
		Help: "Bytes relayed between peers and the app by the inbound listener's TCP relays, by direction (received: peer to app; sent: app to peer), counted when a relay ends.",
	}, []string{"direction"})
	m.Registry.MustRegister(m.inboundConns, m.inboundBytes)
	return m
}

// ObserveRequest records one finished request.
//
// WithLabelValues hashes the label values and looks the series up under a
// lock on every call, and formats the code; the series of a label set never
// change, so they are looked up once and kept in a sync.Map (read-mostly,
// so lock-free after the first request of each label set). Its size is the
// number of series, which Prometheus keeps anyway.
func (m *Metrics) ObserveRequest(direction, service, version string, code int, d time.Duration) {
	s := m.series(seriesKey{direction, service, version, code})
	s.requests.Inc()
	s.duration.Observe(d.Seconds())
}

type seriesKey struct {
	direction, service, version string
	code                        int
}

type series struct {
	requests prometheus.Counter
	duration prometheus.Observer
}

func (m *Metrics) series(k seriesKey) *series {
	if s, ok := m.cache.Load(k); ok {
		return s.(*series)
	}
	s := &series{
		requests: m.requests.WithLabelValues(k.direction, k.service, k.version, strconv.Itoa(k.code)),
		duration: m.duration.WithLabelValues(k.direction, k.service, k.version),
	}
	got, _ := m.cache.LoadOrStore(k, s)
	return got.(*series)
}

// ConfigUpdated counts one applied snapshot.
func (m *Metrics) ConfigUpdated() { m.configUpdates.Inc() }

// ConnectionsRejected is the counter of connections listener refused for
// reason (ReasonOverloaded, ReasonFDExhausted). The series exists, at 0,
// from this call on.
func (m *Metrics) ConnectionsRejected(listener, reason string) prometheus.Counter {
	return m.rejected.WithLabelValues(listener, reason)
}

// TrackOpenConnections registers trellis_proxy_connections_open for
// listener: open is read at scrape time. Call it once per listener name.
func (m *Metrics) TrackOpenConnections(listener string, open func() int64) {
	m.Registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "trellis_proxy_connections_open",
		Help:        "Connections open on a listener, the ones handed to net/http and CONNECT tunnels included.",
		ConstLabels: prometheus.Labels{"listener": listener},
	}, func() float64 { return float64(open()) }))
}

// ObserveTunnel records one ended CONNECT tunnel: destination "mesh" or
// "external", the protocol sniffed inside, whether it was relayed as TCP
// (else routed request by request), and the bytes relayed each way.
func (m *Metrics) ObserveTunnel(destination, protocol string, relayed bool, sent, received int64) {
	mode := "routed"
	if relayed {
		mode = "relayed"
		m.tunnelBytes.WithLabelValues(destination, "sent").Add(float64(sent))
		m.tunnelBytes.WithLabelValues(destination, "received").Add(float64(received))
	}
	m.tunnels.WithLabelValues(destination, protocol, mode).Inc()
}

// InboundConnection counts one connection the inbound listener took, by the
// protocol it speaks and how that was known ("sniffed", "silence",
// "declared").
func (m *Metrics) InboundConnection(protocol, by string) {
	m.inboundConns.WithLabelValues(protocol, by).Inc()
}

// InboundRelayed records the bytes of one ended inbound TCP relay: received
// from the peer (to the app) and sent to it (from the app).
func (m *Metrics) InboundRelayed(received, sent int64) {
	m.inboundBytes.WithLabelValues("received").Add(float64(received))
	m.inboundBytes.WithLabelValues("sent").Add(float64(sent))
}

// OutlierEjected counts one endpoint of cluster ejected by outlier
// detection.
func (m *Metrics) OutlierEjected(cluster string) { m.ejections.WithLabelValues(cluster).Inc() }

// CircuitBreakerOverflow counts one request to cluster refused by its
// circuit breaker.
func (m *Metrics) CircuitBreakerOverflow(cluster string) { m.overflows.WithLabelValues(cluster).Inc() }

// Retried counts one retry to cluster.
func (m *Metrics) Retried(cluster string) { m.retries.WithLabelValues(cluster).Inc() }

// RetryOverflow counts one retry to cluster its retry budget refused.
func (m *Metrics) RetryOverflow(cluster string) { m.retryOverflow.WithLabelValues(cluster).Inc() }

// HealthCheckFailed counts one failed health check probe of an endpoint of
// cluster.
func (m *Metrics) HealthCheckFailed(cluster string) { m.hcFailures.WithLabelValues(cluster).Inc() }

// HealthCheckUnhealthy counts one endpoint of cluster marked unhealthy by
// its health checks.
func (m *Metrics) HealthCheckUnhealthy(cluster string) { m.hcUnhealthy.WithLabelValues(cluster).Inc() }
