// Package router picks the route and the cluster for a request from a
// model.RouteTable. It is pure: no I/O, no state, so it is table-tested.
//
// The rules are Envoy's, so a config that works for an Envoy sidecar works
// here: virtual host by domain (exact, then longest "*.suffix", then longest
// "prefix.*", then "*"), then the first route whose match holds, then a
// weighted pick among the route's clusters.
package router

import (
	"math/rand/v2"
	"net/http"
	"strings"

	"trellis.dev/trellis/internal/proxy/mesherr"
	"trellis.dev/trellis/internal/proxy/model"
)

// Request is the part of an HTTP request routing looks at.
type Request struct {
	Host     string // Host or :authority; a ":port" is ignored
	Method   string
	Path     string // path as sent, without the query (Envoy matches :path as sent)
	RawQuery string
	Header   http.Header
}

// FromHTTP takes what routing needs from r.
func FromHTTP(r *http.Request) Request {
	return Request{
		Host:     r.Host,
		Method:   r.Method,
		Path:     r.URL.EscapedPath(),
		RawQuery: r.URL.RawQuery,
		Header:   r.Header,
	}
}

// Find returns the virtual host and the route of t that req takes, or a
// *mesherr.Error with code no_route.
func Find(t *model.RouteTable, req Request) (*model.VirtualHost, *model.Route, error) {
	host := NormalizeHost(req.Host)
	if t == nil {
		return nil, nil, mesherr.New(mesherr.NoRoute, "no route table to route host %q with", host)
	}
	var vh *model.VirtualHost
	if t.Domains != nil {
		vh = t.Domains.Lookup(host)
	} else {
		vh = FindVirtualHost(t.VirtualHosts, host)
	}
	if vh == nil {
		return nil, nil, mesherr.New(mesherr.NoRoute, "host %q matches no service", host)
	}
	for _, rt := range vh.Routes {
		if Matches(&rt.Match, req) {
			return vh, rt, nil
		}
	}
	return vh, nil, mesherr.New(mesherr.NoRoute, "no route of %q matches %s %s", vh.Name, req.Method, req.Path)
}

// Pick returns the cluster of rt for a request, weighted, with a fast
// per-thread random source. ok is false when rt has no cluster.
func Pick(rt *model.Route) (cluster string, ok bool) {
	if len(rt.Clusters) == 1 {
		return rt.Clusters[0].Name, true
	}
	total := totalWeight(rt)
	if total == 0 {
		return PickCluster(rt, 0)
	}
	return PickCluster(rt, rand.Uint32N(total))
}

// PickCluster returns the cluster of rt that the number n in
// [0, TotalWeight) falls on: clusters own consecutive ranges as wide as
// their weights, in order.
func PickCluster(rt *model.Route, n uint32) (cluster string, ok bool) {
	if len(rt.Clusters) == 0 {
		return "", false
	}
	if totalWeight(rt) == 0 {
		// No weights at all: treat as unweighted, the first one wins.
		return rt.Clusters[0].Name, true
	}
	last := ""
	for _, c := range rt.Clusters {
		if c.Weight == 0 {
			continue
		}
		if n < c.Weight {
			return c.Name, true
		}
		n -= c.Weight
		last = c.Name
	}
	// TotalWeight larger than the sum of weights: the rest goes to the
	// last weighted cluster rather than nowhere.
	return last, true
}

// totalWeight is TotalWeight, or the sum of the weights when it is unset.
func totalWeight(rt *model.Route) uint32 {
	if rt.TotalWeight > 0 {
		return rt.TotalWeight
	}
	var sum uint32
	for _, c := range rt.Clusters {
		sum += c.Weight
	}
	return sum
}

// NormalizeHost removes a ":port" and lower-cases A-Z, as Envoy does: host
// names compare ASCII-case-insensitively, and other bytes stay as they are
// (strings.ToLower would turn the Kelvin sign into "k" and every invalid
// UTF-8 byte into U+FFFD, so that different hosts found one domain). An
// IPv6 literal keeps its brackets ("[::1]:80" → "[::1]").
func NormalizeHost(host string) string {
	if i := strings.LastIndexByte(host, ':'); i >= 0 {
		// A colon after the closing bracket, or the only colon, starts a port.
		if strings.HasPrefix(host, "[") {
			if j := strings.LastIndexByte(host, ']'); j >= 0 && j < i {
				host = host[:i]
			}
		} else if strings.IndexByte(host, ':') == i {
			host = host[:i]
		}
	}
	return model.LowerASCII(host) // no allocation when already lower-case
}
