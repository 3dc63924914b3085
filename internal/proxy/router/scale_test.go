package router_test

import (
	"net/http"
	"testing"

	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/proxy/model/modeltest"
	"trellis.dev/trellis/internal/proxy/router"
)

// BenchmarkFindScale routes in the route table of a mesh of 1,000 services
// (modeltest.Scale): the first service, the last, the last by a gateway's
// wildcard host, and a host nothing matches. Every route of the table has
// a header condition (gray: 1) tried first.
func BenchmarkFindScale(b *testing.B) {
	rt, err := model.ConvertRouteConfig(modeltest.Scale(1000, 2, 2).Routes[0])
	if err != nil {
		b.Fatal(err)
	}
	for _, host := range []string{"svc-0000", "svc-0999", "svc-0999.example.com:80", "nowhere"} {
		b.Run(host, func(b *testing.B) {
			req := router.Request{Host: host, Method: "GET", Path: "/x", Header: http.Header{"Accept": {"*/*"}}}
			b.ReportAllocs()
			for b.Loop() {
				_, _, _ = router.Find(rt, req)
			}
		})
	}
}
