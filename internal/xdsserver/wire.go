package xdsserver

import (
	"bytes"
	"fmt"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Pre-encoded resources.
//
// go-control-plane's SnapshotCache marshals every resource of a response
// for every node it answers, with deterministic marshalling (map keys
// sorted): a push of T bytes of config to N proxies costs N full marshals
// of T, although every node gets the same bytes. At 1,000 proxies and
// 1,000 services that was two thirds of the control plane's CPU, enough to
// starve etcd of the time to renew instance leases (see
// docs/performance.md, "Control plane at scale").
//
// So each resource is marshalled once, when its snapshot is built, and the
// cache is given a stand-in: an empty message of the same type holding
// the resource's name (go-control-plane reads names; the delta server keys
// resource versions by them) and the rest of its encoding as unknown
// fields. Marshalling a stand-in copies those bytes, and the result is the
// resource's own encoding byte for byte: the name is field 1 of every type
// Trellis publishes, and deterministic marshalling writes fields in number
// order and unknown fields last. encodeResource checks that equality for
// every resource and keeps the original when it does not hold.
//
// Nothing in this package or in go-control-plane's serving path reads a
// stand-in's other fields: Consistent() runs on the decoded snapshot,
// before encoding, and comparing two stand-ins with proto.Equal compares
// their names and encodings (carryVersions).

// encodeSnapshot returns a snapshot with the versions of snap whose
// resources are pre-encoded stand-ins.
func encodeSnapshot(snap *cache.Snapshot) (*cache.Snapshot, error) {
	out := &cache.Snapshot{}
	for i, rs := range snap.Resources {
		if rs.Items == nil {
			out.Resources[i] = rs
			continue
		}
		items := make(map[string]types.ResourceWithTTL, len(rs.Items))
		for name, r := range rs.Items {
			enc, err := encodeResource(r.Resource)
			if err != nil {
				return nil, fmt.Errorf("encoding %q: %w", name, err)
			}
			items[name] = types.ResourceWithTTL{Resource: enc, TTL: r.TTL}
		}
		out.Resources[i] = cache.Resources{Version: rs.Version, Items: items}
	}
	return out, nil
}

// encodeResource returns the stand-in of r, or r itself when its encoding
// does not start with its name as field 1.
func encodeResource(r types.Resource) (types.Resource, error) {
	wire, err := cache.MarshalResource(r) // what the cache would send
	if err != nil {
		return nil, err
	}
	m := r.ProtoReflect()
	name := m.Descriptor().Fields().ByNumber(1)
	if name == nil || name.Kind() != protoreflect.StringKind || name.Cardinality() == protoreflect.Repeated {
		return r, nil
	}
	num, typ, n := protowire.ConsumeTag(wire)
	if n < 0 || num != 1 || typ != protowire.BytesType {
		return r, nil // no name (or not first): nothing to gain, keep r
	}
	_, m2 := protowire.ConsumeBytes(wire[n:])
	if m2 < 0 {
		return r, nil
	}
	standIn := m.New()
	standIn.Set(name, m.Get(name))
	standIn.SetUnknown(wire[n+m2:])
	enc := standIn.Interface()
	if again, err := cache.MarshalResource(enc); err != nil || !bytes.Equal(again, wire) {
		return r, nil
	}
	return enc, nil
}
