package router

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"trellis.dev/trellis/internal/proxy/model"
)

// cond is one condition of a fuzzed route, as the test understands it: the
// reference the router is held to.
type cond struct {
	name  string          // "" for the path; else a header or query parameter
	kind  model.MatchKind // Exact, Prefix, Regex or Present
	value string
	re    *regexp.Regexp // value compiled anchored, for Regex
}

// fuzzRoute is a route of the fixed table: a path condition and any
// header and query conditions, all of which must hold.
type fuzzRoute struct {
	path    cond
	headers []cond
	query   []cond
}

func c(name string, kind model.MatchKind, value string) cond {
	x := cond{name: name, kind: kind, value: value}
	if kind == model.Regex {
		x.re = regexp.MustCompile(`^(?:` + value + `)$`)
	}
	return x
}

var (
	exact, prefix, regex, present = model.Exact, model.Prefix, model.Regex, model.Present
	anyPath                       = c("", prefix, "")
)

// fuzzRoutes is every kind of matcher the converter accepts, on the path,
// the pseudo-headers, headers (one value, several, none) and query
// parameters.
var fuzzRoutes = []fuzzRoute{
	{path: c("", exact, "/")},
	{path: c("", exact, "/api/v1")},
	{path: c("", exact, "/%41")},
	{path: c("", prefix, "/api")},
	{path: c("", prefix, "/")},
	{path: c("", regex, `/api/v[0-9]+/.*`)},
	{path: c("", regex, `/(a|b)*`)},
	{path: c("", regex, `.*\.png`)},
	{path: c("", regex, `(?i)/case`)},
	{path: c("", regex, `/a|/b`)}, // anchoring must hold the whole alternation
	{path: c("", regex, `/\p{Greek}+`)},
	{path: anyPath, headers: []cond{c(":authority", exact, "reviews")}},
	{path: anyPath, headers: []cond{c("host", prefix, "rev")}},
	{path: anyPath, headers: []cond{c(":method", exact, "POST")}},
	{path: anyPath, headers: []cond{c(":path", regex, `/search\?q=.*`)}},
	{path: anyPath, headers: []cond{c(":path", exact, "/")}},
	{path: anyPath, headers: []cond{c("x-user", exact, "alice")}},
	{path: anyPath, headers: []cond{c("x-mixed-case", prefix, "v")}},
	{path: anyPath, headers: []cond{c("x-multi", exact, "a,b")}},
	{path: anyPath, headers: []cond{c("x-re", regex, "[0-9]+")}},
	{path: anyPath, headers: []cond{c("x-present", present, "")}},
	{path: anyPath, headers: []cond{c("x-empty", exact, "")}},
	{path: anyPath, query: []cond{c("q", exact, "x y")}},
	{path: anyPath, query: []cond{c("page", regex, "[0-9]+")}},
	{path: anyPath, query: []cond{c("flag", present, "")}},
	{path: anyPath, query: []cond{c("pre", prefix, "a")}},
	{path: c("", prefix, "/api"),
		headers: []cond{c("x-user", exact, "alice"), c(":method", exact, "GET")},
		query:   []cond{c("flag", present, ""), c("page", regex, "[0-9]+")}},
}

// FuzzMatch routes random requests with the fixed table fuzzRoutes, made
// by the converter from the xDS RouteConfiguration, and holds every
// route's verdict to the reference (refMatches), to the same matchers
// without the converter's precompiled regexps and header keys (the
// router's fallback), and Find's choice to the first route the reference
// takes, with and without the domain index.
//
// headers is one "name:value" per line.
func FuzzMatch(f *testing.F) {
	f.Add("GET", "/", "", "reviews", "")
	f.Add("GET", "/api/v1/x", "flag&page=12", "reviews:9080", "x-user:alice\nx-multi:a\nx-multi:b")
	f.Add("POST", "/search", "q=x+y", "Reviews", "X-Mixed-Case:value\nx-present:")
	f.Add("GET", "/%41", "q=x%20y&q=z", "", "x-re:123\nx-empty:")
	f.Add("GET", "/img/a.png", "pre=abc;x=1&page=1", "ratings", "x-re:12a")
	f.Add("GET", "/CaSe", "=&flag=%zz&flag", "rev", ":path:/")
	f.Add("get", "/ababab", "page=%31%32", "h", "x-user:alice\nx-user:bob")
	f.Add("GET", "/αβγ", "&&q=x y&", "[::1]:80", "x-multi:a,b")
	f.Add("GET", "/b", "%3D=1&=x", "ſ", "x-user :alice\nX-USER:alice")
	table := fuzzTable(f)
	fallback := withoutPrecompiled(table)
	scan := &model.RouteTable{Name: table.Name, VirtualHosts: table.VirtualHosts}
	f.Fuzz(func(t *testing.T, method, path, rawQuery, host, headers string) {
		if len(method)+len(path)+len(rawQuery)+len(host)+len(headers) > 1024 {
			// Nothing here needs more; and the fallback compiles its
			// regexps per call, which makes long inputs slow to minimize.
			return
		}
		h := http.Header{}
		for l := range strings.SplitSeq(headers, "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok {
				h.Add(k, v)
			}
		}
		req := Request{Host: host, Method: method, Path: path, RawQuery: rawQuery, Header: h}
		first := -1
		routes := table.VirtualHosts[0].Routes
		for i, fr := range fuzzRoutes {
			want := refMatches(fr, req)
			if got := Matches(&routes[i].Match, req); got != want {
				t.Errorf("route %d (%+v): Matches = %v, the reference says %v", i, fr, got, want)
			}
			if got := Matches(&fallback.VirtualHosts[0].Routes[i].Match, req); got != want {
				t.Errorf("route %d (%+v) without precompiled regexps and keys: Matches = %v, the reference says %v", i, fr, got, want)
			}
			if want && first < 0 {
				first = i
			}
		}
		for _, tbl := range []*model.RouteTable{table, scan} {
			_, rt, err := Find(tbl, req)
			switch {
			case first < 0 && err == nil:
				t.Errorf("Find took route %s, the reference none", rt.Name)
			case first >= 0 && (err != nil || rt != routes[first]):
				t.Errorf("Find: %v %v, the reference takes route %d", rt, err, first)
			}
		}
	})
}

// fuzzTable converts fuzzRoutes, in one virtual host for every domain,
// from xDS.
func fuzzTable(tb testing.TB) *model.RouteTable {
	sm := func(x cond) *matcherv3.StringMatcher {
		switch x.kind {
		case exact:
			return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: x.value}}
		case prefix:
			return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: x.value}}
		default:
			return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: x.value}}}
		}
	}
	vh := &routev3.VirtualHost{Name: "all", Domains: []string{"*"}}
	for i, fr := range fuzzRoutes {
		m := &routev3.RouteMatch{}
		switch fr.path.kind {
		case exact:
			m.PathSpecifier = &routev3.RouteMatch_Path{Path: fr.path.value}
		case prefix:
			m.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: fr.path.value}
		case regex:
			m.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: fr.path.value}}
		}
		for _, x := range fr.headers {
			hm := &routev3.HeaderMatcher{Name: x.name}
			if x.kind == present {
				hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
			} else {
				hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: sm(x)}
			}
			m.Headers = append(m.Headers, hm)
		}
		for _, x := range fr.query {
			qm := &routev3.QueryParameterMatcher{Name: x.name}
			if x.kind == present {
				qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}
			} else {
				qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{StringMatch: sm(x)}
			}
			m.QueryParameters = append(m.QueryParameters, qm)
		}
		vh.Routes = append(vh.Routes, &routev3.Route{
			Name:  "r" + string(rune('a'+i)),
			Match: m,
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"},
			}},
		})
	}
	table, err := model.ConvertRouteConfig(&routev3.RouteConfiguration{Name: "fuzz", VirtualHosts: []*routev3.VirtualHost{vh}})
	if err != nil {
		tb.Fatal(err)
	}
	if n := len(table.VirtualHosts[0].Routes); n != len(fuzzRoutes) {
		tb.Fatalf("converted %d routes of %d", n, len(fuzzRoutes))
	}
	return table
}

// withoutPrecompiled copies t's matchers without what the converter
// prepares (compiled regexps, canonical header keys), as a model made by
// hand has them: the router then compiles and canonicalizes itself.
func withoutPrecompiled(t *model.RouteTable) *model.RouteTable {
	vh := *t.VirtualHosts[0]
	vh.Routes = nil
	for _, rt := range t.VirtualHosts[0].Routes {
		r := *rt
		r.Match.Path.Regex = nil
		r.Match.Headers = append([]model.StringMatch(nil), rt.Match.Headers...)
		for i := range r.Match.Headers {
			r.Match.Headers[i].Regex, r.Match.Headers[i].HeaderKey = nil, ""
		}
		r.Match.QueryParams = append([]model.StringMatch(nil), rt.Match.QueryParams...)
		for i := range r.Match.QueryParams {
			r.Match.QueryParams[i].Regex = nil
		}
		vh.Routes = append(vh.Routes, &r)
	}
	return &model.RouteTable{Name: t.Name, VirtualHosts: []*model.VirtualHost{&vh}}
}

// refMatches is Envoy's route matching as its documentation says it, for
// the kinds of condition the converter accepts.
func refMatches(fr fuzzRoute, req Request) bool {
	if !refString(fr.path, req.Path, true) {
		return false
	}
	for _, x := range fr.headers {
		v, ok := refHeader(x.name, req)
		if !refString(x, v, ok) {
			return false
		}
	}
	for _, x := range fr.query {
		v, ok := refQuery(x.name, req.RawQuery)
		if !refString(x, v, ok) {
			return false
		}
	}
	return true
}

func refString(x cond, v string, ok bool) bool {
	if !ok {
		return false
	}
	switch x.kind {
	case exact:
		return v == x.value
	case prefix:
		return strings.HasPrefix(v, x.value)
	case regex:
		return x.re.MatchString(v)
	}
	return true // present
}

// refHeader: the pseudo-headers of HTTP/2 (":path" with the query), else
// the values of the header, whose names compare ASCII-case-insensitively,
// joined by ",".
func refHeader(name string, req Request) (string, bool) {
	switch {
	case asciiEqualFold(name, ":authority"), asciiEqualFold(name, "host"):
		return req.Host, req.Host != ""
	case asciiEqualFold(name, ":method"):
		return req.Method, true
	case asciiEqualFold(name, ":path"):
		if req.RawQuery != "" {
			return req.Path + "?" + req.RawQuery, true
		}
		return req.Path, true
	}
	var vs []string
	for k, v := range req.Header {
		if asciiEqualFold(k, name) {
			vs = append(vs, v...)
		}
	}
	return strings.Join(vs, ","), len(vs) > 0
}

// refQuery: the first value of the parameter name in a query split at "&";
// a pair with a ";" or a bad escape is no pair (url.ParseQuery's rules,
// which the forwarder's cleanQueryParams makes the instance's too).
func refQuery(name, raw string) (string, bool) {
	for _, pair := range strings.Split(raw, "&") {
		if pair == "" || strings.Contains(pair, ";") {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		k, err := url.QueryUnescape(k)
		if err != nil {
			continue
		}
		if v, err = url.QueryUnescape(v); err != nil {
			continue
		}
		if k == name {
			return v, true
		}
	}
	return "", false
}

// FuzzRegexFallback holds the router's own compilation of a regex
// condition (a model not made by the converter has no compiled Regex) to
// the converter's: where the converter accepts the expression, the two
// agree on every value; where it refuses it, the fallback never matches
// (an invalid condition fails closed). An unbalanced expression such as
// "a)|(b" must not become "^(?:a)|(b)$", which matches "ax" and "xb".
func FuzzRegexFallback(f *testing.F) {
	for _, s := range [][2]string{
		{"a)|(b", "ax"}, {"a)|(b", "xb"}, {`/api/v[0-9]+`, "/api/v2"}, {"(?i)x", "X"}, {"a|b", "ab"},
		{"", ""}, {"(", "("}, {`\`, `\`}, {"a{2,1000}", "aa"}, {"x)(?:y", "x)(?:y"}, {"[", "["},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, expr, v string) {
		if len(expr) > 256 || len(v) > 256 {
			return
		}
		rc := &routev3.RouteConfiguration{Name: "re", VirtualHosts: []*routev3.VirtualHost{{
			Name: "re", Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: expr}}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"},
				}},
			}},
		}}}
		fallback := &model.Match{Path: model.PathMatch{Kind: model.Regex, Value: expr}}
		got := Matches(fallback, Request{Path: v})
		table, err := model.ConvertRouteConfig(rc)
		if err != nil {
			if got {
				t.Fatalf("regex %q, which the converter refuses (%v), matched %q", expr, err, v)
			}
			return
		}
		if want := Matches(&table.VirtualHosts[0].Routes[0].Match, Request{Path: v}); got != want {
			t.Fatalf("regex %q on %q: compiled by the router %v, by the converter %v", expr, v, got, want)
		}
	})
}
