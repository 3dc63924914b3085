package control

import (
	"cmp"
	"slices"
	"strings"

	"trellis.dev/trellis/internal/api"
)

// summarize lists every service that has an instance or a route, with the
// instance count of each version.
//
// Versions a route sends traffic to are listed even with no instance (count
// 0): "v2: 0" next to a 20% weight is the first thing to see when a canary
// answers no_healthy_upstream. Route names the service's routes,
// "name" in the default namespace and "namespace/name" elsewhere, comma-
// separated if there are several.
func summarize(routes []api.Route, instances []api.Instance) []api.ServiceSummary {
	byName := map[string]*api.ServiceSummary{}
	get := func(name string) *api.ServiceSummary {
		s := byName[name]
		if s == nil {
			s = &api.ServiceSummary{Name: name, Versions: map[string]int{}}
			byName[name] = s
		}
		return s
	}
	for _, inst := range instances {
		get(inst.Service).Versions[inst.Version]++
	}
	routeNames := map[string][]string{}
	for _, rt := range routes {
		s := get(rt.Spec.Service)
		for _, rule := range rt.Spec.Rules {
			if _, ok := s.Versions[rule.Version]; !ok {
				s.Versions[rule.Version] = 0
			}
		}
		ref := rt.Metadata.Name
		if ns := rt.Metadata.Namespace; ns != "" && ns != api.DefaultNamespace {
			ref = ns + "/" + ref
		}
		routeNames[s.Name] = append(routeNames[s.Name], ref)
	}

	out := make([]api.ServiceSummary, 0, len(byName))
	for name, s := range byName {
		refs := routeNames[name]
		slices.Sort(refs)
		s.Route = strings.Join(refs, ",")
		out = append(out, *s)
	}
	slices.SortFunc(out, func(a, b api.ServiceSummary) int { return cmp.Compare(a.Name, b.Name) })
	return out
}
