package model

import (
	"fmt"
	"sort"
	"strings"
)

// Resource kinds named in errors.
const (
	KindListener    = "listener"
	KindRouteConfig = "route config"
	KindCluster     = "cluster"
	KindEndpoints   = "cluster load assignment"
)

// ResourceError says why one xDS resource cannot be converted. Its text is
// what the proxy sends back as the NACK's error_detail, so it names the
// resource, the field path inside it, and the reason, e.g.
//
//	route config "mesh": virtual_hosts[1].routes[0].match.headers[0].string_match.safe_regex: invalid regex "(": missing closing )
type ResourceError struct {
	Kind   string // KindListener, KindRouteConfig, KindCluster or KindEndpoints
	Name   string // resource name; empty if the resource has none
	Field  string // path of the offending field in the resource; empty for the resource itself
	Reason string
}

func (e *ResourceError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %q: ", e.Kind, e.Name)
	if e.Field != "" {
		b.WriteString(e.Field)
		b.WriteString(": ")
	}
	b.WriteString(e.Reason)
	return b.String()
}

// IncompleteError says that resources are valid but refer to RDS or EDS
// resources that have not arrived (yet). It is not a reason to NACK: an xDS
// client waits for the missing resources and builds again.
type IncompleteError struct {
	RouteConfigs []string // RouteConfiguration names listeners refer to
	Endpoints    []string // ClusterLoadAssignment names EDS clusters refer to
}

func (e *IncompleteError) Error() string {
	var parts []string
	if len(e.RouteConfigs) > 0 {
		parts = append(parts, "route configs "+strings.Join(e.RouteConfigs, ", "))
	}
	if len(e.Endpoints) > 0 {
		parts = append(parts, "cluster load assignments "+strings.Join(e.Endpoints, ", "))
	}
	return "incomplete snapshot: missing " + strings.Join(parts, "; ")
}

// Missing lists every missing resource name, route configs first.
func (e *IncompleteError) Missing() []string {
	return append(append([]string(nil), e.RouteConfigs...), e.Endpoints...)
}

func sortedKeys(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// fieldError is an error at a field path inside the resource being
// converted; the Convert functions wrap it into a ResourceError.
type fieldError struct {
	field  string
	reason string
}

func (e *fieldError) Error() string { return e.field + ": " + e.reason }

func errAt(field, format string, args ...any) error {
	return &fieldError{field: field, reason: fmt.Sprintf(format, args...)}
}

// resourceErr turns an error from a converter into a ResourceError.
func resourceErr(kind, name string, err error) error {
	if fe, ok := err.(*fieldError); ok {
		return &ResourceError{Kind: kind, Name: name, Field: fe.field, Reason: fe.reason}
	}
	return &ResourceError{Kind: kind, Name: name, Reason: err.Error()}
}

// join builds a field path: join("a", "b[0]") is "a.b[0]"; an empty part
// is left out.
func join(parts ...string) string {
	var b strings.Builder
	for _, p := range parts {
		if p == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
	}
	return b.String()
}

func index(field string, i int) string { return fmt.Sprintf("%s[%d]", field, i) }
