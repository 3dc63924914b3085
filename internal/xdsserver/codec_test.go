package xdsserver

import (
	"bytes"
	"maps"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"trellis.dev/trellis/internal/translate"
)

func publishedBench(t *testing.T, round int) *published {
	t.Helper()
	out, err := translate.Translate(benchInput(round))
	if err != nil {
		t.Fatal(err)
	}
	snap, err := cache.NewSnapshot("7", out.Resources())
	if err != nil {
		t.Fatal(err)
	}
	pub, err := publish(snap)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

// The codec writes a shared response byte for byte as proto.Marshal
// would, whatever other fields the envelope carries.
func TestResponseCodecBytes(t *testing.T) {
	pub := publishedBench(t, 0)
	var recent recentShared
	recent.add(pub)
	codec := newResponseCodec(recent.lookup)

	for _, typ := range allTypes {
		st, err := pub.shared(typ)
		if err != nil {
			t.Fatal(err)
		}
		lists := map[string][]*anypb.Any{"full": st.resources}
		if st.partial && len(st.names) > 2 {
			// What a stream that lacks the first resource and holds
			// another version of the second gets.
			known := maps.Clone(st.returned)
			delete(known, st.names[0])
			known[st.names[1]] = "old"
			diff, err := pub.list(st, st.changedFrom(known))
			if err != nil || len(diff) != 2 {
				t.Fatalf("%s: diff of %d resources (%v), want 2", typ, len(diff), err)
			}
			lists["diff"] = diff
		}
		for list, rs := range lists {
			resp := &sharedResponse{req: &cache.Request{TypeUrl: typ}, version: "7", shared: st, resources: rs}
			for name, fill := range map[string]func(*discovery.DiscoveryResponse){
				"as sent":  func(r *discovery.DiscoveryResponse) { r.Nonce = "42" },
				"no nonce": func(*discovery.DiscoveryResponse) {},
				"every field": func(r *discovery.DiscoveryResponse) {
					r.Nonce, r.Canary, r.ControlPlane = "9", true, &core.ControlPlane{Identifier: "cp"}
					r.ProtoReflect().SetUnknown(protowire.AppendVarint(protowire.AppendTag(nil, 99, protowire.VarintType), 1))
				},
			} {
				r, _ := resp.GetDiscoveryResponse()
				fill(r)
				name := list + ", " + name
				if recent.lookup(r) == nil {
					t.Fatalf("%s %s: shared resources not recognised", typ, name)
				}
				data, err := codec.Marshal(r)
				if err != nil {
					t.Fatal(err)
				}
				want, err := proto.Marshal(r)
				if err != nil {
					t.Fatal(err)
				}
				if got := data.Materialize(); !bytes.Equal(got, want) {
					t.Errorf("%s %s: codec wrote %d bytes differing from proto.Marshal's %d", typ, name, len(got), len(want))
				}
				back := &discovery.DiscoveryResponse{}
				if err := codec.Unmarshal(data, back); err != nil || !proto.Equal(back, r) {
					t.Errorf("%s %s: does not decode to the response (%v)", typ, name, err)
				}
			}
		}
	}
}

// Responses the codec does not know are encoded the ordinary way: other
// messages, and resource lists no longer among the recent snapshots.
func TestResponseCodecFallsBack(t *testing.T) {
	var recent recentShared
	old := publishedBench(t, 0)
	recent.add(old)
	st, err := old.shared(allTypes[0])
	if err != nil {
		t.Fatal(err)
	}
	stale, _ := (&sharedResponse{req: &cache.Request{TypeUrl: allTypes[0]}, version: "7", shared: st, resources: st.resources}).GetDiscoveryResponse()
	recent.add(publishedBench(t, 1))
	if recent.lookup(stale) == nil {
		t.Fatal("the previous snapshot's encoding was dropped at once")
	}
	recent.add(publishedBench(t, 2))
	if recent.lookup(stale) != nil {
		t.Fatal("a snapshot two publishes old is still listed")
	}

	codec := newResponseCodec(recent.lookup)
	copied := &discovery.DiscoveryResponse{VersionInfo: "1", Resources: append(stale.Resources[:0:0], stale.Resources...)}
	for _, m := range []proto.Message{stale, copied, &discovery.DiscoveryRequest{VersionInfo: "3", TypeUrl: "t"}, &discovery.DiscoveryResponse{}} {
		data, err := codec.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := proto.Marshal(m)
		if !bytes.Equal(data.Materialize(), want) {
			t.Errorf("%T: bytes differ", m)
		}
	}
}
