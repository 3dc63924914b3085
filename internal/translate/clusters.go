package translate

import (
	"cmp"
	"slices"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
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
	add := func(name string, insts []api.Instance, lb *api.LoadBalancer, od *api.OutlierDetection, cp *api.ConnectionPool) {
		c := edsCluster(name)
		setLB(c, lb)
		setOutlier(c, od)
		setCircuitBreakers(c, cp)
		clusters = append(clusters, c)
		loads = append(loads, loadAssignment(name, insts))
	}
	for _, s := range m.services {
		add(meshxds.ClusterName(s.name, ""), s.instances, s.lbFor(""), s.outlierFor(""), s.poolFor(""))
		for _, v := range s.versions {
			var insts []api.Instance
			for _, inst := range s.instances {
				if inst.Version == v {
					insts = append(insts, inst)
				}
			}
			add(meshxds.ClusterName(s.name, v), insts, s.lbFor(v), s.outlierFor(v), s.poolFor(v))
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
// DEFAULT priority threshold with max_requests. Envoy's other limits keep
// their defaults.
func setCircuitBreakers(c *clusterv3.Cluster, cp *api.ConnectionPool) {
	if cp == nil || cp.MaxRequests == nil {
		return
	}
	c.CircuitBreakers = &clusterv3.CircuitBreakers{
		Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			Priority:    corev3.RoutingPriority_DEFAULT,
			MaxRequests: wrapperspb.UInt32(uint32(*cp.MaxRequests)),
		}},
	}
}
