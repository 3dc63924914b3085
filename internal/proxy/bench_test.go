package proxy

import (
	"io"
	"net/http"
	"testing"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/model"
)

// BenchmarkOutboundInboundHTTP1 measures one HTTP/1.1 keep-alive request
// app → outbound → inbound → app against the same request sent direct, so
// the difference is the cost of the sidecar pair.
func BenchmarkOutboundInboundHTTP1(b *testing.B) {
	backend := startApp(b, "v1")
	side := sidecar(b, "reviews", "v1", backend.addr)
	client, _ := startProxy(b, Config{Role: meshxds.RoleSidecar}, snapshot(
		[]*model.VirtualHost{vhost("reviews", to("reviews|v1", 100))},
		map[string][]string{"reviews|v1": {side.InboundAddr()}}))

	run := func(b *testing.B, c *http.Client, url string) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				resp, err := c.Get(url)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Errorf("status %d", resp.StatusCode)
					return
				}
			}
		})
	}
	b.Run("direct", func(b *testing.B) {
		run(b, h1Client(b), "http://"+backend.addr+"/bench")
	})
	b.Run("outbound+inbound", func(b *testing.B) {
		run(b, h1ProxyClient(b, client.OutboundAddr()), "http://reviews/bench")
	})
}
