package translate

import (
	"cmp"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/meshxds"
)

// connectTimeout bounds a TCP connect to one endpoint.
const connectTimeout = time.Second

// MetadataNamespace is the endpoint filter_metadata key under which each
// endpoint carries its "version" and "instance".
const MetadataNamespace = "trellis"

// clustersAndEndpoints builds, per service, the cluster of all its instances
// and one cluster per version, each with its ClusterLoadAssignment. A
// version without instances still gets a cluster with no endpoints, so a
// Route to it is valid and fails with "no healthy upstream", not "no route".
func clustersAndEndpoints(m *model) ([]*clusterv3.Cluster, []*endpointv3.ClusterLoadAssignment) {
	var clusters []*clusterv3.Cluster
	var loads []*endpointv3.ClusterLoadAssignment
	add := func(name string, insts []api.Instance, lb *api.LoadBalancer, od *api.OutlierDetection, cp *api.ConnectionPool, hc *api.HealthCheck, service string) {
		c := edsCluster(name)
		setLB(c, lb)
		setOutlier(c, od)
		setCircuitBreakers(c, cp)
		setHealthCheck(c, hc, service)
		clusters = append(clusters, c)
		loads = append(loads, loadAssignment(name, insts))
	}
	for _, s := range m.services {
		add(meshxds.ClusterName(s.name, ""), s.instances, s.lbFor(""), s.outlierFor(""), s.poolFor(""), healthCheckOf(s.policyFor("")), s.name)
		for _, v := range s.versions {
			var insts []api.Instance
			for _, inst := range s.instances {
				if inst.Version == v {
					insts = append(insts, inst)
				}
			}
			add(meshxds.ClusterName(s.name, v), insts, s.lbFor(v), s.outlierFor(v), s.poolFor(v), healthCheckOf(s.policyFor(v)), s.name)
		}
	}
	return clusters, loads
}

// adsSource points a resource at the ADS stream the proxy already has open.
func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		// No service_name: the EDS resource is named after the cluster.
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
		ConnectTimeout:   durationpb.New(connectTimeout),
		// ROUND_ROBIN is the enum's zero value, so it does not show in
		// JSON (or on the wire); it is spelled out here for the reader.
		LbPolicy: clusterv3.Cluster_ROUND_ROBIN,
	}
}

// loadAssignment groups insts (sorted by ID) by zone; zones are sorted, and
// within a zone endpoints keep ID order.
func loadAssignment(cluster string, insts []api.Instance) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: cluster}
	byZone := map[string]*endpointv3.LocalityLbEndpoints{}
	for _, inst := range insts {
		loc, ok := byZone[inst.Zone]
		if !ok {
			loc = &endpointv3.LocalityLbEndpoints{Locality: &corev3.Locality{Zone: inst.Zone}}
			byZone[inst.Zone] = loc
			cla.Endpoints = append(cla.Endpoints, loc)
		}
		loc.LbEndpoints = append(loc.LbEndpoints, lbEndpoint(inst))
	}
	slices.SortFunc(cla.Endpoints, func(a, b *endpointv3.LocalityLbEndpoints) int {
		return cmp.Compare(a.Locality.Zone, b.Locality.Zone)
	})
	return cla
}

func lbEndpoint(inst api.Instance) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: socketAddress(inst.Address, uint32(inst.Port)),
		}},
		// Instances are registered by live sidecars; health checking and
		// outlier detection refine this on the proxy side.
		HealthStatus: corev3.HealthStatus_HEALTHY,
		Metadata: &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			MetadataNamespace: {Fields: map[string]*structpb.Value{
				"version":  structpb.NewStringValue(inst.Version),
				"instance": structpb.NewStringValue(inst.ID),
			}},
		}},
	}
}

func socketAddress(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       addr,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// setLB sets the cluster's lb_policy and its config from a TrafficPolicy's
// load balancer (nil: round robin). Consistent hashing is a ring hash; its
// key is the hash_policy of the routes (routes.go), as in Envoy.
func setLB(c *clusterv3.Cluster, lb *api.LoadBalancer) {
	switch {
	case lb == nil || lb.RoundRobin != nil:
		c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
	case lb.Random != nil:
		c.LbPolicy = clusterv3.Cluster_RANDOM
	case lb.LeastRequest != nil:
		n := api.DefaultChoiceCount
		if lb.LeastRequest.ChoiceCount != nil {
			n = *lb.LeastRequest.ChoiceCount
		}
		c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
		c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{
			ChoiceCount: wrapperspb.UInt32(uint32(n)),
		}}
	case lb.ConsistentHash != nil:
		n := api.DefaultRingSize
		if lb.ConsistentHash.MinimumRingSize != nil {
			n = *lb.ConsistentHash.MinimumRingSize
		}
		c.LbPolicy = clusterv3.Cluster_RING_HASH
		c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{
			MinimumRingSize: wrapperspb.UInt64(uint64(n)),
			MaximumRingSize: wrapperspb.UInt64(api.MaxRingSize),
			HashFunction:    clusterv3.Cluster_RingHashLbConfig_XX_HASH,
		}}
	}
}

// setOutlier sets the cluster's outlier_detection from a TrafficPolicy's
// (nil: none), every field spelled out with its default filled in. Envoy
// enforces consecutive gateway failures only when told
// (enforcing_consecutive_gateway_failure defaults to 0), so it is set to
// 100; enforcing_consecutive_5xx defaults to 100.
func setOutlier(c *clusterv3.Cluster, od *api.OutlierDetection) {
	if od == nil {
		return
	}
	c5, cg, interval, base, percent := od.Values()
	c.OutlierDetection = &clusterv3.OutlierDetection{
		Consecutive_5Xx:                    wrapperspb.UInt32(uint32(c5)),
		ConsecutiveGatewayFailure:          wrapperspb.UInt32(uint32(cg)),
		EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(100),
		Interval:                           durationpb.New(interval),
		BaseEjectionTime:                   durationpb.New(base),
		MaxEjectionPercent:                 wrapperspb.UInt32(uint32(percent)),
	}
}

// setCircuitBreakers sets the cluster's circuit_breakers from a
// TrafficPolicy's connectionPool (nil: none, Envoy's defaults): one
// DEFAULT priority threshold with max_requests and retry_budget
// (budget_percent and min_retry_concurrency spelled out, defaults filled
// in), each when the pool sets it. Envoy's other limits keep their
// defaults.
func setCircuitBreakers(c *clusterv3.Cluster, cp *api.ConnectionPool) {
	if cp == nil || cp.MaxRequests == nil && cp.RetryBudget == nil {
		return
	}
	t := &clusterv3.CircuitBreakers_Thresholds{Priority: corev3.RoutingPriority_DEFAULT}
	if cp.MaxRequests != nil {
		t.MaxRequests = wrapperspb.UInt32(uint32(*cp.MaxRequests))
	}
	if rb := cp.RetryBudget; rb != nil {
		percent, minConcurrency := rb.Values()
		t.RetryBudget = &clusterv3.CircuitBreakers_Thresholds_RetryBudget{
			BudgetPercent:       &typev3.Percent{Value: float64(percent)},
			MinRetryConcurrency: wrapperspb.UInt32(uint32(minConcurrency)),
		}
	}
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{t}}
}

// healthCheckOf is the health check of a cluster's policy (nil: none).
func healthCheckOf(p *api.TrafficPolicy) *api.HealthCheck {
	if p == nil {
		return nil
	}
	return p.Spec.HealthCheck
}

// healthJitterPercent is the interval_jitter_percent of every health
// check: each interval is longer by up to a tenth, at random, so the probes
// of many proxies and instances spread out.
const healthJitterPercent = 10

// setHealthCheck sets the cluster's health_checks from a TrafficPolicy's
// healthCheck (nil: none): one core.v3 HealthCheck with its defaults filled
// in. HTTP and gRPC checks carry the service's name as Host / authority
// (Envoy's default is the cluster's name, "reviews|v1", which is no host),
// and an HTTP check lists its expected statuses always, 200..299 by default
// (Envoy's default is 200 alone).
func setHealthCheck(c *clusterv3.Cluster, hc *api.HealthCheck, service string) {
	if hc == nil {
		return
	}
	interval, timeout, unhealthy, healthy := hc.Values()
	h := &corev3.HealthCheck{
		Timeout:               durationpb.New(timeout),
		Interval:              durationpb.New(interval),
		IntervalJitterPercent: healthJitterPercent,
		UnhealthyThreshold:    wrapperspb.UInt32(uint32(unhealthy)),
		HealthyThreshold:      wrapperspb.UInt32(uint32(healthy)),
	}
	switch {
	case hc.HTTP != nil:
		h.HealthChecker = &corev3.HealthCheck_HttpHealthCheck_{HttpHealthCheck: &corev3.HealthCheck_HttpHealthCheck{
			Host:             service,
			Path:             hc.HTTP.Path,
			ExpectedStatuses: statusRanges(hc.HTTP.Statuses()),
		}}
	case hc.GRPC != nil:
		h.HealthChecker = &corev3.HealthCheck_GrpcHealthCheck_{GrpcHealthCheck: &corev3.HealthCheck_GrpcHealthCheck{
			ServiceName: hc.GRPC.Service,
			Authority:   service,
		}}
	default:
		h.HealthChecker = &corev3.HealthCheck_TcpHealthCheck_{TcpHealthCheck: &corev3.HealthCheck_TcpHealthCheck{}}
	}
	c.HealthChecks = []*corev3.HealthCheck{h}
}

// statusRanges turns sorted statuses into Envoy's half-open ranges, runs of
// consecutive statuses joined; none is 200..299.
func statusRanges(statuses []int) []*typev3.Int64Range {
	if len(statuses) == 0 {
		return []*typev3.Int64Range{{Start: 200, End: 300}}
	}
	var out []*typev3.Int64Range
	for _, s := range statuses {
		if n := len(out); n > 0 && out[n-1].End == int64(s) {
			out[n-1].End++
			continue
		}
		out = append(out, &typev3.Int64Range{Start: int64(s), End: int64(s) + 1})
	}
	return out
}
