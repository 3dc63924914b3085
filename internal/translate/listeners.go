package translate

import (
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"trellis.dev/trellis/internal/meshxds"
)

// listeners returns the outbound (sidecar) and gateway listeners.
//
// Their address is 127.0.0.1:0 on purpose: the Trellis proxy binds its
// sockets from its own flags (as Linkerd's proxy does), so the control plane
// never has to know which port a given sidecar or gateway listens on. The
// Listener resource says what the listener does — an HTTP connection
// manager routed by RDS — not where it listens. (An Envoy using this config
// would need its own bootstrap listeners or a rewrite of the address.)
func listeners() []*listenerv3.Listener {
	return []*listenerv3.Listener{
		httpListener(meshxds.ListenerGateway),
		httpListener(meshxds.ListenerOutbound),
	}
}

func httpListener(name string) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsSource(),
			RouteConfigName: meshxds.RouteConfigMesh,
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       wellknown.Router,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
		}},
	}
	return &listenerv3.Listener{
		Name:    name,
		Address: socketAddress("127.0.0.1", 0),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       wellknown.HTTPConnectionManager,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
			}},
		}},
	}
}

// mustAny packs m with deterministic marshalling, so equal configs give
// equal bytes (the xDS server compares resources to skip unchanged types).
// Marshalling a well-formed generated message cannot fail, so a failure is a
// programming error.
func mustAny(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		panic("translate: packing " + string(proto.MessageName(m)) + ": " + err.Error())
	}
	return a
}
