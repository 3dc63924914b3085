package control

import (
	"reflect"
	"testing"

	"trellis.dev/trellis/internal/api"
)

func TestSummarize(t *testing.T) {
	w := func(n int) *int { return &n }
	routes := []api.Route{
		{Metadata: api.Metadata{Name: "reviews", Namespace: "default"}, Spec: api.RouteSpec{Service: "reviews",
			Rules: []api.RouteRule{{Version: "v3", Matches: []api.RouteMatch{{}}}, {Version: "v1", Weight: w(80)}, {Version: "v2", Weight: w(20)}}}},
		{Metadata: api.Metadata{Name: "reviews-prod", Namespace: "prod"}, Spec: api.RouteSpec{Service: "reviews",
			Rules: []api.RouteRule{{Version: "v1", Weight: w(100)}}}},
		{Metadata: api.Metadata{Name: "ghost", Namespace: "default"}, Spec: api.RouteSpec{Service: "ghost",
			Rules: []api.RouteRule{{Version: "v1", Weight: w(100)}}}},
	}
	instances := []api.Instance{
		{ID: "a", Service: "reviews", Version: "v1"},
		{ID: "b", Service: "reviews", Version: "v1"},
		{ID: "c", Service: "reviews", Version: "v2"},
		{ID: "d", Service: "details", Version: "v1"},
	}
	want := []api.ServiceSummary{
		{Name: "details", Versions: map[string]int{"v1": 1}},
		{Name: "ghost", Versions: map[string]int{"v1": 0}, Route: "ghost"},
		{Name: "reviews", Versions: map[string]int{"v1": 2, "v2": 1, "v3": 0}, Route: "prod/reviews-prod,reviews"},
	}
	if got := summarize(routes, instances); !reflect.DeepEqual(got, want) {
		t.Errorf("summarize =\n%+v\nwant\n%+v", got, want)
	}
	if got := summarize(nil, nil); got == nil || len(got) != 0 {
		t.Errorf("summarize of nothing = %#v, want an empty non-nil list", got)
	}
}
