package xdsserver

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/log"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// sotwCache is the cache the go-control-plane server serves from. It
// answers state-of-the-world watches itself, with one response per
// snapshot and type shared by every node, and hands delta watches to
// go-control-plane's SnapshotCache.
//
// Why: the SnapshotCache builds every SotW response per node — a
// cachedResource per resource, a name → version map, and (its costliest
// part) a marshal of every resource — so a push of R resources to N nodes
// costs N×R allocations and marshals, serially under one lock for the
// building part. An endpoint change at 1,000 proxies and 1,000 services
// (3,000 ClusterLoadAssignments) took seconds and starved etcd of the CPU
// to renew instance leases (docs/performance.md, "Control plane at
// scale"). Here the resources of a type are marshalled once per snapshot
// and every node's response shares them (and gRPC writes them from one
// shared encoding, codec.go); what stays per node is the DiscoveryResponse
// envelope and a copy of the name → version map (the server's subscription
// state owns and edits it).
//
// The SotW rules are the SnapshotCache's in ADS mode (simple.go of
// go-control-plane v0.14), kept as they are, since the rest of this
// package and every proxy rely on them:
//   - a watch is answered at once if its request names another version
//     than the node's snapshot has for the type, or the same version but
//     the subscription lacks a resource the snapshot has; otherwise it is
//     kept until a snapshot with another version of the type arrives;
//   - a request that names resources but not every resource of the
//     snapshot is not answered, and its watch is dropped: the proxy is
//     expected to ask again (ADS consistency);
//   - a response carries every resource of the type — except EDS and
//     RDS, below;
//   - on a new snapshot the node's open watches are answered in the order
//     of the types' enumeration (types.ResponseType: EDS, CDS, RDS, …, LDS).
//
// EDS and RDS responses carry only what changed. The xDS protocol lets a
// SotW server leave out of an EDS or RDS response the resources the client
// already has ("the management server does not need to supply every
// requested resource"): a client keeps a named resource until a response
// replaces it or it stops naming it. A response of those types therefore
// carries the resources whose content differs from what the stream was
// last sent (the subscription's returned map holds each resource's content
// hash); a stream's first response, and the answer to a NACK, carry them
// all. An endpoint change at 1,000 services is one ClusterLoadAssignment
// per proxy, not 3,000. Every node with the same returned state shares the
// response (diff), as with full responses.
//
// Resources with a TTL (heartbeats) are not supported: the translator
// sets none, and publish refuses them.
type sotwCache struct {
	delta cache.SnapshotCache // delta watches, and nothing else
	log   log.Logger

	// recent are the encodings the gRPC codec writes responses from
	// (codec.go).
	recent recentShared

	// held says which snapshot each stream's EDS and RDS resources are
	// from (sotwheld.go).
	held heldStamps

	mu     sync.Mutex
	nodes  map[string]*sotwNode
	nextID int64
}

var _ cache.Cache = (*sotwCache)(nil)

// sotwNode is one node's snapshot and open SotW watches.
type sotwNode struct {
	pub     *published // nil until the node's first snapshot
	watches map[int64]sotwWatch
}

type sotwWatch struct {
	req *cache.Request
	sub cache.Subscription
	out chan cache.Response
}

func newSotwCache(logger log.Logger) *sotwCache {
	return &sotwCache{
		delta: cache.NewSnapshotCache(true, cache.IDHash{}, logger),
		log:   logger,
		nodes: map[string]*sotwNode{},
	}
}

// published is one snapshot as it is served: the snapshot, and per type
// the response every node gets.
type published struct {
	snap  *cache.Snapshot
	types [types.UnknownType]sharedType

	// encodings holds the encoding of every shared resource list (full
	// or diff) of this snapshot, by the address of its first element,
	// for the codec (recentShared.lookup).
	encodings sync.Map // **anypb.Any → *sharedEncoding
}

// sharedType is the SotW answer for one type of one snapshot.
type sharedType struct {
	once      sync.Once
	names     []string          // sorted
	resources []*anypb.Any      // every resource, marshalled, in names' order
	returned  map[string]string // name → version (content hash for EDS/RDS); never handed out: streams get their own (updateHeld)
	err       error

	// Of EDS and RDS only: returned holds content hashes; diffs are the
	// shared partial responses built so far, by the changed names, and
	// since what changed since a previous snapshot (sotwheld.go).
	partial bool
	diffMu  sync.Mutex
	diffs   map[string][]*anypb.Any
	since   map[*sharedType][]int
}

// maxDiffs bounds the partial responses kept per type of a snapshot.
// Nodes are mostly one snapshot behind, so there are few distinct diffs;
// an unusual one beyond the bound is built for its node alone.
const maxDiffs = 16

// partialTypes are the types whose responses carry only what changed.
func partialType(typeURL string) bool {
	return typeURL == resource.EndpointType || typeURL == resource.RouteType
}

// publish wraps snap for serving and builds the response of each of its
// types now, rather than under the cache's lock at the first push.
func publish(snap *cache.Snapshot) (*published, error) {
	for _, rs := range snap.Resources {
		for name, r := range rs.Items {
			if r.TTL != nil {
				return nil, fmt.Errorf("resource %q has a TTL; TTLs are not supported", name)
			}
		}
	}
	// The content hashes the EDS and RDS diffs compare (Update builds
	// them already, for delta xDS; this is a no-op then).
	if err := snap.ConstructVersionMap(); err != nil {
		return nil, err
	}
	pub := &published{snap: snap}
	for i, rs := range snap.Resources {
		if rs.Items == nil {
			continue
		}
		typeURL, err := cache.GetResponseTypeURL(types.ResponseType(i))
		if err != nil {
			return nil, err
		}
		if _, err := pub.shared(typeURL); err != nil {
			return nil, err
		}
	}
	return pub, nil
}

// shared returns the response of typeURL, marshalling its resources on
// the first call (publish makes that call for every type the snapshot has).
func (p *published) shared(typeURL string) (*sharedType, error) {
	i := cache.GetResponseType(typeURL)
	if i == types.UnknownType {
		return nil, fmt.Errorf("unknown type %q", typeURL)
	}
	st := &p.types[i]
	st.once.Do(func() {
		rs := p.snap.Resources[i]
		st.partial = partialType(typeURL)
		hashes := p.snap.GetVersionMap(typeURL)
		st.names = slices.Sorted(maps.Keys(rs.Items))
		st.resources = make([]*anypb.Any, 0, len(st.names))
		st.returned = make(map[string]string, len(st.names))
		for _, name := range st.names {
			b, err := cache.MarshalResource(rs.Items[name].Resource)
			if err != nil {
				st.err = fmt.Errorf("marshalling %s %q: %w", typeURL, name, err)
				return
			}
			st.resources = append(st.resources, &anypb.Any{TypeUrl: typeURL, Value: b})
			if st.partial {
				st.returned[name] = hashes[name]
			} else {
				st.returned[name] = rs.Version
			}
		}
		st.err = p.encode(st.resources)
	})
	return st, st.err
}

// encode records the encoding of the shared resource list rs for the
// codec. rs must not change afterwards.
func (p *published) encode(rs []*anypb.Any) error {
	if len(rs) == 0 {
		return nil
	}
	enc, err := proto.Marshal(&discovery.DiscoveryResponse{Resources: rs})
	if err != nil {
		return fmt.Errorf("marshalling %s: %w", rs[0].GetTypeUrl(), err)
	}
	p.encodings.Store(&rs[0], &sharedEncoding{n: len(rs), encoded: enc})
	return nil
}

// list returns st's resources at idx (see changedFrom) as one list.
// Streams with the same answer share one list (and its encoding) while
// there are few distinct answers.
func (p *published) list(st *sharedType, idx []int) ([]*anypb.Any, error) {
	if len(idx) == 0 {
		return nil, nil
	}
	var key strings.Builder
	for _, i := range idx {
		key.WriteString(st.names[i])
		key.WriteByte(0)
	}
	st.diffMu.Lock()
	defer st.diffMu.Unlock()
	if rs, ok := st.diffs[key.String()]; ok {
		return rs, nil
	}
	rs := make([]*anypb.Any, len(idx))
	for j, i := range idx {
		rs[j] = st.resources[i]
	}
	if len(st.diffs) >= maxDiffs {
		return rs, nil // encoded by the codec for this node alone
	}
	if err := p.encode(rs); err != nil {
		return nil, err
	}
	if st.diffs == nil {
		st.diffs = map[string][]*anypb.Any{}
	}
	st.diffs[key.String()] = rs
	return rs, nil
}

// published records pub as the newest snapshot, before it is set for any
// node, so that the codec finds its encodings.
func (c *sotwCache) published(pub *published) { c.recent.add(pub) }

// node returns id's state, creating it. c.mu must be held.
func (c *sotwCache) node(id string) *sotwNode {
	n := c.nodes[id]
	if n == nil {
		n = &sotwNode{watches: map[int64]sotwWatch{}}
		c.nodes[id] = n
	}
	return n
}

// SetSnapshot gives node id the snapshot pub and answers its open watches
// of every type whose version changed.
func (c *sotwCache) SetSnapshot(ctx context.Context, id string, pub *published) error {
	if err := c.delta.SetSnapshot(ctx, id, pub.snap); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.node(id)
	n.pub = pub
	ids := slices.Collect(maps.Keys(n.watches))
	slices.SortFunc(ids, func(a, b int64) int {
		ta := cache.GetResponseType(n.watches[a].req.GetTypeUrl())
		tb := cache.GetResponseType(n.watches[b].req.GetTypeUrl())
		if ta != tb {
			return int(ta) - int(tb)
		}
		return int(a - b)
	})
	for _, wid := range ids {
		w := n.watches[wid]
		if pub.snap.GetVersion(w.req.GetTypeUrl()) == w.req.GetVersionInfo() {
			continue
		}
		if err := c.respond(ctx, pub, w); err != nil {
			return err
		}
		delete(n.watches, wid)
	}
	return nil
}

// ClearSnapshot forgets node id: its snapshot and its watches.
func (c *sotwCache) ClearSnapshot(id string) {
	c.delta.ClearSnapshot(id)
	c.held.forget(id)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.nodes, id)
}

// CreateWatch answers req at once when the node's snapshot has something
// the subscription lacks, and otherwise keeps the watch until it does.
func (c *sotwCache) CreateWatch(req *cache.Request, sub cache.Subscription, out chan cache.Response) (func(), error) {
	id := cache.IDHash{}.ID(req.GetNode())
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.node(id)
	w := sotwWatch{req: req, sub: sub, out: out}
	if n.pub == nil || !c.shouldRespond(n.pub, w) {
		c.nextID++
		wid := c.nextID
		n.watches[wid] = w
		return func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			if n := c.nodes[id]; n != nil {
				delete(n.watches, wid)
			}
		}, nil
	}
	if err := c.respond(context.Background(), n.pub, w); err != nil {
		c.log.Errorf("failed to send a response for %s%v to nodeID %q: %s", req.GetTypeUrl(),
			sub.SubscribedResources(), id, err)
		return nil, fmt.Errorf("failed to send the response: %w", err)
	}
	return func() {}, nil
}

// shouldRespond: the request names another version than the snapshot's,
// or the subscription lacks a resource the snapshot has.
func (c *sotwCache) shouldRespond(pub *published, w sotwWatch) bool {
	typeURL := w.req.GetTypeUrl()
	if w.req.GetVersionInfo() != pub.snap.GetVersion(typeURL) {
		return true
	}
	items := pub.snap.GetResourcesAndTTL(typeURL)
	known := w.sub.ReturnedResources()
	if st, err := pub.shared(typeURL); err == nil && st.partial &&
		c.held.lookup(heldKey{cache.IDHash{}.ID(w.req.GetNode()), typeURL}, known) == st {
		return false // the stream holds every resource of the snapshot
	}
	if !w.sub.IsWildcard() {
		for name := range w.sub.SubscribedResources() {
			if _, isKnown := known[name]; isKnown {
				continue
			}
			if _, exists := items[name]; exists {
				return true
			}
		}
		return false
	}
	for name := range items {
		if _, isKnown := known[name]; !isKnown {
			return true
		}
	}
	return false
}

// respond sends w the snapshot's response for its type, unless the
// request names resources and leaves out one of the snapshot's (ADS:
// nothing is sent; the proxy asks again).
func (c *sotwCache) respond(ctx context.Context, pub *published, w sotwWatch) error {
	typeURL := w.req.GetTypeUrl()
	st, err := pub.shared(typeURL)
	if err != nil {
		return err
	}
	if names := w.req.GetResourceNames(); len(names) != 0 {
		if missing, ok := firstMissing(st.names, names, w.sub.SubscribedResources()); !ok {
			c.log.Warnf("ADS mode: not responding to request %s %v: %q not listed", typeURL, names, missing)
			return nil
		}
	}
	// EDS and RDS: what the stream lacks. A NACK gets everything: the
	// client kept its previous resources, and the stream's returned map
	// says what was sent, not what was accepted.
	key := heldKey{cache.IDHash{}.ID(w.req.GetNode()), typeURL}
	known := w.sub.ReturnedResources()
	var idx []int // nil: all of them
	if st.partial && len(known) > 0 && w.req.GetErrorDetail() == nil {
		if prev := c.held.lookup(key, known); prev != nil {
			idx = st.changedSince(prev)
		} else {
			idx = st.changedFrom(known)
		}
		if len(idx) == len(st.names) {
			idx = nil
		}
	}
	resources := st.resources
	if idx != nil {
		if resources, err = pub.list(st, idx); err != nil {
			return err
		}
	}
	resp := &sharedResponse{req: w.req, version: pub.snap.GetVersion(typeURL), shared: st, resources: resources,
		known: known, changed: idx, held: &c.held, key: key, ctx: ctx}
	select {
	case w.out <- resp:
		return nil
	case <-ctx.Done():
		return context.Canceled
	}
}

// firstMissing checks that a request names every resource of a snapshot
// type (want, sorted): it returns the first one it does not name, and
// false, if there is one. Proxies name their resources in sorted order
// (xdsclient does), and then this is one walk along both lists; otherwise
// it looks every name up in the subscription's set. (Map lookups of 3,000
// names per proxy were most of a 2,000-proxy push's CPU in this cache.)
func firstMissing(want, names []string, subscribed map[string]struct{}) (string, bool) {
	if slices.IsSorted(names) {
		j := 0
		for _, w := range want {
			for j < len(names) && names[j] < w {
				j++
			}
			if j == len(names) || names[j] != w {
				return w, false
			}
		}
		return "", true
	}
	for _, w := range want {
		if _, ok := subscribed[w]; !ok {
			return w, false
		}
	}
	return "", true
}

// CreateDeltaWatch is the SnapshotCache's.
func (c *sotwCache) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, out chan cache.DeltaResponse) (func(), error) {
	return c.delta.CreateDeltaWatch(req, sub, out)
}

// Fetch (REST) is not served: only gRPC streams are registered.
func (c *sotwCache) Fetch(context.Context, *cache.Request) (cache.Response, error) {
	return nil, errors.New("fetch is not served")
}

// sharedResponse is one node's SotW response: its own envelope around the
// resources every node shares.
type sharedResponse struct {
	req       *cache.Request
	version   string
	shared    *sharedType
	resources []*anypb.Any // shared.resources, or for EDS and RDS what changed
	// known is the stream's returned map when the response was made,
	// which GetReturnedResources brings up to date; changed are the
	// resources it lacked (nil: not known, or all).
	known   map[string]string
	changed []int
	held    *heldStamps
	key     heldKey
	ctx     context.Context
}

var _ cache.Response = (*sharedResponse)(nil)

// GetDiscoveryResponse returns a new envelope at each call: the server
// sets the stream's nonce in it. The resources are shared and read-only.
func (r *sharedResponse) GetDiscoveryResponse() (*discovery.DiscoveryResponse, error) {
	return &discovery.DiscoveryResponse{
		VersionInfo: r.version,
		Resources:   r.resources,
		TypeUrl:     r.req.GetTypeUrl(),
	}, nil
}

func (r *sharedResponse) GetRequest() *discovery.DiscoveryRequest { return r.req }
func (r *sharedResponse) GetVersion() (string, error)             { return r.version, nil }
func (r *sharedResponse) GetResponseVersion() string              { return r.version }
func (r *sharedResponse) GetContext() context.Context             { return r.ctx }

// GetReturnedResources lists every resource of the type, sent now or
// before: after this response the client holds them all. The server keeps
// it as the subscription's state and edits it when the subscription
// changes, so it is never the shared map.
//
// It is the stream's own map brought up to date in place, rather than a
// copy of the shared one: copying a map of every resource per proxy and
// push was a fifth of the control plane's CPU in a 2,000-proxy endpoint
// push. In place is safe because the server calls this in send, on the
// stream's goroutine, with no watch of the type open (the cache reads the
// map only under an open watch, or in CreateWatch on that goroutine); and
// correct because a response the server drops unsent (a newer request of
// the type came first) never gets here, so the map changes only when the
// client is sent the response. It also stamps the map as holding this
// snapshot's resources (sotwheld.go).
func (r *sharedResponse) GetReturnedResources() map[string]string {
	known := updateHeld(r.known, r.shared, r.changed)
	if r.shared.partial {
		r.held.record(r.key, known, r.shared)
	}
	return known
}
