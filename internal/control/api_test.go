package control

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/store"
)

const canary = `apiVersion: trellis.dev/v1alpha1
kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules:
  - version: v3
    matches:
    - headers: {gray: {exact: "1"}}
    - queryParams: {debug: {exact: "true"}}
  - version: v1
    weight: 80
  - version: v2
    weight: 20
`

func simpleRoute(name, ns, version string) string {
	return "apiVersion: trellis.dev/v1alpha1\nkind: Route\nmetadata: {name: " + name + ", namespace: " + ns +
		"}\nspec:\n  service: " + name + "\n  rules:\n  - {version: " + version + ", weight: 100}\n"
}

// TestHTTPAPI walks the resource endpoints in order; each step sees the
// state the previous ones left.
func TestHTTPAPI(t *testing.T) {
	s := sharedServer(t)
	steps := []struct {
		name         string
		method, path string
		body         string
		status       int
		contains     []string // substrings of the body
	}{
		{"health", "GET", "/healthz", "", 200, []string{"ok"}},
		{"apply canary", "POST", "/v1/apply", canary, 200,
			[]string{`"kind": "Route"`, `"namespace": "default"`, `"name": "reviews"`, `"generation": 1`, `"result": "created"`}},
		{"apply again", "POST", "/v1/apply", canary, 200, []string{`"generation": 1`, `"result": "unchanged"`}},
		{"invalid weights", "POST", "/v1/apply", strings.Replace(canary, "80", "70", 1),
			400, []string{`spec.rules: weights of v1, v2 add up to 90, must be 100`}},
		{"apply update", "POST", "/v1/apply", strings.NewReplacer("weight: 80", "weight: 50", "weight: 20", "weight: 50").Replace(canary), 200,
			[]string{`"generation": 2`, `"result": "updated"`}},
		{"json and a second namespace", "POST", "/v1/apply",
			`{"apiVersion":"trellis.dev/v1alpha1","kind":"Route","metadata":{"name":"ratings","namespace":"shop"},"spec":{"service":"ratings","rules":[{"version":"v1","weight":100}]}}`,
			200, []string{`"namespace": "shop"`, `"result": "created"`}},

		// Every failed apply names the document, the resource and the field,
		// and stores nothing (checked by the list step after them).
		{"unknown field", "POST", "/v1/apply", strings.Replace(canary, "weight: 20", "weigth: 20", 1), 400,
			[]string{`document 1 (Route \"reviews\"): spec.rules[2].weigth: unknown field`}},
		{"second document invalid", "POST", "/v1/apply", simpleRoute("details", "default", "v1") + "---\n" + simpleRoute("Bad_Name", "default", "v1"), 400,
			[]string{`document 2 (Route \"Bad_Name\"): metadata.name`}},
		{"wrong type", "POST", "/v1/apply", strings.Replace(canary, "weight: 20", `weight: "20"`, 1), 400,
			[]string{`spec.rules[2].weight: must be an integer`}},
		{"unknown kind", "POST", "/v1/apply", "apiVersion: trellis.dev/v1alpha1\nkind: Canary\n", 400, []string{`unknown kind \"Canary\"`}},
		{"empty body", "POST", "/v1/apply", "", 400, []string{`no resources in input`}},
		{"yaml syntax", "POST", "/v1/apply", "a: [\n", 400, []string{`document 1`}},
		{"same resource twice", "POST", "/v1/apply", simpleRoute("details", "default", "v1") + "---\n" + simpleRoute("details", "default", "v2"), 400,
			[]string{`Route default/details appears more than once`}},
		{"too big", "POST", "/v1/apply", canary + "# " + strings.Repeat("x", MaxApplyBytes) + "\n", 413, []string{`over 1048576 bytes`}},

		{"list", "GET", "/v1/routes", "", 200, []string{`"name": "ratings"`, `"name": "reviews"`, `"generation": 2`}},
		{"list one namespace", "GET", "/v1/routes?namespace=shop", "", 200, []string{`"name": "ratings"`}},
		{"get", "GET", "/v1/routes/reviews", "", 200, []string{`"service": "reviews"`, `"gray"`, `"weight": 50`}},
		{"get other namespace", "GET", "/v1/routes/ratings?namespace=shop", "", 200, []string{`"namespace": "shop"`}},
		{"get missing", "GET", "/v1/routes/nope", "", 404, []string{`"error": "route \"nope\" not found"`}},
		{"get wrong namespace", "GET", "/v1/routes/reviews?namespace=shop", "", 404, []string{`route \"reviews\" not found in namespace \"shop\"`}},
		{"delete missing", "DELETE", "/v1/routes/nope", "", 404, []string{`route \"nope\" not found`}},
		{"delete", "DELETE", "/v1/routes/ratings?namespace=shop", "", 200,
			[]string{`"deleted": {`, `"kind": "Route"`, `"namespace": "shop"`, `"name": "ratings"`}},
		{"deleted", "GET", "/v1/routes/ratings?namespace=shop", "", 404, nil},

		{"no such endpoint", "GET", "/v1/widgets", "", 404, []string{`"error": "no such API endpoint: GET /v1/widgets"`}},
		{"wrong method", "PUT", "/v1/routes", "", 405, []string{`"error": "method PUT not allowed on /v1/routes"`}},
		{"delete missing instance", "DELETE", "/v1/instances/nobody", "", 404, []string{`instance \"nobody\" not found`}},
		{"missing service", "GET", "/v1/services/nothing", "", 404, []string{`service \"nothing\" not found`}},
	}
	for _, st := range steps {
		a := call(t, s, st.method, st.path, st.body)
		if a.status != st.status {
			t.Errorf("%s: %s %s = %d, want %d; body %s", st.name, st.method, st.path, a.status, st.status, a.body)
			continue
		}
		for _, want := range st.contains {
			if !strings.Contains(a.body, want) {
				t.Errorf("%s: body %s does not contain %s", st.name, a.body, want)
			}
		}
		if st.path != "/healthz" && a.header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: Content-Type %q", st.name, a.header.Get("Content-Type"))
		}
		if a.status >= 400 {
			var e struct{ Error string }
			if json.Unmarshal([]byte(a.body), &e); e.Error == "" {
				t.Errorf("%s: error answer without an error message: %s", st.name, a.body)
			}
		}
	}

	// None of the failed applies stored anything: only reviews is left,
	// still at generation 2.
	routes := decode[struct{ Items []api.Route }](t, call(t, s, "GET", "/v1/routes", ""), 200).Items
	if len(routes) != 1 || routes[0].Metadata.Name != "reviews" || routes[0].Metadata.Generation != 2 {
		t.Errorf("routes after the failed applies: %+v", routes)
	}
	if a := call(t, s, "PUT", "/v1/routes", ""); a.header.Get("Allow") == "" {
		t.Error("405 without an Allow header")
	}
}

func TestApplyAnswerShape(t *testing.T) {
	s := sharedServer(t)
	got := decode[struct{ Applied []store.ApplyResult }](t,
		call(t, s, "POST", "/v1/apply", simpleRoute("a", "default", "v1")+"---\n"+simpleRoute("b", "x", "v2")), http.StatusOK)
	want := []store.ApplyResult{
		{Kind: "Route", Namespace: "default", Name: "a", Generation: 1, Result: "created"},
		{Kind: "Route", Namespace: "x", Name: "b", Generation: 1, Result: "created"},
	}
	if len(got.Applied) != 2 || got.Applied[0] != want[0] || got.Applied[1] != want[1] {
		t.Errorf("applied = %+v, want %+v", got.Applied, want)
	}
}
