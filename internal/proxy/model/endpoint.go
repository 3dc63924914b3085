package model

import (
	"net/netip"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// MetadataNamespace is the filter_metadata key under which the control
// plane puts Trellis' endpoint labels.
const MetadataNamespace = "trellis"

// Keys of the MetadataNamespace struct of an endpoint.
const (
	MetadataVersion  = "version"
	MetadataInstance = "instance"
)

// ConvertEndpoints converts a ClusterLoadAssignment into endpoints, in the
// order given.
//
// One bad endpoint (an address that is not an IP, a port out of range, a
// field the proxy does not support) is dropped, with its reason in dropped,
// rather than failing the whole resource: an update of a service's
// endpoints must not be held back, on every proxy, by one instance that
// registered a bad address. What is wrong with the resource itself is
// still an error (and a NACK).
//
// Every endpoint is an IP:port (the proxy resolves no names), at priority 0
// (no priority failover yet), with no endpoint weight other than 1 (no
// weighted round robin yet).
func ConvertEndpoints(cla *endpointv3.ClusterLoadAssignment) (eps []Endpoint, dropped []error, err error) {
	if cla == nil {
		return nil, nil, &ResourceError{Kind: KindEndpoints, Reason: "nil resource"}
	}
	if cla.GetClusterName() == "" {
		return nil, nil, &ResourceError{Kind: KindEndpoints, Field: "cluster_name", Reason: "must not be empty"}
	}
	eps, dropped, err = convertEndpoints("", cla)
	if err != nil {
		return nil, nil, resourceErr(KindEndpoints, cla.GetClusterName(), err)
	}
	for i, d := range dropped {
		dropped[i] = resourceErr(KindEndpoints, cla.GetClusterName(), d)
	}
	return eps, dropped, nil
}

// convertEndpoints is shared with STATIC clusters' inline load_assignment.
// Endpoints that do not convert are left out and their errors returned in
// dropped.
func convertEndpoints(at string, cla *endpointv3.ClusterLoadAssignment) (out []Endpoint, dropped []error, err error) {
	// named_endpoints are not supported.
	if err := onlyFields(at, cla, "cluster_name", "endpoints", "policy"); err != nil {
		return nil, nil, err
	}
	if p := cla.GetPolicy(); p != nil {
		// drop_overloads is not supported; the rest only tunes priority
		// and locality failover, which the proxy does not do.
		if err := onlyFields(join(at, "policy"), p, "overprovisioning_factor", "endpoint_stale_after", "weighted_priority_health"); err != nil {
			return nil, nil, err
		}
	}
	out = []Endpoint{}
	for i, loc := range cla.GetEndpoints() {
		lat := index(join(at, "endpoints"), i)
		// load_balancing_weight of a locality only matters with locality
		// weighted balancing, which clusters cannot turn on here.
		if err := onlyFields(lat, loc, "locality", "lb_endpoints", "load_balancing_weight", "priority", "metadata"); err != nil {
			return nil, nil, err
		}
		if loc.GetPriority() != 0 {
			return nil, nil, errAt(join(lat, "priority"), "priority %d is not supported (no priority failover yet)", loc.GetPriority())
		}
		zone := loc.GetLocality().GetZone()
		for j, lbe := range loc.GetLbEndpoints() {
			ep, err := convertLbEndpoint(index(join(lat, "lb_endpoints"), j), lbe)
			if err != nil {
				dropped = append(dropped, err)
				continue
			}
			ep.Zone = zone
			out = append(out, ep)
		}
	}
	return out, dropped, nil
}

func convertLbEndpoint(at string, lbe *endpointv3.LbEndpoint) (Endpoint, error) {
	// endpoint_name (named endpoints) is not supported.
	if err := onlyFields(at, lbe, "endpoint", "health_status", "metadata", "load_balancing_weight"); err != nil {
		return Endpoint{}, err
	}
	if w := lbe.GetLoadBalancingWeight(); w != nil && w.GetValue() != 1 {
		return Endpoint{}, errAt(join(at, "load_balancing_weight"), "weight %d is not supported (no weighted endpoints yet)", w.GetValue())
	}
	ep := lbe.GetEndpoint()
	if ep == nil {
		return Endpoint{}, errAt(join(at, "endpoint"), "missing")
	}
	eat := join(at, "endpoint")
	// additional_addresses would need happy eyeballs; health_check_config
	// only concerns active health checks, hostname only logs.
	if err := onlyFields(eat, ep, "address", "health_check_config", "hostname"); err != nil {
		return Endpoint{}, err
	}
	addr, err := convertAddress(join(eat, "address"), ep.GetAddress())
	if err != nil {
		return Endpoint{}, err
	}
	out := Endpoint{Address: addr, Healthy: healthy(lbe.GetHealthStatus())}
	labels := lbe.GetMetadata().GetFilterMetadata()[MetadataNamespace]
	mat := join(at, "metadata.filter_metadata."+MetadataNamespace)
	if out.Version, err = stringField(mat, labels, MetadataVersion); err != nil {
		return Endpoint{}, err
	}
	if out.Instance, err = stringField(mat, labels, MetadataInstance); err != nil {
		return Endpoint{}, err
	}
	return out, nil
}

// healthy follows Envoy: an endpoint of UNKNOWN status is used.
func healthy(s corev3.HealthStatus) bool {
	return s == corev3.HealthStatus_UNKNOWN || s == corev3.HealthStatus_HEALTHY
}

// convertAddress returns "ip:port" ("[ip6]:port") of a TCP socket address.
func convertAddress(at string, a *corev3.Address) (string, error) {
	sa := a.GetSocketAddress()
	if sa == nil {
		return "", errAt(at, "want socket_address (pipe and internal addresses are not supported)")
	}
	sat := join(at, "socket_address")
	// resolver_name and named_port would need name resolution.
	if err := onlyFields(sat, sa, "address", "port_value", "protocol", "ipv4_compat"); err != nil {
		return "", err
	}
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		return "", errAt(join(sat, "protocol"), "%s is not supported, only TCP", sa.GetProtocol())
	}
	ip, err := netip.ParseAddr(sa.GetAddress())
	if err != nil {
		return "", errAt(join(sat, "address"), "%q is not an IP address", sa.GetAddress())
	}
	port := sa.GetPortValue()
	if port < 1 || port > 65535 {
		return "", errAt(join(sat, "port_value"), "port %d out of range 1..65535", port)
	}
	return netip.AddrPortFrom(ip, uint16(port)).String(), nil
}

func stringField(at string, s *structpb.Struct, key string) (string, error) {
	v, ok := s.GetFields()[key]
	if !ok {
		return "", nil
	}
	str, ok := v.GetKind().(*structpb.Value_StringValue)
	if !ok {
		return "", errAt(join(at, key), "must be a string")
	}
	return str.StringValue, nil
}
