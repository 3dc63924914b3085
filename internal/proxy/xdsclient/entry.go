package xdsclient

import (
	"hash/maphash"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/proto"

	_ "trellis.dev/trellis/internal/proxy/filters" // the http filters listeners may name
	"trellis.dev/trellis/internal/proxy/model"
)

// entry is one resource as the client keeps it: converted to the proxy's
// model, never as the xDS message. With 1,000 services the messages took
// 16 MB and the model 1.4 MB (model.BenchmarkBuildScale); a snapshot is
// assembled from entries without converting anything again.
type entry struct {
	// digest of the resource as received: with the type's version, it tells
	// a server's resend of the same config (after a reconnect) from a
	// change. A go-control-plane server marshals deterministically; another
	// server's re-encoding of the same resource only costs a republish.
	digest uint64
	err    error // why the resource does not convert; build reports it if it is used

	listener  *model.Listener
	routes    *model.RouteTable
	cluster   model.ClusterResource // EDSName is set even when err is
	endpoints []model.Endpoint
	dropped   []error // endpoints left out of endpoints, and why
}

// digestSeed is per process: digests are only compared within it.
var digestSeed = maphash.MakeSeed()

// convert makes the entry of m, received as wire.
func convert(m proto.Message, wire []byte) *entry {
	e := &entry{digest: maphash.Bytes(digestSeed, wire)}
	switch r := m.(type) {
	case *listenerv3.Listener:
		e.listener, e.err = model.ConvertListener(r)
	case *routev3.RouteConfiguration:
		e.routes, e.err = model.ConvertRouteConfig(r)
	case *clusterv3.Cluster:
		e.cluster.Cluster, e.err = model.ConvertCluster(r)
		e.cluster.EDSName = model.EDSServiceName(r)
	case *endpointv3.ClusterLoadAssignment:
		e.endpoints, e.dropped, e.err = model.ConvertEndpoints(r)
	}
	return e
}
