package xdsserver

import (
	"context"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	xds "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// callbacks turns go-control-plane's stream events into Server state.
//
// Quirks of go-control-plane v0.14 that shape this code:
//   - the SotW and delta servers number their streams independently (both
//     start at 1), so a stream is keyed by (delta, id);
//   - the delta server runs OnStreamDeltaRequest before it copies the node
//     of the stream's first request into later ones, so a later delta
//     request may carry no node; the node is remembered per stream instead;
//   - the Node passed to OnStreamClosed is empty for a stream that never
//     sent a request, so closing also goes by the remembered node;
//   - the SnapshotCache resends a NACKed SotW response in a loop; see
//     OnStreamRequest.
type callbacks struct{ s *Server }

var _ xds.Callbacks = callbacks{}

type streamKey struct {
	delta bool
	id    int64
}

// streamState is what the Server knows about one open xDS stream.
type streamState struct {
	ctx  context.Context
	peer string // remote address of the gRPC connection
	node string // node ID, "" until the first request
	// sent is the last response per type URL; an ACK or NACK names it by
	// nonce. go-control-plane sends at most one unacknowledged response per
	// type and stream, so the last one is enough.
	sent map[string]sentResponse
}

type sentResponse struct{ nonce, version string }

func (c callbacks) OnStreamOpen(ctx context.Context, id int64, _ string) error {
	if err := c.s.admit.Wait(ctx); err != nil {
		return status.FromContextError(err).Err()
	}
	c.s.openStream(ctx, streamKey{false, id})
	return nil
}

func (c callbacks) OnDeltaStreamOpen(ctx context.Context, id int64, _ string) error {
	if err := c.s.admit.Wait(ctx); err != nil {
		return status.FromContextError(err).Err()
	}
	c.s.openStream(ctx, streamKey{true, id})
	return nil
}

func (c callbacks) OnStreamClosed(id int64, _ *core.Node) {
	c.s.closeStream(streamKey{false, id})
}

func (c callbacks) OnDeltaStreamClosed(id int64, _ *core.Node) {
	c.s.closeStream(streamKey{true, id})
}

func (c callbacks) OnStreamRequest(id int64, req *discovery.DiscoveryRequest) error {
	rejected, err := c.s.onRequest(streamKey{false, id}, req.GetNode(), req.GetTypeUrl(),
		req.GetVersionInfo(), req.GetResponseNonce(), req.GetErrorDetail())
	if rejected != "" {
		// A NACK names the last version the proxy accepted, which differs
		// from the cache's, so the SnapshotCache would resend the rejected
		// version at once, get it NACKed again, and loop for as long as the
		// config stays the same (go-control-plane issues #46, #962). Making
		// the request name the rejected version parks the watch until the
		// next snapshot. The server passes this same request to the cache
		// right after this callback. Delta needs no such fix: its server
		// counts what it sent as known and does not resend.
		req.VersionInfo = rejected
	}
	return err
}

func (c callbacks) OnStreamDeltaRequest(id int64, req *discovery.DeltaDiscoveryRequest) error {
	// Delta requests carry no version: the ACKed version is the one of the
	// response the nonce names.
	_, err := c.s.onRequest(streamKey{true, id}, req.GetNode(), req.GetTypeUrl(),
		"", req.GetResponseNonce(), req.GetErrorDetail())
	return err
}

func (c callbacks) OnStreamResponse(_ context.Context, id int64, _ *discovery.DiscoveryRequest, resp *discovery.DiscoveryResponse) {
	c.s.onResponse(streamKey{false, id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetVersionInfo())
}

func (c callbacks) OnStreamDeltaResponse(id int64, _ *discovery.DeltaDiscoveryRequest, resp *discovery.DeltaDiscoveryResponse) {
	c.s.onResponse(streamKey{true, id}, resp.GetTypeUrl(), resp.GetNonce(), resp.GetSystemVersionInfo())
}

// REST fetches are not served (only gRPC streams are registered).
func (callbacks) OnFetchRequest(context.Context, *discovery.DiscoveryRequest) error         { return nil }
func (callbacks) OnFetchResponse(*discovery.DiscoveryRequest, *discovery.DiscoveryResponse) {}

func (s *Server) openStream(ctx context.Context, key streamKey) {
	st := &streamState{ctx: ctx, sent: map[string]sentResponse{}}
	if p, ok := peer.FromContext(ctx); ok {
		st.peer = p.Addr.String()
	}
	s.mu.Lock()
	s.streams[key] = st
	s.mu.Unlock()
}

// onRequest binds the stream to its node on the first request (giving the
// node the current snapshot), then records an ACK or NACK if the request
// answers a response. For a NACK it returns the version rejected, when
// known. A node ID held by a live stream of another connection is refused:
// ids are listed by the API, and one process must not be able to take
// another's status (or, with identities, its config).
func (s *Server) onRequest(key streamKey, node *core.Node, typeURL, version, nonce string, nack *rpcstatus.Status) (rejected string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[key]
	if st == nil { // cannot happen: open precedes requests
		return "", status.Error(codes.Internal, "unknown stream")
	}
	if st.node == "" {
		if node.GetId() == "" {
			return "", status.Error(codes.InvalidArgument, "the first request of a stream must carry node.id")
		}
		if holder, ok := s.bindLocked(st, node); !ok {
			s.log.Warn("refused a second stream for a live node id", "node", node.GetId(), "peer", st.peer, "holder", holder)
			return "", status.Errorf(codes.AlreadyExists,
				"node id %q is held by a live stream from %s; a second process cannot take it over", node.GetId(), holder)
		}
	}
	return s.recordLocked(st, typeURL, version, nonce, nack), nil
}

func (s *Server) onResponse(key streamKey, typeURL, nonce, version string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if st := s.streams[key]; st != nil {
		st.sent[typeURL] = sentResponse{nonce: nonce, version: version}
	}
}

// closeStream unbinds the stream; when it was its node's last, the node's
// snapshot is dropped. Membership is not touched: it has a stream of its
// own (internal/membership).
func (s *Server) closeStream(key streamKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[key]
	delete(s.streams, key)
	if st != nil && st.node != "" {
		s.unbindLocked(st.node)
	}
}
