package main

import (
	"context"
	"fmt"
	"sync"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/structpb"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/meshxds"
)

// instanceStream registers one instance the way a real sidecar does: it
// opens an ADS stream whose node metadata announces the instance, and the
// control plane registers it (an etcd lease) for as long as the stream
// lives. It subscribes to LDS only — two small listeners that never change
// — so it costs the control plane a stream and a lease, not a config push.
type instanceStream struct {
	inst   api.Instance
	cancel context.CancelFunc
	done   chan struct{}

	mu  sync.Mutex
	err error
}

func instanceNode(inst api.Instance) (*core.Node, error) {
	md, err := structpb.NewStruct(map[string]any{
		meshxds.MetaRole: meshxds.RoleSidecar, meshxds.MetaService: inst.Service, meshxds.MetaVersion: inst.Version,
		meshxds.MetaAddress: inst.Address, meshxds.MetaPort: inst.Port, meshxds.MetaZone: inst.Zone,
	})
	if err != nil {
		return nil, err
	}
	return &core.Node{Id: inst.ID, Cluster: inst.Service, Metadata: md}, nil
}

func registerInstance(conn *grpc.ClientConn, inst api.Instance) (*instanceStream, error) {
	node, err := instanceNode(inst)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ListenerType}); err != nil {
		cancel()
		return nil, err
	}
	s := &instanceStream{inst: inst, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			resp, err := stream.Recv()
			if err != nil {
				if ctx.Err() == nil {
					s.mu.Lock()
					s.err = fmt.Errorf("instance %s: %w", inst.ID, err)
					s.mu.Unlock()
				}
				return
			}
			ack := &discovery.DiscoveryRequest{TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
			if err := stream.Send(ack); err != nil {
				return
			}
		}
	}()
	return s, nil
}

// close ends the stream; the control plane deregisters the instance.
func (s *instanceStream) close() {
	s.cancel()
	<-s.done
}

func (s *instanceStream) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}
