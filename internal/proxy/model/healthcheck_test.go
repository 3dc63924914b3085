package model_test

import (
	"reflect"
	"slices"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/proxy/model"
)

func TestConvertHealthChecks(t *testing.T) {
	// hc is a valid check of each kind: timing and thresholds set.
	hc := func(checker any, edit ...func(*corev3.HealthCheck)) []*corev3.HealthCheck {
		h := &corev3.HealthCheck{
			Timeout: durationpb.New(time.Second), Interval: durationpb.New(5 * time.Second),
			UnhealthyThreshold: wrapperspb.UInt32(3), HealthyThreshold: wrapperspb.UInt32(2),
		}
		switch c := checker.(type) {
		case *corev3.HealthCheck_HttpHealthCheck:
			h.HealthChecker = &corev3.HealthCheck_HttpHealthCheck_{HttpHealthCheck: c}
		case *corev3.HealthCheck_GrpcHealthCheck:
			h.HealthChecker = &corev3.HealthCheck_GrpcHealthCheck_{GrpcHealthCheck: c}
		case *corev3.HealthCheck_TcpHealthCheck:
			h.HealthChecker = &corev3.HealthCheck_TcpHealthCheck_{TcpHealthCheck: c}
		case *corev3.HealthCheck_CustomHealthCheck:
			h.HealthChecker = &corev3.HealthCheck_CustomHealthCheck_{CustomHealthCheck: c}
		}
		for _, e := range edit {
			e(h)
		}
		return []*corev3.HealthCheck{h}
	}
	httpCheck := &corev3.HealthCheck_HttpHealthCheck{Path: "/healthz"}
	tcp := &corev3.HealthCheck_TcpHealthCheck{}
	base := model.HealthCheckPolicy{Interval: 5 * time.Second, Timeout: time.Second, UnhealthyThreshold: 3, HealthyThreshold: 2}
	with := func(edit func(*model.HealthCheckPolicy)) *model.HealthCheckPolicy {
		p := base
		edit(&p)
		return &p
	}
	tests := []struct {
		name string
		hcs  []*corev3.HealthCheck
		want *model.HealthCheckPolicy
		err  string
	}{
		{"none", nil, nil, ""},
		{"http: Envoy's default status 200 alone", hc(httpCheck), with(func(p *model.HealthCheckPolicy) {
			p.Kind, p.Path, p.ExpectedStatuses = model.HealthCheckHTTP, "/healthz", []model.StatusRange{{Start: 200, End: 201}}
		}), ""},
		{"http every field", hc(&corev3.HealthCheck_HttpHealthCheck{Host: "reviews", Path: "/h?x=1",
			ExpectedStatuses: []*typev3.Int64Range{{Start: 200, End: 300}, {Start: 429, End: 430}}},
			func(h *corev3.HealthCheck) {
				h.IntervalJitter, h.IntervalJitterPercent = durationpb.New(time.Second), 10
			}), with(func(p *model.HealthCheckPolicy) {
			p.Kind, p.Host, p.Path = model.HealthCheckHTTP, "reviews", "/h?x=1"
			p.ExpectedStatuses = []model.StatusRange{{Start: 200, End: 300}, {Start: 429, End: 430}}
			p.IntervalJitter, p.IntervalJitterPercent = time.Second, 10
		}), ""},
		{"grpc", hc(&corev3.HealthCheck_GrpcHealthCheck{ServiceName: "trellis.sample.Echo", Authority: "reviews"}),
			with(func(p *model.HealthCheckPolicy) {
				p.Kind, p.GRPCService, p.Host = model.HealthCheckGRPC, "trellis.sample.Echo", "reviews"
			}), ""},
		{"tcp", hc(tcp), with(func(p *model.HealthCheckPolicy) { p.Kind = model.HealthCheckTCP }), ""},
		{"zero thresholds act as 1", hc(tcp, func(h *corev3.HealthCheck) {
			h.UnhealthyThreshold, h.HealthyThreshold = wrapperspb.UInt32(0), wrapperspb.UInt32(0)
		}), with(func(p *model.HealthCheckPolicy) {
			p.Kind, p.UnhealthyThreshold, p.HealthyThreshold = model.HealthCheckTCP, 1, 1
		}), ""},

		{"two checks", append(hc(tcp), hc(httpCheck)...), nil,
			`cluster "reviews": health_checks: 2 health checks, only one is supported`},
		{"no checker", hc(nil), nil,
			`health_checks[0]: set one of http_health_check, grpc_health_check, tcp_health_check`},
		{"custom checker", hc(&corev3.HealthCheck_CustomHealthCheck{Name: "redis"}), nil,
			`health_checks[0].custom_health_check: unsupported field`},
		{"no timeout", hc(tcp, func(h *corev3.HealthCheck) { h.Timeout = nil }), nil,
			`health_checks[0].timeout: required`},
		{"zero timeout", hc(tcp, func(h *corev3.HealthCheck) { h.Timeout = durationpb.New(0) }), nil,
			`health_checks[0].timeout: must be more than 0`},
		{"no interval", hc(tcp, func(h *corev3.HealthCheck) { h.Interval = nil }), nil,
			`health_checks[0].interval: required`},
		{"tiny interval", hc(tcp, func(h *corev3.HealthCheck) { h.Interval = durationpb.New(time.Millisecond) }), nil,
			`health_checks[0].interval: 1ms is less than 10ms`},
		{"negative jitter", hc(tcp, func(h *corev3.HealthCheck) { h.IntervalJitter = durationpb.New(-time.Second) }), nil,
			`health_checks[0].interval_jitter: invalid duration`},
		{"jitter percent", hc(tcp, func(h *corev3.HealthCheck) { h.IntervalJitterPercent = 101 }), nil,
			`health_checks[0].interval_jitter_percent: 101 is out of range 0..100`},
		{"no unhealthy threshold", hc(tcp, func(h *corev3.HealthCheck) { h.UnhealthyThreshold = nil }), nil,
			`health_checks[0].unhealthy_threshold: required`},
		{"no healthy threshold", hc(tcp, func(h *corev3.HealthCheck) { h.HealthyThreshold = nil }), nil,
			`health_checks[0].healthy_threshold: required`},
		{"no traffic interval", hc(tcp, func(h *corev3.HealthCheck) { h.NoTrafficInterval = durationpb.New(time.Minute) }), nil,
			`health_checks[0].no_traffic_interval: unsupported field`},
		{"alt port", hc(tcp, func(h *corev3.HealthCheck) { h.AltPort = wrapperspb.UInt32(8080) }), nil,
			`health_checks[0].alt_port: unsupported field`},
		{"tls options", hc(tcp, func(h *corev3.HealthCheck) { h.TlsOptions = &corev3.HealthCheck_TlsOptions{} }), nil,
			`health_checks[0].tls_options: unsupported field`},
		{"initial jitter", hc(tcp, func(h *corev3.HealthCheck) { h.InitialJitter = durationpb.New(time.Second) }), nil,
			`health_checks[0].initial_jitter: unsupported field`},
		{"http no path", hc(&corev3.HealthCheck_HttpHealthCheck{}), nil,
			`health_checks[0].http_health_check.path: "" must start with /`},
		{"http path with space", hc(&corev3.HealthCheck_HttpHealthCheck{Path: "/a b"}), nil,
			`health_checks[0].http_health_check.path: "/a b" must not contain spaces`},
		{"http host with space", hc(&corev3.HealthCheck_HttpHealthCheck{Path: "/", Host: "a b"}), nil,
			`health_checks[0].http_health_check.host: "a b" must not contain spaces`},
		{"http2", hc(&corev3.HealthCheck_HttpHealthCheck{Path: "/", CodecClientType: typev3.CodecClientType_HTTP2}), nil,
			`health_checks[0].http_health_check.codec_client_type: unsupported field`},
		{"http request headers", hc(&corev3.HealthCheck_HttpHealthCheck{Path: "/", RequestHeadersToRemove: []string{"a"}}), nil,
			`health_checks[0].http_health_check.request_headers_to_remove: unsupported field`},
		{"http retriable statuses", hc(&corev3.HealthCheck_HttpHealthCheck{Path: "/", RetriableStatuses: []*typev3.Int64Range{{Start: 500, End: 501}}}), nil,
			`health_checks[0].http_health_check.retriable_statuses: unsupported field`},
		{"http empty range", hc(&corev3.HealthCheck_HttpHealthCheck{Path: "/", ExpectedStatuses: []*typev3.Int64Range{{Start: 200, End: 300}, {Start: 300, End: 300}}}), nil,
			`health_checks[0].http_health_check.expected_statuses[1]: [300, 300) is not a range of statuses within [100, 600)`},
		{"http range past 600", hc(&corev3.HealthCheck_HttpHealthCheck{Path: "/", ExpectedStatuses: []*typev3.Int64Range{{Start: 500, End: 601}}}), nil,
			`expected_statuses[0]: [500, 601) is not a range`},
		{"grpc initial metadata", hc(&corev3.HealthCheck_GrpcHealthCheck{InitialMetadata: []*corev3.HeaderValueOption{{}}}), nil,
			`health_checks[0].grpc_health_check.initial_metadata: unsupported field`},
		{"tcp send", hc(&corev3.HealthCheck_TcpHealthCheck{Send: &corev3.HealthCheck_Payload{}}), nil,
			`health_checks[0].tcp_health_check.send: unsupported field`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := convertCluster(t, func(c *clusterv3.Cluster) { c.HealthChecks = tt.hcs }, tt.err)
			if got == nil {
				return
			}
			if !reflect.DeepEqual(got.HealthCheck, tt.want) {
				t.Fatalf("HealthCheck = %+v, want %+v", got.HealthCheck, tt.want)
			}
		})
	}
}

func TestHealthCheckExpects(t *testing.T) {
	p := &model.HealthCheckPolicy{ExpectedStatuses: []model.StatusRange{{Start: 200, End: 300}, {Start: 429, End: 430}}}
	for status, want := range map[int]bool{199: false, 200: true, 299: true, 300: false, 429: true, 430: false, 503: false} {
		if got := p.Expects(status); got != want {
			t.Errorf("Expects(%d) = %v, want %v", status, got, want)
		}
	}
}

func TestWithUnhealthy(t *testing.T) {
	c := &model.Cluster{Name: "reviews", MaxRequests: 3, HealthCheck: &model.HealthCheckPolicy{Kind: model.HealthCheckTCP},
		Endpoints: []model.Endpoint{{Address: "a", Healthy: true}, {Address: "b", Healthy: true}, {Address: "c"}}}
	down := func(addrs ...string) func(string) bool {
		return func(a string) bool { return slices.Contains(addrs, a) }
	}
	if got := model.WithUnhealthy(c, down()); got != c {
		t.Errorf("nothing down: want the cluster itself")
	}
	if got := model.WithUnhealthy(c, down("c", "x")); got != c {
		t.Errorf("only endpoints not healthy anyway, or unknown, down: want the cluster itself")
	}
	if got := model.WithUnhealthy(c, down("a", "b")); got != c {
		t.Errorf("every healthy endpoint down: want the cluster itself (panic)")
	}
	got := model.WithUnhealthy(c, down("a"))
	if got == c || got.Endpoints[0].Healthy || !got.Endpoints[1].Healthy || got.Endpoints[2].Healthy ||
		got.MaxRequests != 3 || got.HealthCheck != c.HealthCheck || got.Name != "reviews" {
		t.Errorf("a down: %+v", got)
	}
	if !c.Endpoints[0].Healthy {
		t.Errorf("the cluster itself was changed")
	}
	if model.WithUnhealthy(nil, down("a")) != nil {
		t.Errorf("nil: want nil")
	}
}
