package model

import (
	"fmt"
	"sync"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// HTTPFilter is one http_filter of a listener's HttpConnectionManager,
// converted: the filter's Envoy name and its checked configuration, whose
// type the filter's own package defines. Package filter builds the chain
// from these, in order.
type HTTPFilter struct {
	Name   string `json:"name"`
	Config any    `json:"config,omitempty"`
}

// HTTPFilterType is one kind of http filter the proxy implements: its
// Envoy name, the type URL of its typed_config, and the converter that
// checks that config (an error names what is wrong; the listener is then
// NACKed). Terminal filters (the router) must come last.
//
// Filter packages register theirs through package filter (filter.Register),
// so that this package, which every part of the proxy imports, imports
// none of them.
type HTTPFilterType struct {
	Name     string
	TypeURL  string
	Terminal bool
	Convert  func(*anypb.Any) (any, error)
}

var httpFilterTypes struct {
	sync.RWMutex
	byName, byURL map[string]HTTPFilterType
}

// RegisterHTTPFilterType makes t known to ConvertListener. Registering a
// name or type URL twice panics: it is a programming error.
func RegisterHTTPFilterType(t HTTPFilterType) {
	httpFilterTypes.Lock()
	defer httpFilterTypes.Unlock()
	if httpFilterTypes.byName == nil {
		httpFilterTypes.byName, httpFilterTypes.byURL = map[string]HTTPFilterType{}, map[string]HTTPFilterType{}
	}
	if _, dup := httpFilterTypes.byName[t.Name]; dup {
		panic(fmt.Sprintf("model: http filter %q registered twice", t.Name))
	}
	if _, dup := httpFilterTypes.byURL[t.TypeURL]; dup {
		panic(fmt.Sprintf("model: http filter type %q registered twice", t.TypeURL))
	}
	httpFilterTypes.byName[t.Name], httpFilterTypes.byURL[t.TypeURL] = t, t
}

// lookupHTTPFilter finds f's type: by its typed_config's type URL, as
// Envoy does, or by name when it has none.
func lookupHTTPFilter(f *hcmv3.HttpFilter) (HTTPFilterType, bool) {
	httpFilterTypes.RLock()
	defer httpFilterTypes.RUnlock()
	if tc := f.GetTypedConfig(); tc != nil {
		t, ok := httpFilterTypes.byURL[tc.GetTypeUrl()]
		return t, ok
	}
	if f.GetConfigDiscovery() != nil {
		return HTTPFilterType{}, false // ECDS: not supported
	}
	t, ok := httpFilterTypes.byName[f.GetName()]
	return t, ok
}

// convertHTTPFilters converts http_filters in order. A filter the proxy
// does not implement is skipped when marked optional or disabled (as Envoy
// skips an optional one it does not know) and rejected otherwise; the
// chain must end with exactly one terminal filter (the router).
func convertHTTPFilters(at string, filters []*hcmv3.HttpFilter) ([]HTTPFilter, error) {
	var out []HTTPFilter
	terminal := false
	for i, f := range filters {
		fat := index(at, i)
		if f.GetDisabled() {
			// Disabled by default: only a route's per-filter config could
			// enable it, which the proxy does not read yet.
			continue
		}
		t, ok := lookupHTTPFilter(f)
		if !ok {
			if f.GetIsOptional() {
				continue
			}
			return nil, errAt(fat, "unsupported http filter %q", filterID(f))
		}
		if terminal {
			return nil, errAt(fat, "filter %q comes after the terminal filter %s; it would never run", filterID(f), out[len(out)-1].Name)
		}
		var cfg any
		if t.Convert != nil {
			var err error
			if cfg, err = t.Convert(f.GetTypedConfig()); err != nil {
				return nil, errAt(join(fat, "typed_config"), "%v", err)
			}
		}
		out = append(out, HTTPFilter{Name: t.Name, Config: cfg})
		terminal = t.Terminal
	}
	if !terminal {
		return nil, errAt(at, "no terminal filter (%s) at the end", filterRouter)
	}
	return out, nil
}
