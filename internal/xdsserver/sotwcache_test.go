package xdsserver

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	cachetypes "github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/types/known/anypb"

	"trellis.dev/trellis/internal/translate"
)

// snapshotCacheAPI is what the differential test drives on both caches.
type snapshotCacheAPI interface {
	cache.ConfigWatcher
	set(node string, i int) error
	clear(node string)
}

type refCache struct {
	cache.SnapshotCache
	snaps []*cache.Snapshot
}

func (r *refCache) set(node string, i int) error {
	return r.SetSnapshot(context.Background(), node, r.snaps[i])
}
func (r *refCache) clear(node string) { r.ClearSnapshot(node) }

type ourCache struct {
	*sotwCache
	pubs []*published
}

func (o *ourCache) set(node string, i int) error {
	return o.SetSnapshot(context.Background(), node, o.pubs[i])
}
func (o *ourCache) clear(node string) { o.ClearSnapshot(node) }

// world is one cache and the server-side state of the streams using it:
// per node and type, the subscription and the open watch, as the SotW
// server keeps them.
type world struct {
	c       snapshotCacheAPI
	subs    map[string]*stream.Subscription
	cancels map[string]func()
	out     map[string]chan cache.Response // per node, as one ADS stream
	// views are, per node and EDS/RDS type, the resources the node holds:
	// the responses it got merged, as a proxy keeps them.
	views map[string]map[string]string
	// partial counts EDS/RDS responses that left out resources the node
	// already held.
	partial int
}

func newWorld(c snapshotCacheAPI) *world {
	return &world{c: c, subs: map[string]*stream.Subscription{}, cancels: map[string]func(){},
		out: map[string]chan cache.Response{}, views: map[string]map[string]string{}}
}

// request does what the SotW server does with a request: close the
// type's watch, update (or create) its subscription, open a new watch.
func (w *world) request(node, typeURL, version string, names []string) error {
	key := node + " " + typeURL
	if cancel := w.cancels[key]; cancel != nil {
		cancel()
	}
	sub := w.subs[key]
	if sub == nil {
		s := stream.NewSotwSubscription(names, true)
		sub = &s
		w.subs[key] = sub
	} else {
		sub.SetResourceSubscription(names)
	}
	if w.out[node] == nil {
		w.out[node] = make(chan cache.Response, respChanSize)
	}
	req := &cache.Request{Node: &core.Node{Id: node}, TypeUrl: typeURL, VersionInfo: version, ResourceNames: names}
	cancel, err := w.c.CreateWatch(req, sub, w.out[node])
	w.cancels[key] = cancel
	return err
}

// drain takes node's pending responses, records them as sent (the
// subscription's returned resources), and describes them.
func (w *world) drain(node string) []string {
	var got []string
	for {
		select {
		case resp := <-w.out[node]:
			typeURL := resp.GetRequest().GetTypeUrl()
			w.subs[node+" "+typeURL].SetReturnedResources(resp.GetReturnedResources())
			if partialType(typeURL) {
				got = append(got, w.apply(node, resp))
			} else {
				got = append(got, describe(resp))
			}
		default:
			return got
		}
	}
}

// apply merges an EDS or RDS response into what node holds, keeps what
// the response says the node has (the returned names), and describes the
// result: what the node holds after it, not what was sent, since our cache
// sends only what changed where the SnapshotCache sends everything.
func (w *world) apply(node string, resp cache.Response) string {
	dr, err := resp.GetDiscoveryResponse()
	if err != nil {
		return "error: " + err.Error()
	}
	key := node + " " + dr.GetTypeUrl()
	view := w.views[key]
	if view == nil {
		view = map[string]string{}
	}
	for _, a := range dr.GetResources() {
		m, err := a.UnmarshalNew()
		if err != nil {
			return "error: " + err.Error()
		}
		view[cache.GetResourceName(m)] = string(a.GetValue())
	}
	returned := resp.GetReturnedResources()
	if len(dr.GetResources()) < len(returned) {
		w.partial++
	}
	maps.DeleteFunc(view, func(name, _ string) bool { _, ok := returned[name]; return !ok })
	w.views[key] = view
	keys := slices.Sorted(maps.Keys(view))
	h := sha256.New()
	for _, k := range keys {
		h.Write([]byte(k + "\x00" + view[k] + "\x00"))
	}
	return fmt.Sprintf("%s v%s req=%q holds=%v/%x", dr.GetTypeUrl(), dr.GetVersionInfo(),
		resp.GetRequest().GetVersionInfo(), keys, h.Sum(nil)[:6])
}

const respChanSize = int(cachetypes.UnknownType) // the SotW server's ADS channel size

func describe(resp cache.Response) string {
	dr, err := resp.GetDiscoveryResponse()
	if err != nil {
		return "error: " + err.Error()
	}
	var rs []string
	for _, a := range dr.GetResources() {
		rs = append(rs, string(a.GetValue()))
	}
	slices.Sort(rs)
	sum := sha256.Sum256([]byte(strings.Join(rs, "\x00")))
	returned := resp.GetReturnedResources()
	keys := slices.Sorted(maps.Keys(returned))
	var ret []string
	for _, k := range keys {
		ret = append(ret, k+"@"+returned[k])
	}
	return fmt.Sprintf("%s v%s req=%q resources=%d/%x returned=%v", dr.GetTypeUrl(), dr.GetVersionInfo(),
		resp.GetRequest().GetVersionInfo(), len(rs), sum[:6], ret)
}

// The shared-response cache answers SotW watches exactly as
// go-control-plane's SnapshotCache in ADS mode does: the same responses
// (for EDS and RDS: leaving the proxy holding the same resources), at the
// same moments, with the same subscription state, over random
// sequences of snapshots, requests (right, stale, incomplete and
// superfluous names; ACKs and NACK-style version rewinds), cancellations
// and clears.
func TestSotwCacheMatchesSnapshotCache(t *testing.T) {
	logger := cacheLogger{slog.New(slog.NewTextHandler(io.Discard, nil))}
	inputs := []translate.Input{input("v1"), input("v1", "v2"), input("v2"), benchInput(0), benchInput(1), input("v1")}
	ref := &refCache{SnapshotCache: cache.NewSnapshotCache(true, cache.IDHash{}, logger)}
	ours := &ourCache{sotwCache: newSotwCache(logger)}
	var names [][]string // per snapshot: the cluster names
	for i, in := range inputs {
		out, err := translate.Translate(in)
		if err != nil {
			t.Fatal(err)
		}
		decoded, err := cache.NewSnapshot(fmt.Sprint(i+1), out.Resources())
		if err != nil {
			t.Fatal(err)
		}
		enc, err := encodeSnapshot(decoded)
		if err != nil {
			t.Fatal(err)
		}
		// Same version for an unchanged type, as Update does.
		if i > 0 {
			carryVersions(ref.snaps[i-1], enc)
		}
		ref.snaps = append(ref.snaps, enc)
		pub, err := publish(enc)
		if err != nil {
			t.Fatal(err)
		}
		ours.pubs = append(ours.pubs, pub)
		names = append(names, slices.Sorted(maps.Keys(enc.GetResources(resource.ClusterType))))
	}

	nodes := []string{"a", "b", "c"}
	compared, held, partial := 0, 0, 0
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 1))
		wr, wo := newWorld(ref), newWorld(ours)
		cur := map[string]int{} // node → snapshot index last set
		versions := map[string]string{}
		var log []string
		for step := range 60 {
			node := nodes[rng.IntN(len(nodes))]
			var op string
			var errR, errO error
			switch k := rng.IntN(10); {
			case k < 2:
				i := rng.IntN(len(inputs))
				cur[node] = i
				op = fmt.Sprintf("set %s %d", node, i)
				errR, errO = wr.c.set(node, i), wo.c.set(node, i)
			case k < 3:
				op = "clear " + node
				wr.c.clear(node)
				wo.c.clear(node)
				delete(cur, node)
			default:
				typeURL := allTypes[rng.IntN(len(allTypes))]
				key := node + " " + typeURL
				version := versions[key]
				switch rng.IntN(4) {
				case 0:
					version = fmt.Sprint(rng.IntN(len(inputs) + 1)) // stale, current, or rewound (a NACK)
				case 1:
					version = ""
				}
				var ns []string
				switch typeURL {
				case resource.EndpointType:
					ns = slices.Clone(names[cur[node]])
					switch rng.IntN(4) {
					case 0:
						ns = ns[:rng.IntN(len(ns)+1)] // incomplete: ADS holds the answer
					case 1:
						ns = append(ns, "gone") // one more than the snapshot has
					}
				case resource.RouteType:
					ns = []string{"mesh"}
				}
				op = fmt.Sprintf("request %s %s v%q %v", node, typeURL, version, ns)
				if typeURL == resource.EndpointType && len(ns) < len(names[cur[node]]) {
					held++
				}
				errR, errO = wr.request(node, typeURL, version, ns), wo.request(node, typeURL, version, ns)
			}
			log = append(log, op)
			partial += wo.partial
			wo.partial = 0
			if (errR == nil) != (errO == nil) {
				t.Fatalf("seed %d step %d %s: errors differ: SnapshotCache %v, ours %v\n%s", seed, step, op, errR, errO, strings.Join(log, "\n"))
			}
			for _, n := range nodes {
				gr, gotO := wr.drain(n), wo.drain(n)
				// Several responses at once: the SnapshotCache orders them by
				// type, and so do we; compare as sent.
				if !slices.Equal(gr, gotO) {
					t.Fatalf("seed %d step %d %s: node %s got\n  %v\nfrom the SnapshotCache but\n  %v\nfrom ours\nsteps:\n%s",
						seed, step, op, n, gr, gotO, strings.Join(log, "\n"))
				}
				compared += len(gr)
				for _, d := range gr {
					// The proxy ACKs what it got.
					f := strings.Fields(d)
					versions[n+" "+f[0]] = strings.TrimPrefix(f[1], "v")
				}
			}
		}
	}
	if compared < 2000 || held < 100 || partial < 100 {
		t.Errorf("only %d responses compared, %d incomplete requests, %d partial EDS/RDS responses: the sequences exercise too little",
			compared, held, partial)
	}
	t.Logf("%d responses compared, %d incomplete EDS requests, %d partial EDS/RDS responses", compared, held, partial)
}

// Every node's response shares the marshalled resources; the returned
// map is each node's own.
func TestSotwCacheSharesResources(t *testing.T) {
	c := newSotwCache(cacheLogger{slog.New(slog.NewTextHandler(io.Discard, nil))})
	out, err := translate.Translate(benchInput(0))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := cache.NewSnapshot("1", out.Resources())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := publish(snap)
	if err != nil {
		t.Fatal(err)
	}
	var got []cache.Response
	for _, id := range []string{"a", "b"} {
		if err := c.SetSnapshot(context.Background(), id, pub); err != nil {
			t.Fatal(err)
		}
		ch := make(chan cache.Response, 1)
		s := stream.NewSotwSubscription(nil, true)
		if _, err := c.CreateWatch(&cache.Request{Node: &core.Node{Id: id}, TypeUrl: resource.ClusterType}, &s, ch); err != nil {
			t.Fatal(err)
		}
		got = append(got, <-ch)
	}
	a, _ := got[0].GetDiscoveryResponse()
	b, _ := got[1].GetDiscoveryResponse()
	if a == b || len(a.Resources) != len(out.Clusters) || &a.Resources[0] != &b.Resources[0] {
		t.Error("the two nodes' responses do not share one resource list in two envelopes")
	}
	ra, rb := got[0].GetReturnedResources(), got[1].GetReturnedResources()
	delete(ra, "svc0")
	if _, ok := rb["svc0"]; !ok || len(rb) != len(out.Clusters) {
		t.Error("editing one node's returned resources changed another's")
	}
}

func TestPublishRefusesTTLs(t *testing.T) {
	out, err := translate.Translate(input("v1"))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := cache.NewSnapshot("1", out.Resources())
	if err != nil {
		t.Fatal(err)
	}
	items := snap.Resources[cachetypes.Cluster].Items
	ttl := time.Minute
	items["reviews"] = cachetypes.ResourceWithTTL{Resource: items["reviews"].Resource, TTL: &ttl}
	if _, err := publish(snap); err == nil {
		t.Error("a snapshot with a TTL was published")
	}
}

// EDS and RDS responses carry only the resources a stream does not hold in
// their current content: all of them at first, after a NACK and on a new
// stream; the changed ones after a push, one shared list for every node
// that held the same; a newly named one alone.
func TestSotwCacheSendsWhatChanged(t *testing.T) {
	c := newSotwCache(cacheLogger{slog.New(slog.NewTextHandler(io.Discard, nil))})
	pubs := []*published{publishedBench(t, 0), publishedBench(t, 1)}
	pubs[1].snap.Resources[cachetypes.Endpoint].Version = "8" // publishedBench numbers both 7
	all := slices.Sorted(maps.Keys(pubs[0].snap.GetResourcesAndTTL(resource.EndpointType)))
	var changed []string // the load assignments round 1 changed
	for _, n := range all {
		if pubs[0].snap.GetVersionMap(resource.EndpointType)[n] != pubs[1].snap.GetVersionMap(resource.EndpointType)[n] {
			changed = append(changed, n)
		}
	}
	if len(changed) == 0 || len(changed) == len(all) {
		t.Fatalf("round 1 changed %d of %d load assignments; the test needs some", len(changed), len(all))
	}

	// One EDS subscription of one node's stream, as the SotW server keeps it.
	type edsStream struct {
		node string
		sub  *stream.Subscription
		out  chan cache.Response
	}
	open := func(node string) *edsStream {
		sub := stream.NewSotwSubscription(nil, true)
		return &edsStream{node: node, sub: &sub, out: make(chan cache.Response, 1)}
	}
	// receive returns the names of the resources in st's pending answer
	// (nil if there is none), and the resource list itself.
	receive := func(st *edsStream) ([]string, []*anypb.Any) {
		t.Helper()
		select {
		case resp := <-st.out:
			st.sub.SetReturnedResources(resp.GetReturnedResources())
			dr, err := resp.GetDiscoveryResponse()
			if err != nil {
				t.Fatal(err)
			}
			return resourceNames(dr.GetResources()), dr.GetResources()
		default:
			return nil, nil
		}
	}
	request := func(st *edsStream, version string, names []string, nack bool) {
		t.Helper()
		st.sub.SetResourceSubscription(names)
		req := &cache.Request{Node: &core.Node{Id: st.node}, TypeUrl: resource.EndpointType, VersionInfo: version, ResourceNames: names}
		if nack {
			req.ErrorDetail = &rpcstatus.Status{Message: "rejected"}
		}
		if _, err := c.CreateWatch(req, st.sub, st.out); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(what string, got, want []string) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", what, got, want)
		}
	}

	a, b := open("a"), open("b")
	for _, st := range []*edsStream{a, b} {
		if err := c.SetSnapshot(context.Background(), st.node, pubs[0]); err != nil {
			t.Fatal(err)
		}
		request(st, "", all, false)
		got, _ := receive(st)
		expect("first response of "+st.node, got, all)
		request(st, "7", all, false) // ACK: the watch waits
	}

	var lists [][]*anypb.Any
	for _, st := range []*edsStream{a, b} {
		if err := c.SetSnapshot(context.Background(), st.node, pubs[1]); err != nil {
			t.Fatal(err)
		}
		got, rs := receive(st)
		expect("push to "+st.node, got, changed)
		lists = append(lists, rs)
	}
	if len(lists[0]) == 0 || &lists[0][0] != &lists[1][0] {
		t.Error("the two nodes' pushes do not share one resource list")
	}
	if _, ok := pubs[1].encodings.Load(&lists[0][0]); !ok {
		t.Error("the shared push has no shared encoding")
	}

	request(a, "7", all, true) // a rejects version 8: it holds version 7
	got, _ := receive(a)
	expect("answer to a NACK", got, all)

	b2 := open("b") // b reconnects: a new stream knows nothing
	request(b2, "", all, false)
	got, _ = receive(b2)
	expect("first response of a new stream", got, all)

	// b2 drops a name and names it again: only that one is sent.
	request(b2, "8", all[1:], false)
	if got, _ := receive(b2); got != nil {
		t.Errorf("a request naming fewer resources than the snapshot has was answered: %v", got)
	}
	request(b2, "8", all, false)
	got, _ = receive(b2)
	expect("answer to a resource named again", got, all[:1])
}

func TestFirstMissing(t *testing.T) {
	want := []string{"a", "b|v1", "c"}
	for _, tc := range []struct {
		names   []string
		missing string
	}{
		{[]string{"a", "b|v1", "c"}, ""},
		{[]string{"a", "a", "b|v1", "b|v2", "c", "d"}, ""}, // duplicates, extras
		{[]string{"c", "a", "b|v1"}, ""},                   // unsorted: looked up
		{[]string{"b|v1", "c"}, "a"},
		{[]string{"a", "c"}, "b|v1"},
		{[]string{"a", "b|v1"}, "c"},
		{[]string{"c", "a"}, "b|v1"},
		{[]string{"zz"}, "a"},
	} {
		sub := map[string]struct{}{}
		for _, n := range tc.names {
			sub[n] = struct{}{}
		}
		missing, ok := firstMissing(want, tc.names, sub)
		if ok != (tc.missing == "") || missing != tc.missing {
			t.Errorf("firstMissing(%v) = %q, %v; want %q", tc.names, missing, ok, tc.missing)
		}
	}
}
