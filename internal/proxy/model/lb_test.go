package model_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/proxy/model/modeltest"
)

func TestConvertLBPolicy(t *testing.T) {
	tests := []struct {
		name   string
		policy clusterv3.Cluster_LbPolicy
		config any
		want   model.LBPolicy
	}{
		{"round robin", clusterv3.Cluster_ROUND_ROBIN, nil, model.LBPolicy{Kind: model.LBRoundRobin}},
		{"random", clusterv3.Cluster_RANDOM, nil, model.LBPolicy{Kind: model.LBRandom}},
		{"least request default", clusterv3.Cluster_LEAST_REQUEST, nil, model.LBPolicy{Kind: model.LBLeastRequest, ChoiceCount: 2}},
		{"least request 3", clusterv3.Cluster_LEAST_REQUEST,
			&clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{ChoiceCount: wrapperspb.UInt32(3)}},
			model.LBPolicy{Kind: model.LBLeastRequest, ChoiceCount: 3}},
		{"ring hash default", clusterv3.Cluster_RING_HASH, nil,
			model.LBPolicy{Kind: model.LBRingHash, MinRingSize: model.DefaultMinRingSize, MaxRingSize: model.DefaultMaxRingSize}},
		{"ring hash sized", clusterv3.Cluster_RING_HASH,
			&clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{
				MinimumRingSize: wrapperspb.UInt64(4096), MaximumRingSize: wrapperspb.UInt64(65536),
				HashFunction: clusterv3.Cluster_RingHashLbConfig_MURMUR_HASH_2}},
			model.LBPolicy{Kind: model.LBRingHash, MinRingSize: 4096, MaxRingSize: 65536}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := modeltest.Mesh().Clusters[0]
			c.LbPolicy = tt.policy
			switch cfg := tt.config.(type) {
			case *clusterv3.Cluster_LeastRequestLbConfig_:
				c.LbConfig = cfg
			case *clusterv3.Cluster_RingHashLbConfig_:
				c.LbConfig = cfg
			}
			got, err := model.ConvertCluster(c)
			if err != nil {
				t.Fatal(err)
			}
			if got.LB != tt.want {
				t.Fatalf("LB = %+v, want %+v", got.LB, tt.want)
			}
		})
	}
}

func TestConvertHashPolicy(t *testing.T) {
	r := modeltest.Mesh()
	a := r.Routes[0].VirtualHosts[0].Routes[2].GetRoute()
	a.HashPolicy = []*routev3.RouteAction_HashPolicy{
		{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "X-User"}}},
		{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: "session", Ttl: durationpb.New(time.Hour)}}, Terminal: true},
		{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}},
	}
	rt, err := model.ConvertRouteConfig(r.Routes[0])
	if err != nil {
		t.Fatal(err)
	}
	want := []model.HashPolicy{
		{Kind: model.HashHeader, Name: "x-user", HeaderKey: "X-User"},
		{Kind: model.HashCookie, Name: "session", CookieTTL: time.Hour, CookieTTLText: "1h0m0s", Terminal: true},
		{Kind: model.HashSourceIP},
	}
	if got := rt.VirtualHosts[0].Routes[2].HashPolicies; !reflect.DeepEqual(got, want) {
		t.Fatalf("HashPolicies = %+v, want %+v", got, want)
	}
}

func TestConvertOutlier(t *testing.T) {
	defaults := model.OutlierPolicy{Consecutive5xx: 5, ConsecutiveGateway: 0, Interval: 10 * time.Second,
		BaseEjection: 30 * time.Second, MaxEjection: 300 * time.Second, MaxEjectionPercent: 10}
	tests := []struct {
		name string
		od   *clusterv3.OutlierDetection
		want *model.OutlierPolicy
		err  string
	}{
		{"none", nil, nil, ""},
		{"empty: Envoy's defaults (gateway failures not enforced)", &clusterv3.OutlierDetection{}, &defaults, ""},
		{"every field", &clusterv3.OutlierDetection{
			Consecutive_5Xx: wrapperspb.UInt32(3), ConsecutiveGatewayFailure: wrapperspb.UInt32(2),
			EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(100), Interval: durationpb.New(5 * time.Second),
			BaseEjectionTime: durationpb.New(time.Minute), MaxEjectionPercent: wrapperspb.UInt32(0),
		}, &model.OutlierPolicy{Consecutive5xx: 3, ConsecutiveGateway: 2, Interval: 5 * time.Second,
			BaseEjection: time.Minute, MaxEjection: 300 * time.Second, MaxEjectionPercent: 0}, ""},
		{"5xx not enforced", &clusterv3.OutlierDetection{EnforcingConsecutive_5Xx: wrapperspb.UInt32(0)},
			&model.OutlierPolicy{Interval: 10 * time.Second, BaseEjection: 30 * time.Second, MaxEjection: 300 * time.Second, MaxEjectionPercent: 10}, ""},
		{"base above max ejection time", &clusterv3.OutlierDetection{BaseEjectionTime: durationpb.New(time.Hour)},
			&model.OutlierPolicy{Consecutive5xx: 5, Interval: 10 * time.Second, BaseEjection: time.Hour, MaxEjection: time.Hour, MaxEjectionPercent: 10}, ""},
		{"partial enforcing", &clusterv3.OutlierDetection{EnforcingConsecutive_5Xx: wrapperspb.UInt32(50)}, nil,
			`cluster "reviews": outlier_detection.enforcing_consecutive_5xx: 50 is not supported (only 0 or 100)`},
		{"percent", &clusterv3.OutlierDetection{MaxEjectionPercent: wrapperspb.UInt32(101)}, nil,
			`outlier_detection.max_ejection_percent: 101 is out of range 0..100`},
		{"zero base", &clusterv3.OutlierDetection{BaseEjectionTime: durationpb.New(0)}, nil,
			`outlier_detection.base_ejection_time: must be more than 0`},
		{"success rate", &clusterv3.OutlierDetection{SuccessRateMinimumHosts: wrapperspb.UInt32(3)}, nil,
			`outlier_detection.success_rate_minimum_hosts: unsupported field`},
		{"max ejection time", &clusterv3.OutlierDetection{MaxEjectionTime: durationpb.New(time.Minute)}, nil,
			`outlier_detection.max_ejection_time: unsupported field`},
		{"local origin", &clusterv3.OutlierDetection{SplitExternalLocalOriginErrors: true}, nil,
			`outlier_detection.split_external_local_origin_errors: unsupported field`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := convertCluster(t, func(c *clusterv3.Cluster) { c.OutlierDetection = tt.od }, tt.err)
			if got == nil {
				return
			}
			if !reflect.DeepEqual(got.Outlier, tt.want) {
				t.Fatalf("Outlier = %+v, want %+v", got.Outlier, tt.want)
			}
		})
	}
}

func TestConvertCircuitBreakers(t *testing.T) {
	type th = clusterv3.CircuitBreakers_Thresholds
	cb := func(ts ...*th) *clusterv3.CircuitBreakers { return &clusterv3.CircuitBreakers{Thresholds: ts} }
	tests := []struct {
		name string
		cb   *clusterv3.CircuitBreakers
		want int
		err  string
	}{
		{"none: unlimited", nil, 0, ""},
		{"no thresholds: unlimited", cb(), 0, ""},
		{"threshold without max_requests: unlimited", cb(&th{}), 0, ""},
		{"max_requests", cb(&th{MaxRequests: wrapperspb.UInt32(2)}), 2, ""},
		{"max_requests zero", cb(&th{MaxRequests: wrapperspb.UInt32(0)}), 0,
			`cluster "reviews": circuit_breakers.thresholds[0].max_requests: must be more than 0`},
		{"max_connections", cb(&th{MaxRequests: wrapperspb.UInt32(2), MaxConnections: wrapperspb.UInt32(5)}), 0,
			`cluster "reviews": circuit_breakers.thresholds[0].max_connections: unsupported field`},
		{"max_pending_requests", cb(&th{MaxPendingRequests: wrapperspb.UInt32(5)}), 0,
			`circuit_breakers.thresholds[0].max_pending_requests: unsupported field`},
		{"max_retries", cb(&th{MaxRetries: wrapperspb.UInt32(5)}), 0,
			`circuit_breakers.thresholds[0].max_retries: unsupported field`},
		{"retry_budget interval", cb(&th{RetryBudget: &clusterv3.CircuitBreakers_Thresholds_RetryBudget{BudgetInterval: durationpb.New(time.Second)}}), 0,
			`circuit_breakers.thresholds[0].retry_budget.budget_interval: unsupported field`},
		{"track_remaining", cb(&th{TrackRemaining: true}), 0,
			`circuit_breakers.thresholds[0].track_remaining: unsupported field`},
		{"HIGH priority", cb(&th{Priority: corev3.RoutingPriority_HIGH, MaxRequests: wrapperspb.UInt32(2)}), 0,
			`circuit_breakers.thresholds[0].priority: unsupported priority HIGH (only DEFAULT)`},
		{"two thresholds", cb(&th{}, &th{Priority: corev3.RoutingPriority_HIGH}), 0,
			`circuit_breakers.thresholds: 2 thresholds, only one (priority DEFAULT) is supported`},
		{"per_host_thresholds", &clusterv3.CircuitBreakers{PerHostThresholds: []*th{{MaxConnections: wrapperspb.UInt32(1)}}}, 0,
			`circuit_breakers.per_host_thresholds: unsupported field`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := convertCluster(t, func(c *clusterv3.Cluster) { c.CircuitBreakers = tt.cb }, tt.err)
			if got == nil {
				return
			}
			if got.MaxRequests != tt.want {
				t.Fatalf("MaxRequests = %d, want %d", got.MaxRequests, tt.want)
			}
		})
	}
}

// convertCluster converts the test mesh's first cluster, named reviews,
// after edit. With wantErr set it checks the error contains it and
// returns nil; otherwise the conversion must succeed.
func convertCluster(t *testing.T, edit func(*clusterv3.Cluster), wantErr string) *model.Cluster {
	t.Helper()
	c := modeltest.Mesh().Clusters[0]
	c.Name = "reviews"
	edit(c)
	got, err := model.ConvertCluster(c)
	if wantErr != "" {
		if err == nil || !strings.Contains(err.Error(), wantErr) {
			t.Fatalf("error %v, want %q", err, wantErr)
		}
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return got
}
