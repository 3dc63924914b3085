package control

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/translate"
)

// Size limits on what an apply may make of the mesh's xDS configuration.
//
// Every proxy's xDS client refuses a response over 4 MiB (gRPC's default
// receive limit), and every proxy receives the same RouteConfiguration, so a
// config over it takes every stream down at once. An apply is refused when
// its translation would cross a limit set well below that.
const (
	// DefaultMaxRouteConfigBytes is the default for
	// Config.MaxRouteConfigBytes: half of what a proxy accepts, leaving
	// room for growth without an apply (more services registering).
	DefaultMaxRouteConfigBytes = 2 << 20
	// MaxRouteBytes is the largest one Route may be, as stored JSON.
	MaxRouteBytes = 256 << 10
)

// applySizer checks the size of the xDS configuration an apply would make.
type applySizer struct {
	// read returns the current input of the translator (stored Routes,
	// TrafficPolicies and registered instances), as the aggregator reads it.
	read  func(context.Context) (translate.Input, error)
	limit int // bytes, for the route configuration and each xDS type's total
}

// check returns a refusedError (400) when one of rs is over
// MaxRouteBytes or when storing rs would make the route configuration, or
// the total of any other xDS type, larger than the limit. A config already
// over the limit (stored before the limit, or grown by registrations) does
// not block an apply that does not make it larger, so it can be repaired.
func (z *applySizer) check(ctx context.Context, rs []api.Resource) error {
	var applied []api.Route
	var policies []api.TrafficPolicy // make hash policies on routes: they count too
	for _, r := range rs {
		if p, ok := r.(*api.TrafficPolicy); ok {
			policies = append(policies, *p)
			continue
		}
		rt, ok := r.(*api.Route)
		if !ok {
			continue
		}
		b, err := json.Marshal(rt)
		if err != nil {
			return fmt.Errorf("encoding route %s/%s: %w", rt.Metadata.Namespace, rt.Metadata.Name, err)
		}
		if len(b) > MaxRouteBytes {
			return refused("route %s/%s is %s, over the limit of %s for one Route",
				rt.Metadata.Namespace, rt.Metadata.Name, sizeString(len(b)), sizeString(MaxRouteBytes))
		}
		applied = append(applied, *rt)
	}
	if len(applied)+len(policies) == 0 {
		return nil
	}

	cur, err := z.read(ctx)
	if err != nil {
		return fmt.Errorf("reading the current config to check the apply's size: %w", err)
	}
	next := cur
	next.Routes = mergeRoutes(cur.Routes, applied)
	next.TrafficPolicies = mergeByName(cur.TrafficPolicies, policies, func(p api.TrafficPolicy) *api.Metadata { return &p.Metadata })
	nextOut, err := translate.Translate(next)
	if err != nil {
		return fmt.Errorf("translating the applied config: %w", err)
	}
	nextSizes := xdsSizes(nextOut)
	over := ""
	for _, part := range xdsParts {
		if nextSizes[part.name] > z.limit {
			over = part.name
			break
		}
	}
	if over == "" {
		return nil
	}
	curOut, err := translate.Translate(cur)
	if err != nil {
		return fmt.Errorf("translating the current config: %w", err)
	}
	curSizes := xdsSizes(curOut)
	for _, part := range xdsParts {
		if nextSizes[part.name] > z.limit && nextSizes[part.name] > curSizes[part.name] {
			return refused("%s would be %s (%d bytes), over the limit of %s (control --max-route-config-bytes)%s",
				part.what, sizeString(nextSizes[part.name]), nextSizes[part.name], sizeString(z.limit),
				contributions(nextOut, applied))
		}
	}
	return nil
}

// xdsParts are the sizes checked, in the order they are reported.
var xdsParts = []struct{ name, what string }{
	{"rds", "the route configuration"},
	{"cds", "the clusters (CDS) together"},
	{"eds", "the endpoints (EDS) together"},
	{"lds", "the listeners (LDS) together"},
}

// xdsSizes measures each RouteConfiguration (the largest counts: each is
// one resource a proxy receives whole) and each other type's total (a SotW
// response carries every resource of its type).
func xdsSizes(out *translate.Output) map[string]int {
	sizes := map[string]int{}
	for _, rc := range out.Routes {
		sizes["rds"] = max(sizes["rds"], proto.Size(rc))
	}
	for _, c := range out.Clusters {
		sizes["cds"] += proto.Size(c)
	}
	for _, e := range out.Endpoints {
		sizes["eds"] += proto.Size(e)
	}
	for _, l := range out.Listeners {
		sizes["lds"] += proto.Size(l)
	}
	return sizes
}

// contributions names what each applied Route makes of the route
// configuration: "; route default/big makes virtual host "big" 1.2 MiB".
func contributions(out *translate.Output, applied []api.Route) string {
	var b strings.Builder
	for _, rt := range applied {
		for _, rc := range out.Routes {
			for _, vh := range rc.VirtualHosts {
				if vh.Name == rt.Spec.Service {
					fmt.Fprintf(&b, "; route %s/%s makes virtual host %q %s", rt.Metadata.Namespace, rt.Metadata.Name, vh.Name, sizeString(proto.Size(vh)))
				}
			}
		}
	}
	return b.String()
}

// mergeRoutes is stored with applied put in: same namespace and name
// replaces.
func mergeRoutes(stored, applied []api.Route) []api.Route {
	return mergeByName(stored, applied, func(r api.Route) *api.Metadata { return &r.Metadata })
}

// mergeByName is stored with applied put in: same namespace and name
// replaces.
func mergeByName[T any](stored, applied []T, meta func(T) *api.Metadata) []T {
	key := func(r T) string { m := meta(r); return m.Namespace + "/" + m.Name }
	replaced := make(map[string]bool, len(applied))
	for _, r := range applied {
		replaced[key(r)] = true
	}
	out := make([]T, 0, len(stored)+len(applied))
	for _, r := range stored {
		if !replaced[key(r)] {
			out = append(out, r)
		}
	}
	return append(out, applied...)
}

// sizeString writes n bytes for people: "512 bytes", "300 KiB", "5.1 MiB".
func sizeString(n int) string {
	unit := func(v float64, u string) string {
		return strings.TrimSuffix(strconv.FormatFloat(v, 'f', 1, 64), ".0") + " " + u
	}
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d bytes", n)
	case n < 1<<20:
		return unit(float64(n)/(1<<10), "KiB")
	default:
		return unit(float64(n)/(1<<20), "MiB")
	}
}
