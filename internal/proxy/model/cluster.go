package model

import (
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
)

// ConvertCluster converts a Cluster. An EDS cluster comes back without
// endpoints (they arrive as a ClusterLoadAssignment, see EDSServiceName
// and Build); a STATIC cluster gets the endpoints of its load_assignment.
//
// Only ROUND_ROBIN balancing is supported; circuit breakers, outlier
// detection, health checks, TLS and upstream protocol options are rejected
// until the proxy implements them.
func ConvertCluster(c *clusterv3.Cluster) (*Cluster, error) {
	if c == nil {
		return nil, &ResourceError{Kind: KindCluster, Reason: "nil resource"}
	}
	out, err := convertCluster(c)
	if err != nil {
		return nil, resourceErr(KindCluster, c.GetName(), err)
	}
	return out, nil
}

func convertCluster(c *clusterv3.Cluster) (*Cluster, error) {
	if err := onlyFields("", c, "name", "alt_stat_name", "type", "eds_cluster_config", "connect_timeout",
		"per_connection_buffer_limit_bytes", "lb_policy", "load_assignment", "metadata",
		"wait_for_warm_on_init", "cleanup_interval", "dns_lookup_family", "track_cluster_stats"); err != nil {
		return nil, err
	}
	if c.GetName() == "" {
		return nil, errAt("name", "must not be empty")
	}
	if c.GetLbPolicy() != clusterv3.Cluster_ROUND_ROBIN {
		return nil, errAt("lb_policy", "unsupported lb_policy %s (only ROUND_ROBIN)", c.GetLbPolicy())
	}
	out := &Cluster{Name: c.GetName(), Endpoints: []Endpoint{}}
	// An unset discovery type is STATIC, as in Envoy; GetType says so.
	switch t := c.GetType(); t {
	case clusterv3.Cluster_EDS:
		if c.GetLoadAssignment() != nil {
			return nil, errAt("load_assignment", "an EDS cluster gets its endpoints from EDS")
		}
		eds := c.GetEdsClusterConfig()
		if eds == nil {
			return nil, errAt("eds_cluster_config", "required for an EDS cluster")
		}
		if err := onlyFields("eds_cluster_config", eds, "eds_config", "service_name"); err != nil {
			return nil, err
		}
		if eds.GetEdsConfig() == nil {
			return nil, errAt("eds_cluster_config.eds_config", "required (ads)")
		}
		if err := checkADS("eds_cluster_config.eds_config", eds.GetEdsConfig()); err != nil {
			return nil, err
		}
	case clusterv3.Cluster_STATIC:
		if c.GetEdsClusterConfig() != nil {
			return nil, errAt("eds_cluster_config", "only for EDS clusters")
		}
		if la := c.GetLoadAssignment(); la != nil {
			// A STATIC cluster's endpoints are its definition, not a
			// registry's: one that does not convert rejects the cluster.
			eps, dropped, err := convertEndpoints("load_assignment", la)
			if err != nil {
				return nil, err
			}
			if len(dropped) > 0 {
				return nil, dropped[0]
			}
			out.Endpoints = eps
		}
	default:
		return nil, errAt("type", "unsupported discovery type %s (only EDS and STATIC)", t)
	}
	return out, nil
}

// EDSServiceName is the ClusterLoadAssignment name an EDS cluster takes its
// endpoints from: eds_cluster_config.service_name, or else the cluster's
// name. It is "" for any other cluster.
func EDSServiceName(c *clusterv3.Cluster) string {
	if c.GetType() != clusterv3.Cluster_EDS || c.GetClusterType() != nil {
		return ""
	}
	if n := c.GetEdsClusterConfig().GetServiceName(); n != "" {
		return n
	}
	return c.GetName()
}
