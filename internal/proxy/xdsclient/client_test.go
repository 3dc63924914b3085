package xdsclient

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/proxy/model/modeltest"
)

// TestLifecycle walks a proxy through its life with a control plane:
// first config, a change, a bad config (NACK, previous kept), the fix, the
// control plane going away (config kept) and coming back, and shutdown.
func TestLifecycle(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0")
	mesh := modeltest.Mesh()
	srv.set(t, "1", mesh)
	c := startClient(t, srv.addr)

	// First complete snapshot.
	snap := c.waitUpdate(t, "the first snapshot", atVersion("1"), nil)
	if got := snap.Listeners["outbound"]; got == nil || got.RouteTable != "mesh" {
		t.Errorf("outbound listener = %+v, want one routing with mesh", got)
	}
	if eps := snap.Clusters["reviews|v1"].Endpoints; len(eps) != 1 || eps[0].Address != "10.0.0.1:9080" || eps[0].Zone != "zone-a" {
		t.Errorf("reviews|v1 endpoints = %+v", eps)
	}
	if vhs := snap.RouteTables["mesh"].VirtualHosts; len(vhs) != 2 || vhs[0].Name != "reviews" {
		t.Errorf("mesh virtual hosts = %+v", vhs)
	}
	st := c.Status()
	if !st.Connected || st.LastUpdate.IsZero() || st.LastNACK != nil || st.Versions[resource.RouteType] != "1" {
		t.Errorf("status after the first snapshot = %+v", st)
	}
	// The node goes on the first request of the stream only.
	srv.mu.Lock()
	first, rest := srv.wire[0], srv.wire[1:]
	srv.mu.Unlock()
	if first.GetNode().GetId() != nodeID || first.GetTypeUrl() != resource.ClusterType {
		t.Errorf("first request = %v, want CDS with the node", first)
	}
	for _, r := range rest {
		if r.GetNode() != nil {
			t.Errorf("node sent again on %s request", r.GetTypeUrl())
		}
	}

	// A change: 50/50 split and a second reviews|v1 instance.
	mesh2 := mesh.Clone()
	for _, c := range mesh2.Routes[0].VirtualHosts[0].Routes[2].GetRoute().GetWeightedClusters().GetClusters() {
		c.Weight = wrapperspb.UInt32(50)
	}
	mesh2.Loads[0].Endpoints[0].LbEndpoints = append(mesh2.Loads[0].Endpoints[0].LbEndpoints,
		modeltest.Endpoint("10.0.0.5", 9080, "v1", "reviews-5", corev3.HealthStatus_HEALTHY))
	srv.set(t, "2", mesh2)
	snap = c.waitUpdate(t, "the changed snapshot", atVersion("2"), nil)
	if w := snap.RouteTables["mesh"].VirtualHosts[0].Routes[2].Clusters; w[0].Weight != 50 || w[1].Weight != 50 {
		t.Errorf("weights = %+v, want 50/50", w)
	}
	if n := len(snap.Clusters["reviews|v1"].Endpoints); n != 2 {
		t.Errorf("reviews|v1 has %d endpoints, want 2", n)
	}

	// A bad regex in RDS only: NACKed with the previous version, the
	// nonce and the reason; no snapshot; the previous one stays.
	bad := mesh2.Clone()
	bad.Routes[0].VirtualHosts[0].Routes[0].Match.Headers[0] = modeltest.HeaderRegex("gray", "(")
	srv.setVersions(t, bad, map[string]string{
		resource.ClusterType: "2", resource.ListenerType: "2", resource.EndpointType: "2", resource.RouteType: "3",
	})
	const wantErr = `route config "mesh": virtual_hosts[0].routes[0].match.headers[0].string_match.safe_regex: invalid regex "(": missing closing )`
	nack := srv.waitRequest(t, "a NACK of RDS version 3", func(r request) bool {
		return r.req.GetTypeUrl() == resource.RouteType && r.req.GetErrorDetail() != nil
	}).req
	if nack.GetVersionInfo() != "2" || nack.GetResponseNonce() == "" ||
		nack.GetErrorDetail().GetCode() != int32(codes.InvalidArgument) || nack.GetErrorDetail().GetMessage() != wantErr {
		t.Errorf("NACK = %v, want version 2, a nonce, INVALID_ARGUMENT %q", nack, wantErr)
	}
	st = c.Status()
	if st.LastNACK == nil || st.LastNACK.TypeURL != resource.RouteType || st.LastNACK.Version != "3" ||
		st.LastNACK.Error != wantErr || st.LastNACK.Nonce == "" || st.LastNACK.At.IsZero() {
		t.Errorf("LastNACK = %+v", st.LastNACK)
	}
	if st.Versions[resource.RouteType] != "2" {
		t.Errorf("accepted RDS version = %q, want 2 (kept)", st.Versions[resource.RouteType])
	}

	// The server answers each NACK by resending the bad config; the client
	// re-NACKs the same version after a growing delay instead of looping.
	start := time.Now()
	isNACK := func(r request) bool { return r.req.GetTypeUrl() == resource.RouteType && r.req.GetErrorDetail() != nil }
	eventually(t, "4 NACKs", func() bool { return srv.countRequests(isNACK) >= 4 })
	if elapsed := time.Since(start); elapsed < 150*time.Millisecond {
		t.Errorf("4 NACKs of the same version within %v: re-NACKs are not delayed", elapsed)
	}
	c.noUpdate(t, "after a NACK")
	if n := c.logs.count("WARN rejecting config, keeping the previous one"); n != 1 {
		t.Errorf("%d warnings for one bad version, want 1 (repeats are debug)", n)
	}

	// The fix is ACKed and applied.
	fixed := mesh2.Clone()
	fixed.Routes[0].VirtualHosts[0].Routes[0].Match.Headers[0] = modeltest.HeaderRegex("gray", "1|yes")
	srv.set(t, "4", fixed)
	snap = c.waitUpdate(t, "the fixed snapshot", atVersion("4"), func(s *model.Snapshot) bool {
		return s.Versions[resource.RouteType] != "3"
	})
	if h := snap.RouteTables["mesh"].VirtualHosts[0].Routes[0].Match.Headers[0]; h.Kind != model.Regex || !h.Regex.MatchString("yes") {
		t.Errorf("fixed header match = %+v", h)
	}
	srv.waitRequest(t, "an ACK of RDS version 4", func(r request) bool {
		return r.req.GetTypeUrl() == resource.RouteType && r.req.GetVersionInfo() == "4" && r.req.GetErrorDetail() == nil
	})

	// The control plane goes away: the client notices, keeps its config.
	srv.grpc.Stop()
	eventually(t, "Connected false", func() bool { return !c.Status().Connected })
	if v := c.Status().Versions; v[resource.RouteType] != "4" || v[resource.ClusterType] != "4" {
		t.Errorf("versions after disconnect = %v, want 4 kept", v)
	}
	c.noUpdate(t, "after disconnect")

	// It comes back on the same address, first with what the client has.
	srv2 := startServer(t, srv.addr)
	srv2.set(t, "4", fixed)
	eventually(t, "Connected true", func() bool { return c.Status().Connected })
	// Resubscribed with the known names and versions, without a nonce.
	eds := srv2.waitRequest(t, "an EDS resubscription", isType(resource.EndpointType)).req
	if eds.GetVersionInfo() != "4" || eds.GetResponseNonce() != "" ||
		!slices.Equal(eds.GetResourceNames(), []string{"ratings", "reviews|v1", "reviews|v2", "reviews|v3"}) {
		t.Errorf("EDS resubscription = %v", eds)
	}
	// Once every type is ACKed on the new stream, an update would have
	// been delivered: the resent, unchanged config must not cause one.
	for _, typ := range typeURLs {
		srv2.waitRequest(t, "ACK of "+typ+" on the new stream", func(r request) bool {
			return r.req.GetTypeUrl() == typ && r.req.GetResponseNonce() != ""
		})
	}
	c.noUpdate(t, "the same config resent after a reconnect")
	if st := c.Status(); st.Reconnects != 1 {
		t.Errorf("Reconnects = %d, want 1", st.Reconnects)
	}

	// And a new version arrives.
	mesh5 := fixed.Clone()
	mesh5.Loads[3].Endpoints[0].LbEndpoints[0].HealthStatus = corev3.HealthStatus_UNHEALTHY
	srv2.set(t, "5", mesh5)
	snap = c.waitUpdate(t, "a snapshot from the new server", atVersion("5"), nil)
	if snap.Clusters["ratings"].Endpoints[0].Healthy {
		t.Errorf("ratings endpoint still healthy")
	}

	// Cancelling Run closes the stream (the control plane deregisters).
	c.stop(t)
	eventually(t, "the server to see the stream closed", srv2.streamClosed)
	if c.Status().Connected {
		t.Errorf("Connected after Run returned")
	}
}

// TestSubscriptionsFollowCDSAndLDS: EDS and RDS subscriptions track the
// clusters and listeners, and resources no longer named are dropped.
func TestSubscriptionsFollowCDSAndLDS(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0")
	mesh := modeltest.Mesh()
	srv.set(t, "1", mesh)
	c := startClient(t, srv.addr)
	c.waitUpdate(t, "the first snapshot", atVersion("1"), nil)

	// ratings goes, details comes; the listeners move to route config "mesh-2".
	next := mesh.Clone()
	next.Clusters[3] = modeltest.EDSCluster("details")
	next.Loads[3] = modeltest.Load("details", "zone-c", modeltest.Endpoint("10.0.2.1", 9080, "", "details-1", corev3.HealthStatus_HEALTHY))
	next.Routes[0].Name = "mesh-2"
	next.Routes[0].VirtualHosts[1] = &routev3.VirtualHost{
		Name: "details", Domains: []string{"details"},
		Routes: []*routev3.Route{{Match: &routev3.RouteMatch{}, Action: modeltest.ToCluster("details")}},
	}
	next.Listeners = nil
	for _, name := range []string{"outbound", "gateway"} {
		next.Listeners = append(next.Listeners, modeltest.Listener(name, "mesh-2"))
	}
	srv.set(t, "2", next)

	snap := c.waitUpdate(t, "the second snapshot", atVersion("2"), nil)
	if _, ok := snap.Clusters["ratings"]; ok {
		t.Error("ratings cluster still there")
	}
	if eps := snap.Clusters["details"].Endpoints; len(eps) != 1 || eps[0].Zone != "zone-c" {
		t.Errorf("details endpoints = %+v", eps)
	}
	if _, ok := snap.RouteTables["mesh"]; ok || snap.RouteTables["mesh-2"] == nil || len(snap.RouteTables) != 1 {
		t.Errorf("route tables = %v, want only mesh-2", snap.RouteTables)
	}
	srv.waitRequest(t, "EDS request for the new clusters", func(r request) bool {
		return r.req.GetTypeUrl() == resource.EndpointType &&
			slices.Equal(r.req.GetResourceNames(), []string{"details", "reviews|v1", "reviews|v2", "reviews|v3"})
	})
	srv.waitRequest(t, "RDS request for mesh-2", func(r request) bool {
		return r.req.GetTypeUrl() == resource.RouteType && slices.Equal(r.req.GetResourceNames(), []string{"mesh-2"})
	})
}

// TestWaitsForReferencedResources: a listener naming a route config the
// server does not have is ACKed, but nothing is published until it comes.
func TestWaitsForReferencedResources(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0")
	mesh := modeltest.Mesh()
	incomplete := mesh.Clone()
	incomplete.Routes = nil // in ADS mode go-control-plane holds the RDS answer back
	srv.set(t, "1", incomplete)
	c := startClient(t, srv.addr)

	eventually(t, "Waiting [RDS mesh]", func() bool { return slices.Equal(c.Status().Waiting, []string{"RDS mesh"}) })
	if st := c.Status(); st.LastNACK != nil || st.Versions[resource.ListenerType] != "1" || !st.LastUpdate.IsZero() {
		t.Errorf("status while waiting = %+v", st)
	}
	c.noUpdate(t, "while RDS is missing")

	srv.set(t, "2", mesh)
	c.waitUpdate(t, "the complete snapshot", atVersion("2"), nil)
	if w := c.Status().Waiting; len(w) != 0 {
		t.Errorf("still waiting for %v", w)
	}
}

// TestKeepsRetrying: with no control plane, Run retries until cancelled,
// then returns nil.
func TestKeepsRetrying(t *testing.T) {
	srv := startServer(t, "127.0.0.1:0")
	srv.grpc.Stop() // a port nobody listens on
	c := startClient(t, srv.addr)
	eventually(t, "3 failed attempts", func() bool { return c.logs.count("WARN xDS stream ended, reconnecting") >= 3 })
	if st := c.Status(); st.Connected || st.Reconnects != 0 {
		t.Errorf("status = %+v, want disconnected, no reconnects", st)
	}
	// It connects once a server shows up.
	srv2 := startServer(t, srv.addr)
	srv2.set(t, "1", modeltest.Mesh())
	c.waitUpdate(t, "the first snapshot", atVersion("1"), nil)
}

func TestRunNeedsAddress(t *testing.T) {
	if err := New(Config{}).Run(context.Background()); err == nil || !strings.Contains(err.Error(), "address") {
		t.Errorf("Run without address = %v", err)
	}
}

func TestBackoff(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: 5 * time.Second}
	want := []time.Duration{100, 200, 400, 800, 1600, 3200, 5000, 5000}
	for i, w := range want {
		w *= time.Millisecond
		if d := b.next(); d < w/2 || d > w {
			t.Errorf("step %d: %v, want in [%v, %v]", i, d, w/2, w)
		}
	}
	b.reset()
	if d := b.next(); d > 100*time.Millisecond {
		t.Errorf("after reset: %v", d)
	}
}
