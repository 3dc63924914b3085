package model_test

import (
	"errors"
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/proxy/model/modeltest"
)

// Envoy's safe_regex matches the whole value; Go's regexp finds a match
// anywhere unless anchored. The goldens cannot show that, so check it.
func TestRegexMatchesWholeValue(t *testing.T) {
	rc := &routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{{
		Name: "vh", Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match: &routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/v[0-9]+"}},
				Headers:       []*routev3.HeaderMatcher{modeltest.HeaderRegex("user", "alice|bob")},
			},
			Action: modeltest.ToCluster("c"),
		}},
	}}}
	rt, err := model.ConvertRouteConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	m := rt.VirtualHosts[0].Routes[0].Match
	for s, want := range map[string]bool{"/v1": true, "/v12": true, "/v1/x": false, "/x/v1": false, "/v": false} {
		if got := m.Path.Regex.MatchString(s); got != want {
			t.Errorf("path regex on %q = %v, want %v", s, got, want)
		}
	}
	for s, want := range map[string]bool{"alice": true, "bob": true, "alicebob": false, "xbob": false, "alice\n": false} {
		if got := m.Headers[0].Regex.MatchString(s); got != want {
			t.Errorf("header regex on %q = %v, want %v", s, got, want)
		}
	}
}

func TestConvertClusterEDSHasNoEndpoints(t *testing.T) {
	c, err := model.ConvertCluster(modeltest.EDSCluster("reviews|v1"))
	if err != nil {
		t.Fatal(err)
	}
	if c.Name != "reviews|v1" || c.Endpoints == nil || len(c.Endpoints) != 0 {
		t.Errorf("got %+v, want reviews|v1 with empty (non-nil) endpoints", c)
	}
}

func TestEDSServiceName(t *testing.T) {
	named := modeltest.EDSCluster("reviews|v1")
	named.EdsClusterConfig.ServiceName = "reviews-v1"
	for _, tt := range []struct {
		c    *clusterv3.Cluster
		want string
	}{
		{modeltest.EDSCluster("reviews|v1"), "reviews|v1"},
		{named, "reviews-v1"},
		{&clusterv3.Cluster{Name: "static"}, ""},
		{nil, ""},
	} {
		if got := model.EDSServiceName(tt.c); got != tt.want {
			t.Errorf("EDSServiceName(%v) = %q, want %q", tt.c.GetName(), got, tt.want)
		}
	}
}

func TestBuildIncomplete(t *testing.T) {
	r := modeltest.Mesh()
	_, err := model.Build(nil, r.Listeners, nil, r.Clusters, r.Loads[1:])
	var inc *model.IncompleteError
	if !errors.As(err, &inc) {
		t.Fatalf("got %v, want *IncompleteError", err)
	}
	if want := []string{"mesh", "reviews|v1"}; !slices.Equal(inc.Missing(), want) {
		t.Errorf("Missing() = %v, want %v", inc.Missing(), want)
	}
	// An invalid resource wins over a missing one: it is a NACK, not a wait.
	r.Clusters[0].LbPolicy = clusterv3.Cluster_MAGLEV
	_, err = model.Build(nil, r.Listeners, nil, r.Clusters, r.Loads[1:])
	var re *model.ResourceError
	if !errors.As(err, &re) {
		t.Fatalf("got %v, want *ResourceError", err)
	}
}

// Build must not keep references into its inputs that a caller could
// change later, nor share the versions map.
func TestBuildCopiesVersions(t *testing.T) {
	r := modeltest.Mesh()
	versions := map[string]string{"t": "1"}
	snap, err := model.Build(versions, r.Listeners, r.Routes, r.Clusters, r.Loads)
	if err != nil {
		t.Fatal(err)
	}
	versions["t"] = "2"
	if snap.Versions["t"] != "1" {
		t.Errorf("snapshot versions follow the caller's map")
	}
}

// One compiled regexp per expression, shared by every matcher using it, in
// one config and across configs.
func TestRegexpsShared(t *testing.T) {
	vh := func(name string) *routev3.VirtualHost {
		return &routev3.VirtualHost{Name: name, Domains: []string{name}, Routes: []*routev3.Route{{
			Match: &routev3.RouteMatch{
				PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/shared-[0-9]+"}},
				Headers:       []*routev3.HeaderMatcher{modeltest.HeaderRegex("agent", ".*(Android|iPhone).*")},
			},
			Action: modeltest.ToCluster("c"),
		}}}
	}
	convert := func() *model.RouteTable {
		rt, err := model.ConvertRouteConfig(&routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{vh("a"), vh("b")}})
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	first, second := convert(), convert()
	a, b, c := first.VirtualHosts[0].Routes[0].Match, first.VirtualHosts[1].Routes[0].Match, second.VirtualHosts[0].Routes[0].Match
	if a.Path.Regex != b.Path.Regex || a.Path.Regex != c.Path.Regex || a.Headers[0].Regex != c.Headers[0].Regex {
		t.Error("the same expression compiled more than once")
	}
	if a.Path.Regex == a.Headers[0].Regex || !a.Headers[0].Regex.MatchString("x iPhone y") || a.Headers[0].Regex.MatchString("Nokia") {
		t.Error("different expressions share a regexp")
	}
}
