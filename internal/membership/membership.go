// Package membership is how a sidecar keeps its instance in the mesh: a
// small gRPC stream of its own, apart from the xDS stream that carries its
// config.
//
// Why apart: an instance's membership must not depend on config delivery.
// When registration lived on the ADS stream, anything that broke that
// stream — a response over the proxy's receive limit, a stream error after
// a NACK — deregistered every instance in the mesh at once. The membership
// stream carries only a few hundred bytes each way, so only three things
// end it: a clean leave, the process dying (its connection closes), or the
// host vanishing (gRPC keepalive).
//
// The sidecar sends an announcement whenever its app's readiness changes;
// the control plane registers the instance while the latest announcement
// says ready, and answers each announcement with a status. The wire types
// are existing protos, so nothing is generated: the client sends
// envoy.config.core.v3.Node (the same metadata keys as on the xDS stream,
// plus meshxds.MetaReady) and the server answers google.rpc.Status.
//
// A node ID is held by at most one live stream: a second process claiming
// a live ID is refused with ALREADY_EXISTS and the first keeps it.
package membership

import (
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/meshxds"
)

const (
	serviceName = "trellis.membership.v1.Membership"
	joinMethod  = "/" + serviceName + "/Join"
)

// Messages of the OK statuses the server answers an announcement with.
const (
	msgRegistered    = "registered"
	msgNotRegistered = "not registered"
)

// Announcement is what a sidecar says about its instance.
type Announcement struct {
	Instance api.Instance // ID is the node ID; an empty Address means "where I connect from"
	Ready    bool         // the app passes its readiness check
}

func (a Announcement) node() *corev3.Node {
	md := &structpb.Struct{Fields: map[string]*structpb.Value{
		meshxds.MetaRole:    structpb.NewStringValue(meshxds.RoleSidecar),
		meshxds.MetaService: structpb.NewStringValue(a.Instance.Service),
		meshxds.MetaVersion: structpb.NewStringValue(a.Instance.Version),
		meshxds.MetaAddress: structpb.NewStringValue(a.Instance.Address),
		meshxds.MetaPort:    structpb.NewStringValue(strconv.Itoa(a.Instance.Port)),
		meshxds.MetaZone:    structpb.NewStringValue(a.Instance.Zone),
		meshxds.MetaReady:   structpb.NewBoolValue(a.Ready),
	}}
	return &corev3.Node{Id: a.Instance.ID, Cluster: a.Instance.Service, Metadata: md,
		Locality: &corev3.Locality{Zone: a.Instance.Zone}, UserAgentName: "trellis-proxy"}
}

// announcementOf reads a node sent on the stream. A port that is not a
// number is kept as -1 so that validation names it.
func announcementOf(n *corev3.Node, peerAddr string) Announcement {
	f := n.GetMetadata().GetFields()
	str := func(key string) string { return f[key].GetStringValue() }
	a := Announcement{
		Instance: api.Instance{
			ID:      n.GetId(),
			Service: str(meshxds.MetaService),
			Version: str(meshxds.MetaVersion),
			Address: str(meshxds.MetaAddress),
			Zone:    str(meshxds.MetaZone),
			Port:    -1,
		},
		Ready: f[meshxds.MetaReady].GetBoolValue(),
	}
	if p, ok := meshxds.ReadPort(f[meshxds.MetaPort]); ok {
		a.Instance.Port = p
	}
	a.Instance.Address = meshxds.AddressOr(a.Instance.Address, peerAddr)
	return a
}

// joinServer is the service's handler type (grpc.ServiceDesc wants an
// interface the implementation satisfies).
type joinServer interface {
	join(grpc.ServerStream) error
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: serviceName,
	HandlerType: (*joinServer)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "Join",
		Handler:       func(srv any, stream grpc.ServerStream) error { return srv.(joinServer).join(stream) },
		ServerStreams: true,
		ClientStreams: true,
	}},
}

var joinStreamDesc = &serviceDesc.Streams[0]
