package model

import (
	"errors"
	"net/textproto"
	"regexp"
	"regexp/syntax"
	"runtime"
	"sync"
	"weak"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
)

// convertMatch converts a RouteMatch. A match without a path specifier is
// prefix "/" (everything).
func convertMatch(at string, m *routev3.RouteMatch) (Match, error) {
	out := Match{Path: PathMatch{Kind: Prefix, Value: "/"}}
	if m == nil {
		return out, nil
	}
	// Not allowed, among others: runtime_fraction, cookies, grpc,
	// tls_context, dynamic_metadata, filter_state, and the path specifiers
	// path_separated_prefix, path_match_policy, connect_matcher.
	if err := onlyFields(at, m, "prefix", "path", "safe_regex", "case_sensitive", "headers", "query_parameters"); err != nil {
		return out, err
	}
	if cs := m.GetCaseSensitive(); cs != nil && !cs.GetValue() {
		return out, errAt(join(at, "case_sensitive"), "case-insensitive path matching is not supported")
	}
	switch p := m.GetPathSpecifier().(type) {
	case nil:
	case *routev3.RouteMatch_Prefix:
		out.Path = PathMatch{Kind: Prefix, Value: p.Prefix}
	case *routev3.RouteMatch_Path:
		out.Path = PathMatch{Kind: Exact, Value: p.Path}
	case *routev3.RouteMatch_SafeRegex:
		re, err := convertRegex(join(at, "safe_regex"), p.SafeRegex)
		if err != nil {
			return out, err
		}
		out.Path = PathMatch{Kind: Regex, Value: p.SafeRegex.GetRegex(), Regex: re}
	}
	for i, h := range m.GetHeaders() {
		sm, err := convertHeaderMatcher(index(join(at, "headers"), i), h)
		if err != nil {
			return out, err
		}
		out.Headers = append(out.Headers, sm)
	}
	for i, q := range m.GetQueryParameters() {
		sm, err := convertQueryMatcher(index(join(at, "query_parameters"), i), q)
		if err != nil {
			return out, err
		}
		out.QueryParams = append(out.QueryParams, sm)
	}
	return out, nil
}

// convertHeaderMatcher accepts string_match and present_match: true. The
// deprecated exact/prefix/safe_regex/suffix/contains_match fields, range
// and invert_match are rejected; the model cannot say "absent" or "not".
func convertHeaderMatcher(at string, h *routev3.HeaderMatcher) (StringMatch, error) {
	if err := onlyFields(at, h, "name", "string_match", "present_match"); err != nil {
		return StringMatch{}, err
	}
	if h.GetName() == "" {
		return StringMatch{}, errAt(join(at, "name"), "must not be empty")
	}
	var sm StringMatch
	var err error
	switch spec := h.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_StringMatch:
		sm, err = convertStringMatcher(join(at, "string_match"), h.GetName(), spec.StringMatch)
	case *routev3.HeaderMatcher_PresentMatch:
		sm, err = presentMatch(join(at, "present_match"), h.GetName(), spec.PresentMatch)
	default:
		return StringMatch{}, errAt(at, "needs string_match or present_match")
	}
	sm.HeaderKey = textproto.CanonicalMIMEHeaderKey(sm.Name)
	return sm, err
}

func convertQueryMatcher(at string, q *routev3.QueryParameterMatcher) (StringMatch, error) {
	if err := onlyFields(at, q, "name", "string_match", "present_match"); err != nil {
		return StringMatch{}, err
	}
	if q.GetName() == "" {
		return StringMatch{}, errAt(join(at, "name"), "must not be empty")
	}
	switch spec := q.GetQueryParameterMatchSpecifier().(type) {
	case *routev3.QueryParameterMatcher_StringMatch:
		return convertStringMatcher(join(at, "string_match"), q.GetName(), spec.StringMatch)
	case *routev3.QueryParameterMatcher_PresentMatch:
		return presentMatch(join(at, "present_match"), q.GetName(), spec.PresentMatch)
	default:
		return StringMatch{}, errAt(at, "needs string_match or present_match")
	}
}

func presentMatch(at, name string, present bool) (StringMatch, error) {
	if !present {
		return StringMatch{}, errAt(at, "false (match on absence) is not supported")
	}
	return StringMatch{Name: name, Kind: Present}, nil
}

// convertStringMatcher accepts exact, prefix and safe_regex, case-sensitive.
func convertStringMatcher(at, name string, m *matcherv3.StringMatcher) (StringMatch, error) {
	// Not allowed: suffix, contains, custom, ignore_case.
	if err := onlyFields(at, m, "exact", "prefix", "safe_regex"); err != nil {
		return StringMatch{}, err
	}
	switch p := m.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		return StringMatch{Name: name, Kind: Exact, Value: p.Exact}, nil
	case *matcherv3.StringMatcher_Prefix:
		return StringMatch{Name: name, Kind: Prefix, Value: p.Prefix}, nil
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := convertRegex(join(at, "safe_regex"), p.SafeRegex)
		if err != nil {
			return StringMatch{}, err
		}
		return StringMatch{Name: name, Kind: Regex, Value: p.SafeRegex.GetRegex(), Regex: re}, nil
	default:
		return StringMatch{}, errAt(at, "needs exact, prefix or safe_regex")
	}
}

// convertRegex compiles an RE2 regex that must match the whole value, as
// Envoy's safe_regex does.
func convertRegex(at string, m *matcherv3.RegexMatcher) (*regexp.Regexp, error) {
	// google_re2 only selects the engine (RE2, which Go's regexp is).
	if err := onlyFields(at, m, "regex", "google_re2"); err != nil {
		return nil, err
	}
	return compileWhole(at, m.GetRegex())
}

func compileWhole(at, expr string) (*regexp.Regexp, error) {
	if expr == "" {
		return nil, errAt(at, "empty regex")
	}
	// Parse the expression alone first: wrapping an unbalanced one such as
	// "a)|(b" in ^(?:…)$ would compile into a different regex.
	if _, err := syntax.Parse(expr, syntax.Perl); err != nil {
		return nil, errAt(at, "invalid regex %q: %s", expr, regexReason(err))
	}
	re, err := compileAnchored(expr)
	if err != nil {
		return nil, errAt(at, "invalid regex %q: %s", expr, regexReason(err))
	}
	return re, nil
}

// compiled holds every regexp in use by expression, weakly: a Route
// applied to many services repeats its expressions in every virtual host,
// and each config update converts them all again. A compiled regexp takes
// about 1.7 KB and is safe for concurrent use, so one per expression is
// shared by all matchers and by successive snapshots; once no snapshot
// uses it, it is collected and its entry removed.
var compiled sync.Map // expression → weak.Pointer[regexp.Regexp]

// compileAnchored compiles ^(?:expr)$, or returns the regexp already
// compiled for expr.
func compileAnchored(expr string) (*regexp.Regexp, error) {
	if wp, ok := compiled.Load(expr); ok {
		if re := wp.(weak.Pointer[regexp.Regexp]).Value(); re != nil {
			return re, nil
		}
	}
	re, err := regexp.Compile(`^(?:` + expr + `)$`)
	if err != nil {
		return nil, err
	}
	wp := weak.Make(re)
	for {
		prev, loaded := compiled.LoadOrStore(expr, wp)
		if !loaded {
			break
		}
		if other := prev.(weak.Pointer[regexp.Regexp]).Value(); other != nil {
			return other, nil // compiled meanwhile by another conversion
		}
		if compiled.CompareAndSwap(expr, prev, wp) { // replace a collected one
			break
		}
	}
	runtime.AddCleanup(re, func(e cacheEntry) { compiled.CompareAndDelete(e.expr, e.wp) }, cacheEntry{expr, wp})
	return re, nil
}

type cacheEntry struct {
	expr string
	wp   weak.Pointer[regexp.Regexp]
}

// regexReason is the bare reason ("missing closing )") without Go's
// "error parsing regexp:" prefix and the repeated expression.
func regexReason(err error) string {
	var se *syntax.Error
	if errors.As(err, &se) {
		return se.Code.String()
	}
	return err.Error()
}
