package stats

import (
	"maps"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
)

// gather returns the registry's families by name.
func gather(t *testing.T, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func TestMetrics(t *testing.T) {
	m := New(func() bool { return true })
	m.ObserveRequest(Outbound, "reviews", "v1", 200, time.Millisecond)
	m.ObserveRequest(Outbound, "reviews", "v1", 200, time.Millisecond)
	m.ObserveRequest(Inbound, "reviews", "v2", 503, time.Millisecond)
	m.ConfigUpdated()

	fams := gather(t, m)
	var got float64
	for _, s := range fams["trellis_proxy_requests_total"].GetMetric() {
		l := labels(s)
		if l["direction"] == Outbound && l["service"] == "reviews" && l["version"] == "v1" && l["code"] == "200" {
			got = s.GetCounter().GetValue()
		}
	}
	if got != 2 {
		t.Errorf("requests_total{outbound,reviews,v1,200} = %v, want 2", got)
	}
	if n := fams["trellis_proxy_request_duration_seconds"].GetMetric(); len(n) != 2 {
		t.Errorf("duration series = %d, want 2", len(n))
	}
	if v := fams["trellis_proxy_config_updates_total"].GetMetric()[0].GetCounter().GetValue(); v != 1 {
		t.Errorf("config_updates_total = %v", v)
	}
	if v := fams["trellis_proxy_xds_connected"].GetMetric()[0].GetGauge().GetValue(); v != 1 {
		t.Errorf("xds_connected = %v", v)
	}
}

func TestConnectionMetrics(t *testing.T) {
	m := New(nil)
	m.ConnectionsRejected(Gateway, ReasonOverloaded).Add(3)
	m.ConnectionsRejected(Gateway, ReasonFDExhausted)
	m.ConnectionsRejected(Inbound, ReasonOverloaded).Inc()
	open := map[string]int64{Inbound: 2, Outbound: 5}
	for _, l := range []string{Inbound, Outbound} {
		m.TrackOpenConnections(l, func() int64 { return open[l] })
	}
	open[Outbound] = 7 // read at scrape time

	fams := gather(t, m)
	got := map[[2]string]float64{}
	for _, s := range fams["trellis_proxy_connections_rejected_total"].GetMetric() {
		l := labels(s)
		got[[2]string{l["listener"], l["reason"]}] = s.GetCounter().GetValue()
	}
	want := map[[2]string]float64{{Gateway, ReasonOverloaded}: 3, {Gateway, ReasonFDExhausted}: 0, {Inbound, ReasonOverloaded}: 1}
	if !maps.Equal(got, want) {
		t.Errorf("connections_rejected_total = %v, want %v", got, want)
	}
	gotOpen := map[string]float64{}
	for _, s := range fams["trellis_proxy_connections_open"].GetMetric() {
		gotOpen[labels(s)["listener"]] = s.GetGauge().GetValue()
	}
	if wantOpen := map[string]float64{Inbound: 2, Outbound: 7}; !maps.Equal(gotOpen, wantOpen) {
		t.Errorf("connections_open = %v, want %v", gotOpen, wantOpen)
	}
}

// Metric names and help follow Prometheus conventions.
func TestMetricNamesLint(t *testing.T) {
	m := New(nil)
	m.ObserveRequest(Gateway, "a", "b", 200, time.Millisecond)
	m.ConnectionsRejected(Gateway, ReasonOverloaded).Inc()
	m.TrackOpenConnections(Gateway, func() int64 { return 3 })
	m.OutlierEjected("reviews|v1")
	m.CircuitBreakerOverflow("reviews|v1")
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

// BenchmarkObserveRequest is the per-request cost of the metrics, paid
// once per request on every listener.
func BenchmarkObserveRequest(b *testing.B) {
	m := New(nil)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.ObserveRequest(Outbound, "reviews", "v1", 200, time.Millisecond)
		}
	})
}
