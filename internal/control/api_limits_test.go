package control

import (
	"fmt"
	"strings"
	"testing"

	"trellis.dev/trellis/internal/api"
)

// bigRoute is a Route whose one header match carries n bytes, so its
// virtual host in the route configuration is a little over n bytes.
func bigRoute(name string, n int) string {
	return "apiVersion: trellis.dev/v1alpha1\nkind: Route\nmetadata: {name: " + name + "}\nspec:\n  service: " + name +
		"\n  rules:\n  - version: v2\n    matches: [{headers: {x-big: {exact: \"" + strings.Repeat("x", n) + "\"}}}]\n  - {version: v1, weight: 100}\n"
}

// A Route over MaxRouteBytes is refused with its size and the limit, and
// not stored, whatever the route configuration's size.
func TestApplyRouteTooLarge(t *testing.T) {
	s := sharedServer(t)
	runGuardCases(t, s.HTTPAddr(), []guardCase{
		{"one route too large", req{method: "POST", path: "/v1/apply", body: bigRoute("huge", 300_000), header: yamlCT},
			400, []string{`route default/huge is 293.2 KiB, over the limit of 256 KiB for one Route`}, nil},
		{"not stored", req{method: "GET", path: "/v1/routes/huge"}, 404, nil, nil},
		{"just under", req{method: "POST", path: "/v1/apply", body: bigRoute("large", 250_000), header: yamlCT}, 200, nil, nil},
	})
}

// The route configuration limit: applies that would make it larger than
// the limit are refused with the size, the limit and the flag, and store
// nothing; one that shrinks it makes room; a config already over the limit
// (stored past the API) can be shrunk but not grown.
func TestApplyRouteConfigLimit(t *testing.T) {
	s := sharedServer(t)
	const limit = 64 << 10
	addr := startAPI(t, guardConfig{}, defaultHTTPLimits, limit)
	const each = 25_000 // three make ~75 KB
	runGuardCases(t, addr, []guardCase{
		{"first", req{method: "POST", path: "/v1/apply", body: bigRoute("big1", each), header: yamlCT}, 200, nil, nil},
		{"second", req{method: "POST", path: "/v1/apply", body: bigRoute("big2", each), header: yamlCT}, 200, nil, nil},
		{"third crosses the limit", req{method: "POST", path: "/v1/apply", body: bigRoute("big3", each), header: yamlCT},
			400, []string{`the route configuration would be 73.`, `over the limit of 64 KiB (control --max-route-config-bytes); route default/big3 makes virtual host \"big3\" 24.`}, nil},
		{"third not stored", req{method: "GET", path: "/v1/routes/big3"}, 404, nil, nil},
		{"shrink the first", req{method: "POST", path: "/v1/apply", body: simpleRoute("big1", "default", "v1"), header: yamlCT}, 200, nil, nil},
		{"now the third fits", req{method: "POST", path: "/v1/apply", body: bigRoute("big3", each), header: yamlCT}, 200, nil, nil},
		{"growing the first back does not", req{method: "POST", path: "/v1/apply", body: bigRoute("big1", each), header: yamlCT},
			400, []string{`over the limit of 64 KiB`, `route default/big1 makes virtual host \"big1\"`}, nil},
		{"first still small", req{method: "GET", path: "/v1/routes/big1"}, 200, []string{`"weight": 100`}, nil},
	})
	if t.Failed() {
		return
	}

	// One apply of several documents is checked as a whole, and stores
	// none of them.
	sharedServer(t)
	runGuardCases(t, addr, []guardCase{
		{"three in one apply", req{method: "POST", path: "/v1/apply", header: yamlCT,
			body: bigRoute("big1", each) + "---\n" + bigRoute("big2", each) + "---\n" + bigRoute("big3", each)},
			400, []string{`the route configuration would be`, `route default/big1 makes`, `route default/big3 makes`}, nil},
		{"none stored", req{method: "GET", path: "/v1/routes"}, 200, []string{`"items": []`}, nil},
	})

	// Over the limit already (written past the API): shrinking is allowed,
	// any growth is not.
	sharedServer(t)
	var rs []api.Resource
	for _, name := range []string{"big1", "big2", "big3"} {
		d, err := api.Decode([]byte(bigRoute(name, each)))
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, d...)
	}
	if _, err := s.Store().Apply(t.Context(), rs); err != nil {
		t.Fatal(err)
	}
	runGuardCases(t, addr, []guardCase{
		{"a new small route grows it", req{method: "POST", path: "/v1/apply", body: simpleRoute("tiny", "default", "v1"), header: yamlCT},
			400, []string{`over the limit of 64 KiB`}, nil},
		{"shrinking is allowed", req{method: "POST", path: "/v1/apply", body: bigRoute("big2", 1000), header: yamlCT}, 200, nil, nil},
		{"an unchanged re-apply is allowed", req{method: "POST", path: "/v1/apply", body: bigRoute("big2", 1000), header: yamlCT}, 200, []string{`"unchanged"`}, nil},
		{"now under: the small route fits", req{method: "POST", path: "/v1/apply", body: simpleRoute("tiny", "default", "v1"), header: yamlCT}, 200, nil, nil},
	})
}

func TestSizeString(t *testing.T) {
	for n, want := range map[int]string{
		0: "0 bytes", 1023: "1023 bytes", 1024: "1 KiB", 1536: "1.5 KiB", 256 << 10: "256 KiB",
		2 << 20: "2 MiB", 5347737: "5.1 MiB",
	} {
		if got := sizeString(n); got != want {
			t.Errorf("sizeString(%d) = %q, want %q", n, got, want)
		}
	}
}

// The outage, at the default limit: Routes that each apply fine
// add up; the one that would take the route configuration over 2 MiB is
// refused, long before the 4 MiB every proxy accepts.
func TestApplyRouteConfigDefaultLimit(t *testing.T) {
	s := sharedServer(t)
	const each = 240_000
	for i := 1; i <= 8; i++ {
		a := sendReq(t, s.HTTPAddr(), req{method: "POST", path: "/v1/apply", body: bigRoute(fmt.Sprintf("big%d", i), each), header: yamlCT})
		if a.status != 200 {
			t.Fatalf("route %d: %d %s", i, a.status, a.body)
		}
	}
	a := sendReq(t, s.HTTPAddr(), req{method: "POST", path: "/v1/apply", body: bigRoute("big9", each), header: yamlCT})
	if a.status != 400 || !strings.Contains(a.body, `over the limit of 2 MiB (control --max-route-config-bytes)`) {
		t.Fatalf("ninth route: %d %s", a.status, a.body)
	}
	t.Log(strings.TrimSpace(a.body))
}
