package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/structpb"

	"trellis.dev/trellis/internal/meshxds"
)

// registerInstance announces the backend at addr:port as an instance of
// service, without a sidecar in front of it: it opens one ADS stream with
// the node metadata a sidecar sends (meshxds keys), ACKs what it receives,
// and keeps the stream open until ctx ends. The control plane registers
// the instance for as long as the stream lives, exactly as it does for a
// sidecar — so a gateway routes to the backend itself, one proxy hop, the
// way it reaches a workload outside the mesh on a VM.
func registerInstance(ctx context.Context, xdsAddr, service, addr string, port int) error {
	conn, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	md, err := structpb.NewStruct(map[string]any{
		meshxds.MetaRole:    meshxds.RoleSidecar,
		meshxds.MetaService: service,
		meshxds.MetaVersion: "v1",
		meshxds.MetaAddress: addr,
		meshxds.MetaPort:    strconv.Itoa(port),
	})
	if err != nil {
		conn.Close()
		return err
	}
	node := &corev3.Node{Id: "bench-registration." + service, Cluster: service, Metadata: md, UserAgentName: "trellis-bench"}
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		conn.Close()
		return err
	}
	const clusterType = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	if err := stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: clusterType}); err != nil {
		conn.Close()
		return err
	}
	first := make(chan error, 1)
	go func() {
		defer conn.Close()
		got := false
		for {
			resp, err := stream.Recv()
			if err != nil {
				if !got {
					first <- err
				}
				return
			}
			_ = stream.Send(&discoveryv3.DiscoveryRequest{
				TypeUrl: resp.GetTypeUrl(), VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce(),
			})
			if !got {
				got = true
				first <- nil
			}
		}
	}()
	select {
	case err := <-first:
		if err != nil {
			return fmt.Errorf("registering %s: %v", service, err)
		}
		return nil
	case <-time.After(20 * time.Second):
		return fmt.Errorf("registering %s: no answer from %s in 20 s", service, xdsAddr)
	}
}
