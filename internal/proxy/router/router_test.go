package router

import (
	"net/http"
	"regexp"
	"testing"

	"trellis.dev/trellis/internal/proxy/mesherr"
	"trellis.dev/trellis/internal/proxy/model"
)

func vhosts(domains ...[]string) []*model.VirtualHost {
	var out []*model.VirtualHost
	for i, d := range domains {
		out = append(out, &model.VirtualHost{Name: string(rune('a' + i)), Domains: d})
	}
	return out
}

func TestFindVirtualHost(t *testing.T) {
	vhs := vhosts(
		[]string{"*"},                    // a
		[]string{"reviews", "reviews.*"}, // b
		[]string{"*.example.com"},        // c
		[]string{"*.shop.example.com"},   // d
		[]string{"api.*"},                // e
		[]string{"api.internal.*"},       // f
		[]string{"*-canary.example.com"}, // g
		[]string{"Ratings"},              // h: domains compare case-insensitively
	)
	tests := []struct {
		host string
		want string
	}{
		{"reviews", "b"},
		{"reviews.default.svc", "b"},
		{"www.example.com", "c"},
		{"a.shop.example.com", "d"}, // longest suffix wins
		{"example.com", "a"},        // "*.example.com" needs something before the dot
		{"api.internal.local", "f"}, // longest prefix wins
		{"api.local", "e"},
		{"api.example.com", "c"},      // suffix wildcard beats prefix wildcard
		{"x-canary.example.com", "g"}, // "-canary.example.com" is longer than ".example.com"
		{"ratings", "h"},
		{"unknown", "a"},
		{"api.", "a"}, // wildcard never matches empty
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			got := FindVirtualHost(vhs, tt.host)
			if got == nil || got.Name != tt.want {
				t.Fatalf("FindVirtualHost(%q) = %v, want %s", tt.host, got, tt.want)
			}
		})
	}
	if got := FindVirtualHost(vhs[1:], "nothing"); got != nil {
		t.Fatalf("no catch-all: got %s, want nil", got.Name)
	}
}

func TestNormalizeHost(t *testing.T) {
	for in, want := range map[string]string{
		"reviews":      "reviews",
		"reviews:9080": "reviews",
		"Reviews:80":   "reviews",
		"[::1]:8080":   "[::1]",
		"[::1]":        "[::1]",
		"::1":          "::1",
		"":             "",
	} {
		if got := NormalizeHost(in); got != want {
			t.Errorf("NormalizeHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestFind(t *testing.T) {
	table := &model.RouteTable{Name: "mesh", VirtualHosts: []*model.VirtualHost{{
		Name:    "reviews",
		Domains: []string{"reviews", "reviews.*"},
		Routes: []*model.Route{
			{Name: "exact", Match: model.Match{Path: model.PathMatch{Kind: model.Exact, Value: "/exact"}}},
			{Name: "regex", Match: model.Match{Path: model.PathMatch{Kind: model.Regex, Value: "/items/[0-9]+",
				Regex: regexp.MustCompile(`^(?:/items/[0-9]+)$`)}}},
			{Name: "regex-uncompiled", Match: model.Match{Path: model.PathMatch{Kind: model.Regex, Value: "/u/[a-z]+"}}},
			{Name: "gray", Match: model.Match{Headers: []model.StringMatch{{Name: "gray", Kind: model.Exact, Value: "1"}}}},
			{Name: "multi", Match: model.Match{Headers: []model.StringMatch{{Name: "x-multi", Kind: model.Exact, Value: "a,b"}}}},
			{Name: "present+prefix", Match: model.Match{Headers: []model.StringMatch{
				{Name: "x-present", Kind: model.Present},
				{Name: "user-agent", Kind: model.Prefix, Value: "curl/"},
			}}},
			{Name: "header-regex", Match: model.Match{Headers: []model.StringMatch{{Name: "x-tenant", Kind: model.Regex, Value: "t[0-9]",
				Regex: regexp.MustCompile(`^(?:t[0-9])$`)}}}},
			{Name: "method", Match: model.Match{Headers: []model.StringMatch{{Name: ":method", Kind: model.Exact, Value: "DELETE"}}}},
			{Name: "debug", Match: model.Match{QueryParams: []model.StringMatch{{Name: "debug", Kind: model.Exact, Value: "true"}}}},
			{Name: "qpresent", Match: model.Match{QueryParams: []model.StringMatch{{Name: "trace", Kind: model.Present}}}},
			{Name: "v2", Match: model.Match{Path: model.PathMatch{Kind: model.Prefix, Value: "/v2/"}}},
			{Name: "unknown-kind", Match: model.Match{Path: model.PathMatch{Kind: "suffix", Value: "x"}}},
		},
	}}}
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			h.Add(kv[i], kv[i+1])
		}
		return h
	}
	tests := []struct {
		name string
		req  Request
		want string // route name, or "" for no_route
	}{
		{"exact", Request{Host: "reviews", Path: "/exact"}, "exact"},
		{"exact is exact", Request{Host: "reviews", Path: "/exact/more"}, ""},
		{"regex whole", Request{Host: "reviews", Path: "/items/42"}, "regex"},
		{"regex not partial", Request{Host: "reviews", Path: "/items/42/x"}, ""},
		{"regex compiled here", Request{Host: "reviews", Path: "/u/abc"}, "regex-uncompiled"},
		{"regex compiled here is whole", Request{Host: "reviews", Path: "/u/abc1"}, ""},
		{"header exact", Request{Host: "reviews:9080", Path: "/", Header: hdr("Gray", "1")}, "gray"},
		{"header exact mismatch", Request{Host: "reviews", Path: "/", Header: hdr("gray", "2")}, ""},
		{"header values joined", Request{Host: "reviews", Path: "/", Header: hdr("x-multi", "a", "x-multi", "b")}, "multi"},
		{"all headers must hold", Request{Host: "reviews", Path: "/", Header: hdr("x-present", "", "user-agent", "wget")}, ""},
		{"present and prefix", Request{Host: "reviews", Path: "/", Header: hdr("x-present", "", "user-agent", "curl/8")}, "present+prefix"},
		{"header regex", Request{Host: "reviews", Path: "/", Header: hdr("x-tenant", "t7")}, "header-regex"},
		{"pseudo header method", Request{Host: "reviews", Method: "DELETE", Path: "/"}, "method"},
		{"query exact", Request{Host: "reviews", Path: "/p", RawQuery: "a=1&debug=true"}, "debug"},
		{"query first value", Request{Host: "reviews", Path: "/p", RawQuery: "debug=false&debug=true"}, ""},
		{"query present", Request{Host: "reviews", Path: "/p", RawQuery: "trace"}, "qpresent"},
		{"path prefix", Request{Host: "REVIEWS.default", Path: "/v2/x"}, "v2"},
		{"unknown host", Request{Host: "ratings", Path: "/v2/x"}, ""},
		{"unknown kind never matches", Request{Host: "reviews", Path: "/x"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.req.Header == nil {
				tt.req.Header = http.Header{}
			}
			_, rt, err := Find(table, tt.req)
			if tt.want == "" {
				e, ok := mesherr.As(err)
				if !ok || e.Code != mesherr.NoRoute {
					t.Fatalf("got route %v err %v, want no_route", rt, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Find: %v", err)
			}
			if rt.Name != tt.want {
				t.Fatalf("route %q, want %q", rt.Name, tt.want)
			}
		})
	}
}

func TestFindNilTable(t *testing.T) {
	if _, _, err := Find(nil, Request{Host: "x"}); err == nil {
		t.Fatal("want no_route for a nil table")
	}
}

func TestPickCluster(t *testing.T) {
	split := &model.Route{Clusters: []model.WeightedCluster{wc("v1", 80), wc("v2", 20)}, TotalWeight: 100}
	zero := &model.Route{Clusters: []model.WeightedCluster{wc("a", 0), wc("b", 0)}}
	skipZero := &model.Route{Clusters: []model.WeightedCluster{wc("a", 0), wc("b", 5), wc("c", 5)}}
	tooBig := &model.Route{Clusters: []model.WeightedCluster{wc("a", 1), wc("b", 1)}, TotalWeight: 10}
	tests := []struct {
		rt   *model.Route
		n    uint32
		want string
	}{
		{split, 0, "v1"}, {split, 79, "v1"}, {split, 80, "v2"}, {split, 99, "v2"},
		{zero, 0, "a"},
		{skipZero, 0, "b"}, {skipZero, 4, "b"}, {skipZero, 5, "c"},
		{tooBig, 9, "b"},
	}
	for _, tt := range tests {
		got, ok := PickCluster(tt.rt, tt.n)
		if !ok || got != tt.want {
			t.Errorf("PickCluster(%v, %d) = %q, %v; want %q", tt.rt.Clusters, tt.n, got, ok, tt.want)
		}
	}
	if _, ok := PickCluster(&model.Route{}, 0); ok {
		t.Error("a route without clusters must not pick")
	}
}

func TestPickIsWeighted(t *testing.T) {
	rt := &model.Route{Clusters: []model.WeightedCluster{wc("v1", 80), wc("v2", 20)}, TotalWeight: 100}
	n := map[string]int{}
	for range 10000 {
		c, _ := Pick(rt)
		n[c]++
	}
	if share := n["v2"] * 100 / 10000; share < 17 || share > 23 {
		t.Fatalf("v2 got %d%%, want about 20%% (%v)", share, n)
	}
}

func BenchmarkFind(b *testing.B) {
	var vhs []*model.VirtualHost
	for _, s := range []string{"details", "productpage", "ratings", "reviews"} {
		vhs = append(vhs, &model.VirtualHost{Name: s, Domains: []string{s, s + ".*"}, Routes: []*model.Route{
			{Match: model.Match{Headers: []model.StringMatch{{Name: "gray", Kind: model.Exact, Value: "1"}}}},
			{Match: model.Match{Path: model.PathMatch{Kind: model.Prefix, Value: "/"}}},
		}})
	}
	table := &model.RouteTable{VirtualHosts: vhs}
	req := Request{Host: "reviews:9080", Method: "GET", Path: "/reviews/1", Header: http.Header{"User-Agent": {"x"}}}
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Find(table, req); err != nil {
			b.Fatal(err)
		}
	}
}

func wc(name string, weight uint32) model.WeightedCluster {
	return model.WeightedCluster{Name: name, Weight: weight}
}

// The domain index answers as FindVirtualHost does, for every host of the
// table above and of a converted mesh.
func TestDomainIndexAgreesWithScan(t *testing.T) {
	vhs := vhosts(
		[]string{"*"}, []string{"reviews", "reviews.*"}, []string{"*.example.com"}, []string{"*.shop.example.com"},
		[]string{"api.*"}, []string{"api.internal.*"}, []string{"*-canary.example.com"}, []string{"Ratings"},
		[]string{"*.EXAMPLE.org"}, []string{"dup"}, []string{"dup"},
	)
	hosts := []string{"reviews", "reviews.default.svc", "www.example.com", "a.shop.example.com", "example.com",
		"api.internal.local", "api.x", "x-canary.example.com", "ratings", "RATINGS", "nothing", "", "a.example.org",
		"dup", ".example.com", "api.", "reviews.", "-canary.example.com"}
	x := model.NewDomainIndex(vhs)
	for _, h := range hosts {
		if got, want := x.Lookup(h), FindVirtualHost(vhs, h); got != want {
			t.Errorf("%q: index %v, scan %v", h, name(got), name(want))
		}
	}
	noAny := vhs[1:]
	x = model.NewDomainIndex(noAny)
	for _, h := range hosts {
		if got, want := x.Lookup(h), FindVirtualHost(noAny, h); got != want {
			t.Errorf("without *: %q: index %v, scan %v", h, name(got), name(want))
		}
	}
}

func name(vh *model.VirtualHost) string {
	if vh == nil {
		return "nil"
	}
	return vh.Name
}
