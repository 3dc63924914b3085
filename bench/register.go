package main

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/membership"
)

// registerInstance announces the backend at addr:port as an instance of
// service, without a sidecar in front of it: it joins the mesh over the
// membership stream a sidecar uses (ready from the start) and keeps the
// stream open until ctx ends. The control plane registers the instance for
// as long as the stream lives, exactly as it does for a sidecar — so a
// gateway routes to the backend itself, one proxy hop, the way it reaches a
// workload outside the mesh on a VM.
//
// (Until issue 8 this opened an ADS stream, which registered instances
// then; since membership left ADS that registered nothing, and the
// gateway path had no instance.)
func registerInstance(ctx context.Context, xdsAddr, service, addr string, port int) error {
	conn, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	j, err := membership.Join(conn, membership.Announcement{
		Instance: api.Instance{ID: "bench-registration." + service, Service: service, Version: "v1", Address: addr, Port: port},
		Ready:    true,
	})
	if err != nil {
		conn.Close()
		return fmt.Errorf("registering %s: %v", service, err)
	}
	go func() {
		<-ctx.Done()
		j.Close()
		conn.Close()
	}()
	return nil
}
