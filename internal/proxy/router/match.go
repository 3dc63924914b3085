package router

import (
	"net/textproto"
	"net/url"
	"regexp"
	"regexp/syntax"
	"strings"

	"trellis.dev/trellis/internal/proxy/model"
)

// Matches reports whether every set part of m holds for req.
func Matches(m *model.Match, req Request) bool {
	if !pathMatches(&m.Path, req.Path) {
		return false
	}
	for i := range m.Headers {
		if !headerMatches(&m.Headers[i], req) {
			return false
		}
	}
	if len(m.QueryParams) > 0 {
		q, _ := url.ParseQuery(req.RawQuery) // keeps the pairs it could parse
		for i := range m.QueryParams {
			sm := &m.QueryParams[i]
			vs, ok := q[sm.Name]
			if !ok {
				return false
			}
			// Envoy matches the first value of a repeated parameter.
			if !stringMatches(sm, vs[0]) {
				return false
			}
		}
	}
	return true
}

func pathMatches(pm *model.PathMatch, path string) bool {
	switch pm.Kind {
	case "": // no path condition
		return true
	case model.Exact:
		return path == pm.Value
	case model.Prefix:
		return strings.HasPrefix(path, pm.Value)
	case model.Regex:
		return regexMatches(pm.Regex, pm.Value, path)
	default:
		return false // an unknown kind never matches: fail closed
	}
}

// headerMatches checks one header condition. A header sent several times is
// matched as its values joined by "," (as Envoy does). The pseudo-headers
// ":authority", ":method" and ":path" name what HTTP/2 calls them.
func headerMatches(sm *model.StringMatch, req Request) bool {
	var value string
	var present bool
	switch strings.ToLower(sm.Name) {
	case ":authority", "host":
		value, present = req.Host, req.Host != ""
	case ":method":
		value, present = req.Method, true
	case ":path":
		value, present = req.Path, true
		if req.RawQuery != "" {
			value += "?" + req.RawQuery
		}
	default:
		key := sm.HeaderKey
		if key == "" { // a model not made by the converter
			key = textproto.CanonicalMIMEHeaderKey(sm.Name)
		}
		vs := req.Header[key]
		present = len(vs) > 0
		if len(vs) == 1 {
			value = vs[0]
		} else if present {
			value = strings.Join(vs, ",")
		}
	}
	if !present {
		return false
	}
	return stringMatches(sm, value)
}

func stringMatches(sm *model.StringMatch, v string) bool {
	switch sm.Kind {
	case model.Present:
		return true
	case model.Exact:
		return v == sm.Value
	case model.Prefix:
		return strings.HasPrefix(v, sm.Value)
	case model.Regex:
		return regexMatches(sm.Regex, sm.Value, v)
	default:
		return false
	}
}

// regexMatches is a whole-value match. The converter compiles the regexp
// anchored (^(?:…)$, per model.PathMatch); when it did not compile one, the
// expression is compiled here, anchored — slow, but correct. As in the
// converter, an expression that is empty or does not parse alone never
// matches: wrapped, an unbalanced one such as "a)|(b" would compile into
// ^(?:a)|(b)$, which matches "ax" and "xb".
func regexMatches(re *regexp.Regexp, expr, v string) bool {
	if re == nil {
		if expr == "" {
			return false
		}
		if _, err := syntax.Parse(expr, syntax.Perl); err != nil {
			return false
		}
		var err error
		if re, err = regexp.Compile(`^(?:` + expr + `)$`); err != nil {
			return false
		}
	}
	return re.MatchString(v)
}
