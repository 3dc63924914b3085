package main

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

func fmtFloat(v float64, prec int) string { return strconv.FormatFloat(v, 'f', prec, 64) }

// report renders the results as the Markdown report.
func report(cfg *config, results []result, elapsed time.Duration) string {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# Control plane at scale — %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	p("- Command: `go run ./bench/controlplane %s`\n", strings.Join(cfg.args, " "))
	p("- Machine: %s\n", machine())
	mode := "a `trellis control` child process built from the working tree (embedded etcd in a temp dir)"
	if cfg.binary != "" {
		mode = fmt.Sprintf("a `%s control` child process (embedded etcd in a temp dir)", cfg.binary)
	}
	if cfg.inProcess {
		mode = "the control plane **in the benchmark's process** (profiling mode: memory and CPU include the simulated proxies)"
	}
	p("- Control plane: %s; the simulated proxies run in the benchmark process on the same machine\n", mode)
	p("- Proxies: one ADS SotW stream each, %d per gRPC connection; each subscribes like `internal/proxy/xdsclient` (CDS, LDS wildcard; EDS for every cluster; RDS `mesh`) and ACKs every response\n", cfg.proxiesPerConn)
	p("- Mesh: S services × 2 versions × 2 instances, a Route per service (v1 90 / v2 10); each instance registered by its own membership stream announcing it ready (as a sidecar does; all under the control plane's one lease), %d streams per connection\n", cfg.instancesPerConn)
	p("- Changes per point: %d Route weight changes (`POST /v1/apply`), %d endpoint changes (an instance's stream opened, then closed)\n", cfg.changes, cfg.endpointChanges)
	p("- Run time: %s\n\n", elapsed.Round(time.Second))

	p("| proxies | services | initial sync of all proxies (s) | route change → ACK p50 / p99 / max (ms) | route change → last ACK p50 / p99 (ms) | endpoint change → last ACK p50 / max (ms) | RSS idle / peak in pushes (MB) | CPU per route push (s) | CPU per endpoint push (s) | idle CPU (cores) | leases lost | other load (cores) |\n")
	p("|---:|---:|---:|---|---|---|---|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		if r.Err != "" {
			p("| %d | %d | **failed**: %s | | | | | | | | %d | %s |\n", r.Proxies, r.Services,
				strings.ReplaceAll(r.Err, "|", "/"), r.LeasesLost, fmtFloat(r.OtherCPU, 2))
			continue
		}
		p("| %d | %d | %s | %s / %s / %s | %s / %s | %s / %s | %.0f / %.0f | %s | %s | %s | %d | %s |\n",
			r.Proxies, r.Services, fmtFloat(r.Connect.Seconds(), 2),
			ms(r.Route.P50), ms(r.Route.P99), ms(r.Route.Max),
			ms(r.RouteLast.P50), ms(r.RouteLast.P99),
			ms(r.Endpoint.P50), ms(r.Endpoint.Max),
			mb(r.RSSIdle), mb(r.RSSPeak),
			fmtFloat(r.CPURoute.Seconds(), 3), fmtFloat(r.CPUEndpoint.Seconds(), 3), fmtFloat(r.IdleCPU, 3), r.LeasesLost, fmtFloat(r.OtherCPU, 2))
	}

	p("\nFull initial config one proxy receives (identical for every proxy), and the EDS response an endpoint change sends it:\n\n")
	p("| services | clusters | resources (KiB) | on the wire (KiB) | endpoint change on the wire (KiB) |\n|---:|---:|---:|---:|---:|\n")
	seen := map[int]bool{}
	for _, r := range results {
		if seen[r.Services] || r.Config.message == 0 {
			continue
		}
		seen[r.Services] = true
		p("| %d | %d | %s | %s | %s |\n", r.Services, r.Services*(1+len(versions)),
			fmtFloat(float64(r.Config.resources)/1024, 1), fmtFloat(float64(r.Config.message)/1024, 1),
			fmtFloat(float64(r.EndpointPush.message)/1024, 1))
	}

	p(`
How to read it:

- *route change → ACK*: from the start of the apply request to each proxy's ACK of the
  first RDS version after it (every proxy × every change); proxy 0 also decodes the
  RouteConfiguration and the benchmark checks it carries the new weight.
- *route change → last ACK*: per change, until the last proxy ACKed.
- *endpoint change*: from opening (or closing) the membership stream of an extra instance
  of svc-0001 v1 to the last proxy's ACK of the EDS version that adds (removes) it: put
  in etcd under the control plane's lease, watch, debounce, translation, push.
- *initial sync*: from opening the first proxy stream to every proxy having ACKed all
  four types (the cold start after a control-plane restart).
- *RSS*: VmRSS of the control plane after the proxies synced and 2 s passed; the peak is
  the highest of VmRSS sampled every 20 ms and VmHWM (reset before the pushes).
- *CPU per push*: the control plane's CPU (all threads, /proc/PID/task/*/schedstat) from
  the change to 250 ms after the last ACK, minus idle CPU over that window.
- *leases lost*: times etcd expired the control plane's registry lease while it ran
  ("registry lease lost" in its log): it was too busy to renew it, and every instance
  left the mesh until it was written again.
- *other load*: CPU used on the machine by processes other than the control plane and
  the benchmark while the point ran; well above 0, the numbers of that point are skewed.
- *idle CPU*: over 3 s with every proxy connected and nothing changing (gRPC keepalives,
  one etcd lease keepalive for the control plane).
`)
	return b.String()
}
