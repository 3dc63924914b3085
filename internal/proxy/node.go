package proxy

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"trellis.dev/trellis/internal/meshxds"
)

// defaultNodeID is "<service>.<version>.<random>" for a sidecar (parts that
// are empty left out) and "gateway.<random>" for a gateway: readable in the
// control plane, unique per process.
func defaultNodeID(c *Config) string {
	var b [4]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	suffix := hex.EncodeToString(b[:])
	if c.Role == meshxds.RoleGateway {
		return "gateway." + suffix
	}
	var parts []string
	for _, s := range []string{c.Service, c.Version} {
		if s != "" {
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		parts = append(parts, meshxds.RoleSidecar)
	}
	return strings.Join(append(parts, suffix), ".")
}

// node is how this proxy announces itself on the ADS stream. A sidecar with
// an app announces its service and inbound port, which registers it as an
// instance for as long as the stream is open.
func node(c *Config, id string, inboundPort int) *corev3.Node {
	md := map[string]any{
		meshxds.MetaRole:    c.Role,
		meshxds.MetaVersion: c.Version,
		meshxds.MetaAddress: c.Address,
		meshxds.MetaZone:    c.Zone,
	}
	cluster := c.Service
	if c.hasInbound() {
		md[meshxds.MetaService] = c.Service
		md[meshxds.MetaPort] = strconv.Itoa(inboundPort)
	}
	if c.Role == meshxds.RoleGateway {
		cluster = meshxds.RoleGateway
	}
	st, err := structpb.NewStruct(md)
	if err != nil {
		panic("proxy: node metadata: " + err.Error()) // strings only: cannot fail
	}
	return &corev3.Node{
		Id:            id,
		Cluster:       cluster,
		Metadata:      st,
		Locality:      &corev3.Locality{Zone: c.Zone},
		UserAgentName: "trellis-proxy",
	}
}
