package proxy

import (
	"net"
	"net/http"
	"time"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/mesherr"
	"trellis.dev/trellis/internal/proxy/router"
	"trellis.dev/trellis/internal/proxy/tunnel"
)

// externalDialTimeout bounds the connect to a host outside the mesh, made
// before CONNECT is answered (an app without the mesh would wait for the
// system's own connect timeout, minutes; its CONNECT would hang as long).
const externalDialTimeout = 10 * time.Second

// serveConnect serves CONNECT host:port. On the sidecar's outbound
// listener: to a mesh service (a host with a virtual host in the current
// snapshot), the tunnel is sniffed and, when it speaks HTTP in clear,
// routed request by request; otherwise relayed as TCP to an instance of
// the service picked for the tunnel. To any other host, it is relayed to
// host:port as given, resolved and connected as the app itself would,
// before the 200 so that a failure is answered exactly (503
// upstream_connect_failed). Other listeners refuse CONNECT: a gateway is
// not a forward proxy.
func (h *routeHandler) serveConnect(w http.ResponseWriter, r *http.Request) {
	if h.tunnels == nil {
		mesherr.Write(w, r, mesherr.New(mesherr.MethodNotAllowed, "CONNECT is not accepted on the %s listener: "+
			"it routes HTTP requests to mesh services and is not a forward proxy", h.listener))
		h.p.metrics.ObserveRequest(h.direction, "", "", http.StatusMethodNotAllowed, 0)
		return
	}
	if h.isMeshHost(r.Host) {
		h.tunnels.ServeMesh(w, r, func() (string, error) { return h.pickInstance(r.Host) }, h.tunnelDone)
		return
	}
	start := time.Now()
	d := net.Dialer{Timeout: externalDialTimeout}
	up, err := d.DialContext(r.Context(), "tcp", r.Host)
	if err != nil {
		e := mesherr.Wrap(err, mesherr.UpstreamConnectFailed, "connect to %s (outside the mesh) failed: %v", r.Host, err)
		h.p.log.Debug("CONNECT refused", "direction", h.direction, "target", r.Host, "error", err)
		mesherr.Write(w, r, e)
		h.p.metrics.ObserveRequest(h.direction, "", "", e.Code.HTTPStatus(), time.Since(start))
		return
	}
	h.tunnels.ServeExternal(w, r, up, h.tunnelDone)
}

// isMeshHost reports whether host (host:port) is a mesh service: it has a
// virtual host in the current snapshot. Without a configuration yet every
// host counts as one, as before tunnels were relayed: the requests inside
// get no_route, and nothing leaves the machine.
func (h *routeHandler) isMeshHost(host string) bool {
	table, merr := h.table(h.p.snapshot.Load())
	if merr != nil {
		return true
	}
	vh, _, _ := router.Find(table, router.Request{Host: host})
	return vh != nil
}

// pickInstance chooses the instance a TCP tunnel to the mesh service host
// goes to, once per tunnel, with the current snapshot: the cluster of the
// first route that matches a request without headers for "/" (so a
// Route's weights split tunnels too), else the service's cluster of all
// versions; then the balancer. The address is the instance's, port
// included, whatever port CONNECT named.
func (h *routeHandler) pickInstance(host string) (string, error) {
	snap := h.p.snapshot.Load()
	table, merr := h.table(snap)
	if merr != nil {
		return "", merr
	}
	vh, rt, _ := router.Find(table, router.Request{Host: host, Method: http.MethodConnect, Path: "/"})
	if vh == nil {
		return "", mesherr.New(mesherr.NoRoute, "host %q matches no service", router.NormalizeHost(host))
	}
	name := vh.Name
	if rt != nil {
		if c, ok := router.Pick(rt); ok {
			name = c
		}
	}
	service, version := meshxds.SplitClusterName(name)
	cluster := h.p.clusterView(snap.Clusters[name]) // not an ejected instance either
	if cluster == nil {
		return "", mesherr.New(mesherr.NoHealthyUpstream, "%s is not known to this proxy", mesherr.Dest(service, version))
	}
	ep, ok := h.p.balancer.SelectConn(cluster)
	if !ok {
		return "", mesherr.New(mesherr.NoHealthyUpstream, "%s has no healthy instance", mesherr.Dest(service, version))
	}
	return ep.Address, nil
}

// tunnelDone counts an ended tunnel.
func (h *routeHandler) tunnelDone(i tunnel.Info) {
	dest := "mesh"
	if i.External {
		dest = "external"
	}
	h.p.metrics.ObserveTunnel(dest, i.Result.Protocol.String(), i.Upstream != "", i.Sent, i.Received)
}
