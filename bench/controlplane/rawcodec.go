package main

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// rawResponse is a DiscoveryResponse as a simulated proxy reads it: the
// envelope's fields, how many resources and how many bytes, and for CDS
// the cluster names. The resources are not decoded (2,000 proxies in one
// process decoding every push would measure the benchmark, not the
// control plane), except by the verifying proxy, which keeps the bytes.
type rawResponse struct {
	keep bool // keep raw for a full decode

	version, typeURL, nonce string
	resources               int // number of resources
	resourceBytes           int // sum of their encoded sizes
	size                    int // the whole message
	names                   []string
	raw                     []byte
}

// rawCodec is the simulated proxies' gRPC codec: proto for everything but
// rawResponse.
type rawCodec struct{ proto encoding.CodecV2 }

func newRawCodec() rawCodec { return rawCodec{proto: encoding.GetCodecV2(grpcproto.Name)} }

func (rawCodec) Name() string { return grpcproto.Name }

func (c rawCodec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (c rawCodec) Unmarshal(data mem.BufferSlice, v any) error {
	r, ok := v.(*rawResponse)
	if !ok {
		return c.proto.Unmarshal(data, v)
	}
	if r.keep {
		r.raw = data.Materialize()
		return r.parse(r.raw)
	}
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	return r.parse(buf.ReadOnlyData())
}

// DiscoveryResponse fields, and the fields of Any.
const (
	fieldVersion   = 1
	fieldResources = 2
	fieldTypeURL   = 4
	fieldNonce     = 5
	anyValue       = 2
)

func (r *rawResponse) parse(b []byte) error {
	r.size = len(b)
	err := eachField(b, func(num protowire.Number, v []byte) error {
		switch num {
		case fieldVersion:
			r.version = string(v)
		case fieldTypeURL:
			r.typeURL = string(v)
		case fieldNonce:
			r.nonce = string(v)
		case fieldResources:
			r.resources++
			return eachField(v, func(num protowire.Number, val []byte) error {
				if num == anyValue {
					r.resourceBytes += len(val)
				}
				return nil
			})
		}
		return nil
	})
	if err != nil || r.typeURL != resource.ClusterType {
		return err
	}
	// CDS: the names, for the EDS subscription.
	r.names = make([]string, 0, r.resources)
	return eachField(b, func(num protowire.Number, v []byte) error {
		if num != fieldResources {
			return nil
		}
		return eachField(v, func(num protowire.Number, val []byte) error {
			if num != anyValue {
				return nil
			}
			name, err := field1(val)
			r.names = append(r.names, name)
			return err
		})
	})
}

// eachField calls fn with every length-delimited field of the message b
// (other wire types are skipped).
func eachField(b []byte, fn func(protowire.Number, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if typ != protowire.BytesType {
			n = protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return protowire.ParseError(n)
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		if err := fn(num, v); err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

// field1 reads the name (field 1 of Cluster, Listener, RouteConfiguration
// and ClusterLoadAssignment alike) of an encoded resource.
func field1(b []byte) (string, error) {
	var name string
	found := false
	err := eachField(b, func(num protowire.Number, v []byte) error {
		if num == 1 && !found {
			name, found = string(v), true
		}
		return nil
	})
	if err == nil && !found {
		err = fmt.Errorf("resource without a name")
	}
	return name, err
}
