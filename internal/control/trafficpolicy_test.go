package control

import (
	"context"
	"strings"
	"testing"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/translate"
)

const hashPolicy = `apiVersion: trellis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: reviews}
spec:
  service: reviews
  loadBalancer:
    consistentHash: {header: x-user}
`

// TrafficPolicies are applied, listed, read and deleted like Routes.
func TestTrafficPolicyAPI(t *testing.T) {
	s := sharedServer(t)
	runGuardCases(t, s.HTTPAddr(), []guardCase{
		{"apply", req{method: "POST", path: "/v1/apply", body: hashPolicy, header: yamlCT},
			200, []string{`"kind": "TrafficPolicy"`, `"result": "created"`}, nil},
		{"invalid", req{method: "POST", path: "/v1/apply", body: strings.Replace(hashPolicy, "header: x-user", "header: x-user, sourceIP: true", 1), header: yamlCT},
			400, []string{`document 1 (TrafficPolicy \"reviews\"): spec.loadBalancer.consistentHash: set exactly one of header, cookie, sourceIP (got 2)`}, nil},
		{"list", req{method: "GET", path: "/v1/trafficpolicies"}, 200, []string{`"header": "x-user"`}, nil},
		{"get", req{method: "GET", path: "/v1/trafficpolicies/reviews"}, 200, []string{`"service": "reviews"`}, nil},
		{"delete", req{method: "DELETE", path: "/v1/trafficpolicies/reviews"}, 200, []string{`"kind": "TrafficPolicy"`}, nil},
		{"gone", req{method: "GET", path: "/v1/trafficpolicies/reviews"}, 404, []string{`trafficpolicy \"reviews\" not found`}, nil},
	})
}

// The size check translates an apply of TrafficPolicies alone too, with
// the stored ones merged in (a hash policy makes every route larger).
func TestApplySizerTranslatesPolicies(t *testing.T) {
	var seen *translate.Input
	z := &applySizer{limit: 1 << 20, read: func(context.Context) (translate.Input, error) {
		in := translate.Input{TrafficPolicies: []api.TrafficPolicy{{Metadata: api.Metadata{Name: "old", Namespace: "default"}}}}
		seen = &in
		return in, nil
	}}
	rs, err := api.Decode([]byte(hashPolicy))
	if err != nil {
		t.Fatal(err)
	}
	if err := z.check(t.Context(), rs); err != nil {
		t.Fatal(err)
	}
	if seen == nil {
		t.Fatal("an apply of a TrafficPolicy alone was not checked")
	}
	got := mergeByName(seen.TrafficPolicies, []api.TrafficPolicy{*rs[0].(*api.TrafficPolicy)}, func(p api.TrafficPolicy) *api.Metadata { return &p.Metadata })
	if len(got) != 2 || got[1].Metadata.Name != "reviews" {
		t.Fatalf("merged %+v", got)
	}
}
