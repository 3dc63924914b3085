package main

import (
	"fmt"

	"google.golang.org/grpc"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/membership"
)

// instanceStream registers one instance the way a real sidecar does: a
// membership stream (internal/membership) announcing the instance ready,
// which the control plane registers for as long as the stream lives. It
// costs the control plane a stream and a key under its one lease, not a
// config push.
type instanceStream struct {
	inst   api.Instance
	joined *membership.Joined
}

func registerInstance(conn *grpc.ClientConn, inst api.Instance) (*instanceStream, error) {
	j, err := membership.Join(conn, membership.Announcement{Instance: inst, Ready: true})
	if err != nil {
		return nil, fmt.Errorf("instance %s: %w", inst.ID, err)
	}
	return &instanceStream{inst: inst, joined: j}, nil
}

// close ends the stream; the control plane deregisters the instance.
func (s *instanceStream) close() { s.joined.Close() }

func (s *instanceStream) failure() error {
	if err := s.joined.Err(); err != nil {
		return fmt.Errorf("instance %s: %w", s.inst.ID, err)
	}
	return nil
}
