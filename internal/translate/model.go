package translate

import (
	"cmp"
	"fmt"
	"slices"

	"trellis.dev/trellis/internal/api"
)

// model is the input regrouped per service, the shape every builder reads.
type model struct {
	services []*service // sorted by name
	warnings []string
}

// service is one mesh service: its instances, the versions that need a
// cluster, and the Route that directs its traffic (nil when none).
type service struct {
	name      string
	instances []api.Instance // sorted by ID
	versions  []string       // sorted; versions with instances ∪ versions the Route names
	route     *api.Route
	// policy is the TrafficPolicy without version (nil when none);
	// versionPolicies those naming a version, which win for its cluster.
	policy          *api.TrafficPolicy
	versionPolicies map[string]*api.TrafficPolicy
}

// lbFor is the load balancer of the service's cluster for version ("" for
// the cluster of every instance): the version's own policy, else the
// service's, else nil (round robin).
func (s *service) lbFor(version string) *api.LoadBalancer {
	if p := s.policyFor(version); p != nil {
		return p.Spec.LoadBalancer
	}
	return nil
}

// outlierFor is the outlier detection of the service's cluster for version,
// from the same policy as lbFor (nil: none).
func (s *service) outlierFor(version string) *api.OutlierDetection {
	if p := s.policyFor(version); p != nil {
		return p.Spec.OutlierDetection
	}
	return nil
}

// poolFor is the connection pool (circuit breaker limits) of the service's
// cluster for version, from the same policy as lbFor (nil: none).
func (s *service) poolFor(version string) *api.ConnectionPool {
	if p := s.policyFor(version); p != nil {
		return p.Spec.ConnectionPool
	}
	return nil
}

// policyFor is the TrafficPolicy of the service's cluster for version: the
// version's own, else the service's, else nil.
func (s *service) policyFor(version string) *api.TrafficPolicy {
	if p := s.versionPolicies[version]; version != "" && p != nil {
		return p
	}
	return s.policy
}

func buildModel(in Input) *model {
	byName := map[string]*service{}
	get := func(name string) *service {
		s, ok := byName[name]
		if !ok {
			s = &service{name: name}
			byName[name] = s
		}
		return s
	}

	var warnings []string
	for _, inst := range in.Instances {
		// The registry validates what it registers, but etcd can be written
		// around it: an instance a proxy could not use is left out here so
		// that no proxy is sent an endpoint it would have to drop.
		if err := api.ValidateInstance(inst); err != nil {
			warnings = append(warnings, fmt.Sprintf("instance %q of service %q left out: %v", inst.ID, inst.Service, err))
			continue
		}
		s := get(inst.Service)
		s.instances = append(s.instances, inst)
	}
	slices.Sort(warnings) // whatever order the registry listed them in

	// The Route with the smaller metadata.name wins, whatever the input order,
	// so that the output does not depend on how the store listed them.
	routes := slices.Clone(in.Routes)
	slices.SortStableFunc(routes, func(a, b api.Route) int { return cmp.Compare(a.Metadata.Name, b.Metadata.Name) })
	for i := range routes {
		r := &routes[i]
		s := get(r.Spec.Service)
		if s.route != nil {
			warnings = append(warnings, fmt.Sprintf("routes %q and %q both direct service %q; using %q",
				s.route.Metadata.Name, r.Metadata.Name, s.name, s.route.Metadata.Name))
			continue
		}
		s.route = r
	}

	// Traffic policies: as with Routes, the smaller metadata.name wins for
	// one service and version.
	policies := slices.Clone(in.TrafficPolicies)
	slices.SortStableFunc(policies, func(a, b api.TrafficPolicy) int { return cmp.Compare(a.Metadata.Name, b.Metadata.Name) })
	for i := range policies {
		p := &policies[i]
		s := get(p.Spec.Service)
		held, what := s.policy, fmt.Sprintf("service %q", s.name)
		if v := p.Spec.Version; v != "" {
			held, what = s.versionPolicies[v], what+fmt.Sprintf(" version %q", v)
		}
		if held != nil {
			warnings = append(warnings, fmt.Sprintf("traffic policies %q and %q both apply to %s; using %q",
				held.Metadata.Name, p.Metadata.Name, what, held.Metadata.Name))
			continue
		}
		if v := p.Spec.Version; v != "" {
			if s.versionPolicies == nil {
				s.versionPolicies = map[string]*api.TrafficPolicy{}
			}
			s.versionPolicies[v] = p
		} else {
			s.policy = p
		}
	}

	m := &model{warnings: warnings}
	for _, s := range byName {
		slices.SortFunc(s.instances, func(a, b api.Instance) int { return cmp.Compare(a.ID, b.ID) })
		s.versions = serviceVersions(s)
		m.services = append(m.services, s)
	}
	slices.SortFunc(m.services, func(a, b *service) int { return cmp.Compare(a.name, b.name) })
	return m
}

// serviceVersions lists the versions of s that get their own cluster: every
// version an instance runs and every version its Route names, so a Route
// may point at a version before its first instance starts.
func serviceVersions(s *service) []string {
	set := map[string]bool{}
	for _, inst := range s.instances {
		if inst.Version != "" {
			set[inst.Version] = true
		}
	}
	if s.route != nil {
		for _, rule := range s.route.Spec.Rules {
			if rule.Version != "" {
				set[rule.Version] = true
			}
		}
	}
	versions := make([]string, 0, len(set))
	for v := range set {
		versions = append(versions, v)
	}
	slices.Sort(versions)
	return versions
}
