package model_test

import (
	"runtime"
	"testing"

	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/proxy/model/modeltest"
)

// BenchmarkBuildScale measures what an idle sidecar holds for a mesh of
// 1,000 services (2 versions, 2 instances each; modeltest.Scale): the xDS
// resources as the xDS client keeps them (decoded from the wire, for ACKs
// and to compare the next response), and the model.Snapshot the data plane
// routes with. Reported per op: proto-MB and snapshot-MB, the live heap of
// each after a GC; B/op and allocs/op are those of model.Build.
//
//	go test ./internal/proxy/model -run XXX -bench BuildScale -benchtime 5x
func BenchmarkBuildScale(b *testing.B) {
	wire := marshalAll(b, modeltest.Scale(1000, 2, 2))
	var protoBytes, snapBytes uint64
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		before := liveHeap()
		r := unmarshalAll(b, wire)
		afterProtos := liveHeap()
		b.StartTimer()
		snap, err := model.Build(map[string]string{"all": "1"}, r.Listeners, r.Routes, r.Clusters, r.Loads)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		afterSnap := liveHeap()
		protoBytes += afterProtos - before
		snapBytes += afterSnap - afterProtos
		runtime.KeepAlive(r)
		runtime.KeepAlive(snap)
		b.StartTimer()
	}
	b.ReportMetric(float64(protoBytes)/float64(b.N)/(1<<20), "proto-MB")
	b.ReportMetric(float64(snapBytes)/float64(b.N)/(1<<20), "snapshot-MB")
}

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

type wireResources struct{ listeners, routes, clusters, loads [][]byte }

func marshalAll(b *testing.B, r *modeltest.Resources) wireResources {
	var w wireResources
	m := func(dst *[][]byte, msg proto.Message) {
		buf, err := proto.Marshal(msg)
		if err != nil {
			b.Fatal(err)
		}
		*dst = append(*dst, buf)
	}
	for _, x := range r.Listeners {
		m(&w.listeners, x)
	}
	for _, x := range r.Routes {
		m(&w.routes, x)
	}
	for _, x := range r.Clusters {
		m(&w.clusters, x)
	}
	for _, x := range r.Loads {
		m(&w.loads, x)
	}
	return w
}

// unmarshalAll decodes the resources as the xDS client does: each into a
// new message.
func unmarshalAll(b *testing.B, w wireResources) *modeltest.Resources {
	r := &modeltest.Resources{}
	r.Listeners = decodeWire(b, w.listeners, r.Listeners)
	r.Routes = decodeWire(b, w.routes, r.Routes)
	r.Clusters = decodeWire(b, w.clusters, r.Clusters)
	r.Loads = decodeWire(b, w.loads, r.Loads)
	return r
}

func decodeWire[M proto.Message](b *testing.B, bufs [][]byte, out []M) []M {
	for _, buf := range bufs {
		var zero M
		m := zero.ProtoReflect().New().Interface().(M)
		if err := proto.Unmarshal(buf, m); err != nil {
			b.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}
