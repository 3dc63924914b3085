package xdsclient

import (
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"trellis.dev/trellis/internal/proxy/model/modeltest"
)

// An endpoint the proxy cannot use (a registration with a bad address) is
// left out and counted, and the rest of the update is applied and ACKed:
// one bad instance must not freeze every proxy's endpoints.
func TestBadEndpointDroppedNotNACKed(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0")
	mesh := modeltest.Mesh()
	srv.set(t, "1", mesh)
	c := startClient(t, srv.addr)
	c.waitUpdate(t, "the first snapshot", atVersion("1"), nil)

	next := mesh.Clone()
	next.Loads[0].Endpoints[0].LbEndpoints = append(next.Loads[0].Endpoints[0].LbEndpoints,
		modeltest.Endpoint("not-an-ip", 9080, "v1", "reviews-bad", corev3.HealthStatus_HEALTHY),
		modeltest.Endpoint("10.0.0.5", 9080, "v1", "reviews-5", corev3.HealthStatus_HEALTHY))
	srv.set(t, "2", next)
	snap := c.waitUpdate(t, "the update without the bad endpoint", atVersion("2"), nil)
	var addrs []string
	for _, e := range snap.Clusters["reviews|v1"].Endpoints {
		addrs = append(addrs, e.Address)
	}
	if strings.Join(addrs, ",") != "10.0.0.1:9080,10.0.0.5:9080" {
		t.Errorf("reviews|v1 endpoints = %v, want the two good ones", addrs)
	}
	st := c.Status()
	if st.LastNACK != nil {
		t.Errorf("NACKed: %+v", st.LastNACK)
	}
	if st.Versions[resource.EndpointType] != "2" {
		t.Errorf("EDS version = %q, want 2 (ACKed)", st.Versions[resource.EndpointType])
	}
	if st.DroppedEndpoints != 1 || !strings.Contains(st.LastDropped, `"not-an-ip" is not an IP address`) {
		t.Errorf("dropped = %d (%q), want 1 naming the address", st.DroppedEndpoints, st.LastDropped)
	}
	if n := c.logs.count("WARN left out endpoints that do not convert; the rest of the update is applied"); n != 1 {
		t.Errorf("%d warnings, want 1", n)
	}
}
