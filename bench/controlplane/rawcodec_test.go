package main

import (
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestRawResponse(t *testing.T) {
	resp := &discovery.DiscoveryResponse{VersionInfo: "12", TypeUrl: resource.ClusterType, Nonce: "3"}
	valueBytes := 0
	for _, name := range []string{"b", "a|v1", "a"} {
		a, err := anypb.New(&clusterv3.Cluster{Name: name, ConnectTimeout: durationpb.New(1e9)})
		if err != nil {
			t.Fatal(err)
		}
		valueBytes += len(a.Value)
		resp.Resources = append(resp.Resources, a)
	}
	wire, err := proto.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	for _, keep := range []bool{false, true} {
		r := &rawResponse{keep: keep}
		if err := newRawCodec().Unmarshal(mem.BufferSlice{mem.SliceBuffer(wire)}, r); err != nil {
			t.Fatal(err)
		}
		if r.version != "12" || r.typeURL != resource.ClusterType || r.nonce != "3" || r.resources != 3 ||
			r.resourceBytes != valueBytes || r.size != len(wire) || !slices.Equal(r.names, []string{"b", "a|v1", "a"}) {
			t.Errorf("keep=%v: parsed %+v", keep, r)
		}
		if keep != (r.raw != nil) {
			t.Errorf("keep=%v: raw kept: %v", keep, r.raw != nil)
		}
	}

	// Only CDS names are read.
	resp.TypeUrl = resource.EndpointType
	wire, _ = proto.Marshal(resp)
	r := &rawResponse{}
	if err := r.parse(wire); err != nil || r.names != nil || r.resources != 3 {
		t.Errorf("EDS: %+v, %v", r, err)
	}
	if err := r.parse([]byte{0x0a, 0x05, 'x'}); err == nil {
		t.Error("a truncated message parsed")
	}
}
