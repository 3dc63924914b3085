package xdsserver

import (
	"sync/atomic"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// responseCodec is the xDS server's gRPC codec: gRPC's proto codec, except
// for a SotW response that carries a snapshot's shared resources
// (sotwcache.go). Those were encoded once, with the snapshot; the codec
// writes the response as its own few fields around that shared encoding,
// instead of encoding — copying — every resource again into a buffer of
// its own for every stream. A push of R bytes to N proxies then holds one
// copy of R, not N, while gRPC writes it out, and copies it once less.
//
// The bytes are the ones proto.Marshal makes of the response, field for
// field and in the same order (version_info, the resources, then the
// fields numbered after them); TestResponseCodecBytes checks that.
type responseCodec struct {
	proto  encoding.CodecV2
	shared func(*discovery.DiscoveryResponse) []byte // the resources' encoding, or nil
}

var _ encoding.CodecV2 = responseCodec{}

func newResponseCodec(shared func(*discovery.DiscoveryResponse) []byte) responseCodec {
	return responseCodec{proto: encoding.GetCodecV2(grpcproto.Name), shared: shared}
}

// Name is the proto codec's: the content-subtype does not change.
func (c responseCodec) Name() string { return grpcproto.Name }

func (c responseCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return c.proto.Unmarshal(data, v)
}

func (c responseCodec) Marshal(v any) (mem.BufferSlice, error) {
	r, ok := v.(*discovery.DiscoveryResponse)
	if !ok {
		return c.proto.Marshal(v)
	}
	resources := c.shared(r)
	if resources == nil {
		return c.proto.Marshal(v)
	}
	// Field 1 before the resources (field 2), every other field after.
	head, err := proto.Marshal(&discovery.DiscoveryResponse{VersionInfo: r.GetVersionInfo()})
	if err != nil {
		return nil, err
	}
	rest := &discovery.DiscoveryResponse{}
	r.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, val protoreflect.Value) bool {
		if n := fd.Number(); n != 1 && n != 2 {
			rest.ProtoReflect().Set(fd, val)
		}
		return true
	})
	rest.ProtoReflect().SetUnknown(r.ProtoReflect().GetUnknown())
	tail, err := proto.Marshal(rest)
	if err != nil {
		return nil, err
	}
	// SliceBuffers are never freed to a pool: the shared encoding stays
	// intact for the other streams.
	return mem.BufferSlice{mem.SliceBuffer(head), mem.SliceBuffer(resources), mem.SliceBuffer(tail)}, nil
}

// sharedEncoding is a shared resource list's encoding as field 2 of a
// DiscoveryResponse; published.encodings finds it by the list's first
// element's address.
type sharedEncoding struct {
	n       int // the list's length: a shorter list at the same address is another one
	encoded []byte
}

// recentShared holds the encodings of the last two published snapshots:
// a stream may still be sending the previous one. A response whose
// encoding is no longer listed is encoded the ordinary way.
type recentShared struct {
	p atomic.Pointer[[2]*published]
}

func (r *recentShared) add(pub *published) {
	var next [2]*published
	if cur := r.p.Load(); cur != nil {
		next[1] = cur[0]
	}
	next[0] = pub
	r.p.Store(&next)
}

// lookup returns the shared encoding of resp's resources, or nil.
func (r *recentShared) lookup(resp *discovery.DiscoveryResponse) []byte {
	rs := resp.GetResources()
	cur := r.p.Load()
	if len(rs) == 0 || cur == nil {
		return nil
	}
	for _, pub := range cur {
		if pub == nil {
			continue
		}
		if e, ok := pub.encodings.Load(&rs[0]); ok && e.(*sharedEncoding).n == len(rs) {
			return e.(*sharedEncoding).encoded
		}
	}
	return nil
}
