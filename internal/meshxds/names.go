// Package meshxds is the contract between the control plane and the proxy:
// the names of the xDS resources Trellis publishes and the keys of the node
// metadata a proxy announces itself with. Both sides import it so that a
// rename cannot drift between them.
package meshxds

import "strings"

// Listener names. The proxy binds its sockets from its flags (as Linkerd's
// proxy does); the Listener resources carry what each listener does.
const (
	// ListenerOutbound is the sidecar's outbound listener (app → mesh).
	ListenerOutbound = "outbound"
	// ListenerGateway is the ingress gateway's listener (outside → mesh).
	ListenerGateway = "gateway"
)

// RouteConfigMesh is the RouteConfiguration every outbound and gateway
// listener uses: one virtual host per mesh service.
const RouteConfigMesh = "mesh"

// ClusterName names the cluster of one service version ("reviews|v1"), or
// of every instance of the service when version is empty ("reviews").
func ClusterName(service, version string) string {
	if version == "" {
		return service
	}
	return service + "|" + version
}

// SplitClusterName is the inverse of ClusterName.
func SplitClusterName(cluster string) (service, version string) {
	service, version, _ = strings.Cut(cluster, "|")
	return service, version
}

// Node metadata keys a proxy sets in its xDS Node.metadata and in the
// announcements of its membership stream (internal/membership), which is
// what registers its instance while its app is ready.
const (
	MetaRole    = "trellis.role"    // "sidecar" or "gateway"
	MetaService = "trellis.service" // service name
	MetaVersion = "trellis.version" // version label
	MetaAddress = "trellis.address" // IP peers reach the inbound listener on
	MetaPort    = "trellis.port"    // inbound listener port (number)
	MetaZone    = "trellis.zone"    // locality zone, may be empty
	// MetaReady is sent on the membership stream only (internal/membership):
	// true while the instance's app passes its readiness check.
	MetaReady = "trellis.ready"
)

// Roles.
const (
	RoleSidecar = "sidecar"
	RoleGateway = "gateway"
)

// Response headers the mesh adds.
const (
	HeaderError   = "x-trellis-error"   // stable error code on mesh-made responses
	HeaderService = "x-trellis-service" // service that answered (serving side)
	HeaderVersion = "x-trellis-version" // version that answered (serving side)
)
