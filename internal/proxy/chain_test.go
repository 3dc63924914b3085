package proxy

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/filter"
	"trellis.dev/trellis/internal/proxy/filters/router"
	"trellis.dev/trellis/internal/proxy/mesherr"
	"trellis.dev/trellis/internal/proxy/model"
)

// stampFilter is a filter for these tests: it refuses a request carrying
// X-Block, and otherwise stamps the request on its way to the instance
// and the answer on its way back with what it saw of the route.
type stampFilter struct{}

func (stampFilter) Serve(r *filter.Request, next filter.Handler) {
	if r.HTTP.Header.Get("X-Block") != "" {
		r.Fail(mesherr.New(mesherr.AccessDenied, "blocked by the test filter"))
		return
	}
	r.HTTP.Header.Set("X-Stamp", "in")
	r.Response.OnHeader(func(status int, h http.Header) {
		// The router has picked: the upstream it chose is known.
		h.Set("X-Stamp-Saw", fmt.Sprintf("%s|%s %d", r.Service, r.Version, status))
	})
	next.Serve(r)
}

func init() {
	filter.Register(filter.Factory{Name: "trellis.test.stamp", TypeURL: "type.googleapis.com/trellis.test.Stamp",
		New: func(any, filter.Deps) filter.Filter { return stampFilter{} }})
}

// Every request, on the HTTP/1.1 fast path and on the general path (h2c,
// a chunked upload, inside a CONNECT tunnel), goes through the listener's
// http filters before the router; a filter that answers ends it there.
func TestChainRunsOnEveryPath(t *testing.T) {
	m := newMesh(t)
	snap := m.snapshot(to("reviews|v1", 100))
	snap.Listeners[meshxds.ListenerOutbound] = &model.Listener{Name: meshxds.ListenerOutbound, RouteTable: meshxds.RouteConfigMesh,
		HTTPFilters: []model.HTTPFilter{{Name: "trellis.test.stamp"}, {Name: router.Name, Config: router.Config{}}}}
	m.client.setSnapshot(snap)
	out := m.client.OutboundAddr()
	viaConnect := func(ctx context.Context, _, addr string) (net.Conn, error) { return connectDial(out)(ctx, addr) }

	for _, tc := range []struct {
		name   string
		client *http.Client
		url    string
		body   func() *strings.Reader
	}{
		{"http1 fast path", h1ProxyClient(t, out), "http://reviews/x", nil},
		{"http1 chunked upload", h1ProxyClient(t, out), "http://reviews/x", func() *strings.Reader { return strings.NewReader("up") }},
		{"h2c", h2cClient(t, nil), "http://" + out + "/x", nil},
		{"CONNECT then h2", h2cClient(t, viaConnect), "http://reviews:9080/x", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			send := func(block bool) result {
				method := "GET"
				var req *http.Request
				if tc.body != nil {
					method = "POST"
					req = newRequest(t, method, tc.url, "reviews", tc.body())
					req.ContentLength = -1 // chunked: not the fast path
				} else {
					req = newRequest(t, method, tc.url, "reviews", nil)
				}
				if block {
					req.Header.Set("X-Block", "1")
				}
				return do(t, tc.client, req)
			}
			r := send(false)
			if r.code != 200 || !strings.HasPrefix(r.body, "v1 ") {
				t.Fatalf("%d %q", r.code, r.body)
			}
			if got := m.v1.lastRequest().Header.Get("X-Stamp"); got != "in" {
				t.Errorf("the app saw X-Stamp %q, want the filter's", got)
			}
			if got := r.header.Get("X-Stamp-Saw"); got != "reviews|v1 200" {
				t.Errorf("X-Stamp-Saw %q, want the router's pick reviews|v1", got)
			}
			r = send(true)
			if r.code != 403 || r.header.Get(meshxds.HeaderError) != string(mesherr.AccessDenied) {
				t.Fatalf("blocked: %d %q %v, want 403 access_denied", r.code, r.body, r.header)
			}
		})
	}
}
