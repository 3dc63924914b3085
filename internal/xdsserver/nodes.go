package xdsserver

import (
	"cmp"
	"maps"
	"slices"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"trellis.dev/trellis/internal/meshxds"
)

// ProxyStatus is what the control plane knows about one connected node.
type ProxyStatus struct {
	ID      string `json:"id"`
	Role    string `json:"role,omitempty"`
	Service string `json:"service,omitempty"`
	Version string `json:"version,omitempty"`
	Address string `json:"address,omitempty"` // announced (or, if none, the peer's IP)
	Port    int    `json:"port,omitempty"`
	Zone    string `json:"zone,omitempty"`
	Peer    string `json:"peer,omitempty"` // remote address of the newest stream's connection
	Streams int    `json:"streams"`
	// ConnectedSince is when the node's first open stream bound to it.
	ConnectedSince time.Time `json:"connectedSince"`
	// Types holds, per type URL the node subscribed to, what it accepted
	// and rejected.
	Types map[string]TypeStatus `json:"types"`
	// Synced: every subscribed type has ACKed the version of that type in
	// the last published snapshot, i.e. the node runs the current config.
	Synced bool `json:"synced"`
}

// TypeStatus is one node's state for one xDS type.
//
// A type's version is the snapshot version at which that type last changed
// (unchanged types are not re-sent), so it can be older than Version().
type TypeStatus struct {
	Acked    string    `json:"acked,omitempty"` // last version the node accepted
	AckedAt  time.Time `json:"ackedAt,omitzero"`
	Nacked   string    `json:"nacked,omitempty"`    // version of the last rejected response
	NackErr  string    `json:"nackError,omitempty"` // the node's reason for that rejection
	NackedAt time.Time `json:"nackedAt,omitzero"`
}

// nodeState is one connected node: the streams bound to it and what it
// announced on the newest of them.
type nodeState struct {
	status ProxyStatus
	// conn is the remote address of the connection its streams come from:
	// streams of one node share one connection.
	conn string
}

// bindLocked attaches st to node, creating the node on its first stream.
// A node's snapshot exists only while it is connected, so that the cache
// holds nothing for proxies that are gone. A node bound to streams of
// another connection is not taken: ok is false and holder names that
// connection. s.mu must be held.
func (s *Server) bindLocked(st *streamState, node *core.Node) (holder string, ok bool) {
	id := node.GetId()
	ns := s.nodes[id]
	if ns != nil && ns.conn != st.peer {
		return ns.conn, false
	}
	st.node = id
	if ns == nil {
		ns = &nodeState{conn: st.peer, status: ProxyStatus{ID: id, ConnectedSince: time.Now(), Types: map[string]TypeStatus{}}}
		s.nodes[id] = ns
		if s.pub != nil {
			if err := s.cache.SetSnapshot(s.ctx, id, s.pub); err != nil {
				s.log.Error("setting snapshot", "node", id, "error", err)
			}
		}
	}
	ns.status.Streams++
	// The newest stream's announcement wins: a proxy restarted under the
	// same ID may announce a new port before its old stream times out.
	meta := readMeta(node.GetMetadata(), st.peer)
	ns.status.Role, ns.status.Service, ns.status.Version = meta.role, meta.service, meta.version
	ns.status.Address, ns.status.Port, ns.status.Zone = meta.address, meta.port, meta.zone
	ns.status.Peer = st.peer
	s.log.Info("proxy connected", "node", id, "role", meta.role, "service", meta.service,
		"version", meta.version, "peer", st.peer, "streams", ns.status.Streams)
	return "", true
}

// unbindLocked detaches one stream from node id. s.mu must be held.
func (s *Server) unbindLocked(id string) {
	ns := s.nodes[id]
	if ns == nil {
		return
	}
	ns.status.Streams--
	if ns.status.Streams > 0 {
		return
	}
	delete(s.nodes, id)
	s.cache.ClearSnapshot(id)
	s.log.Info("proxy disconnected", "node", id)
}

// recordLocked notes a request's subscription and, if it answers a
// response (has a nonce), its ACK or NACK. It returns the version a NACK
// rejected ("" otherwise or when unknown). s.mu must be held.
func (s *Server) recordLocked(st *streamState, typeURL, version, nonce string, nack *rpcstatus.Status) (rejected string) {
	ns := s.nodes[st.node]
	if ns == nil || typeURL == "" {
		return ""
	}
	ts := ns.status.Types[typeURL]
	defer func() { ns.status.Types[typeURL] = ts }()
	if nonce == "" {
		return "" // a subscription, not an answer
	}
	sent := st.sent[typeURL]
	answered := ""
	if sent.nonce == nonce {
		answered = sent.version
	}
	if nack != nil {
		ts.Nacked, ts.NackErr, ts.NackedAt = answered, nack.GetMessage(), time.Now()
		s.log.Warn("proxy rejected config", "node", st.node, "type", typeURL,
			"version", answered, "error", nack.GetMessage())
		return answered
	}
	// SotW requests name the accepted version; delta ones only the nonce.
	if version == "" {
		version = answered
	}
	if version != "" {
		ts.Acked, ts.AckedAt = version, time.Now()
	}
	return ""
}

// Proxies lists the connected nodes, sorted by ID.
func (s *Server) Proxies() []ProxyStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]ProxyStatus, 0, len(s.nodes))
	for _, ns := range s.nodes {
		p := ns.status
		p.Types = maps.Clone(p.Types)
		p.Synced = s.syncedLocked(p.Types)
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b ProxyStatus) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func (s *Server) syncedLocked(types map[string]TypeStatus) bool {
	if s.snap == nil || len(types) == 0 {
		return false
	}
	for typeURL, ts := range types {
		if ts.Acked != s.snap.GetVersion(typeURL) {
			return false
		}
	}
	return true
}

// meta is what a node announces in its metadata (keys in meshxds).
type meta struct {
	role, service, version, address, zone string
	port                                  int
}

func readMeta(md *structpb.Struct, peerAddr string) meta {
	str := func(key string) string { return md.GetFields()[key].GetStringValue() }
	m := meta{
		role:    str(meshxds.MetaRole),
		service: str(meshxds.MetaService),
		version: str(meshxds.MetaVersion),
		address: str(meshxds.MetaAddress),
		zone:    str(meshxds.MetaZone),
		port:    readPort(md.GetFields()[meshxds.MetaPort]),
	}
	m.address = meshxds.AddressOr(m.address, peerAddr)
	return m
}

// readPort is the announced port, 0 when there is none or it is not one.
func readPort(v *structpb.Value) int {
	if p, ok := meshxds.ReadPort(v); ok {
		return p
	}
	return 0
}
