package xdsclient

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/proxy/model/modeltest"
)

const (
	nodeID   = "sidecar-1"
	deadline = 10 * time.Second // generous: only a failing test waits this long
)

// request is one DiscoveryRequest the server saw, and on which stream.
type request struct {
	stream int64
	req    *discoveryv3.DiscoveryRequest
}

// testServer is a go-control-plane ADS server on a real socket.
type testServer struct {
	addr  string
	cache cache.SnapshotCache
	grpc  *grpc.Server

	mu       sync.Mutex
	requests []request // as the callbacks see them
	wire     []*discoveryv3.DiscoveryRequest
	closed   []int64 // streams closed
}

// startServer serves ADS on addr ("127.0.0.1:0" for a new port).
func startServer(t *testing.T, addr string) *testServer {
	t.Helper()
	var lis net.Listener
	var err error
	// The port of a just-stopped server can take a moment to free up.
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		if lis, err = net.Listen("tcp", addr); err == nil || time.Since(start) > deadline {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	s := &testServer{addr: lis.Addr().String(), cache: cache.NewSnapshotCache(true, cache.IDHash{}, nil)}
	callbacks := server.CallbackFuncs{
		StreamRequestFunc: func(id int64, req *discoveryv3.DiscoveryRequest) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.requests = append(s.requests, request{id, proto.Clone(req).(*discoveryv3.DiscoveryRequest)})
			return nil
		},
		StreamClosedFunc: func(id int64, _ *corev3.Node) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.closed = append(s.closed, id)
		},
	}
	// The client pings every 10s; allow it, as the Trellis control plane must.
	s.grpc = grpc.NewServer(grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
		MinTime: 5 * time.Second, PermitWithoutStream: true,
	}), grpc.StreamInterceptor(s.recordWire))
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.grpc, server.NewServer(context.Background(), s.cache, callbacks))
	go s.grpc.Serve(lis)
	t.Cleanup(s.grpc.Stop)
	return s
}

// recordWire keeps requests as the client sent them: go-control-plane
// copies the stream's node into every request before its callbacks run.
func (s *testServer) recordWire(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	return handler(srv, &recordingStream{ServerStream: ss, s: s})
}

type recordingStream struct {
	grpc.ServerStream
	s *testServer
}

func (r *recordingStream) RecvMsg(m any) error {
	err := r.ServerStream.RecvMsg(m)
	if req, ok := m.(*discoveryv3.DiscoveryRequest); ok && err == nil {
		r.s.mu.Lock()
		r.s.wire = append(r.s.wire, proto.Clone(req).(*discoveryv3.DiscoveryRequest))
		r.s.mu.Unlock()
	}
	return err
}

// set publishes r to the client's node, every type at version.
func (s *testServer) set(t *testing.T, version string, r *modeltest.Resources) {
	t.Helper()
	s.setVersions(t, r, map[string]string{
		resource.ClusterType: version, resource.ListenerType: version,
		resource.EndpointType: version, resource.RouteType: version,
	})
}

// setVersions publishes r with a version per type URL, so that a test can
// change one type and leave the others as the client has them.
func (s *testServer) setVersions(t *testing.T, r *modeltest.Resources, versions map[string]string) {
	t.Helper()
	snap, err := cache.NewSnapshot("", map[resource.Type][]types.Resource{
		resource.ClusterType:  asResources(r.Clusters),
		resource.ListenerType: asResources(r.Listeners),
		resource.EndpointType: asResources(r.Loads),
		resource.RouteType:    asResources(r.Routes),
	})
	if err != nil {
		t.Fatal(err)
	}
	for typ, v := range versions {
		snap.Resources[cache.GetResponseType(typ)].Version = v
	}
	if err := s.cache.SetSnapshot(context.Background(), nodeID, snap); err != nil {
		t.Fatal(err)
	}
}

func asResources[T types.Resource](in []T) []types.Resource {
	out := make([]types.Resource, len(in))
	for i, r := range in {
		out[i] = r
	}
	return out
}

// waitRequest waits for a request matching ok and returns it.
func (s *testServer) waitRequest(t *testing.T, what string, ok func(request) bool) request {
	t.Helper()
	var found request
	eventually(t, what, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, r := range s.requests {
			if ok(r) {
				found = r
				return true
			}
		}
		return false
	})
	return found
}

func (s *testServer) countRequests(ok func(request) bool) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.requests {
		if ok(r) {
			n++
		}
	}
	return n
}

func (s *testServer) streamClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.closed) > 0
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Since(start) > deadline {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// testClient runs a Client against addr until the test ends.
type testClient struct {
	*Client
	updates chan *model.Snapshot
	logs    *logRecorder
	cancel  context.CancelFunc
	done    chan error
	stopped sync.Once
}

func startClient(t *testing.T, addr string) *testClient {
	t.Helper()
	tc := &testClient{updates: make(chan *model.Snapshot, 100), done: make(chan error, 1), logs: &logRecorder{}}
	tc.Client = New(Config{
		Addr:     addr,
		Node:     &corev3.Node{Id: nodeID, Cluster: "reviews"},
		Logger:   slog.New(tc.logs),
		OnUpdate: func(s *model.Snapshot) { tc.updates <- s },
	})
	ctx, cancel := context.WithCancel(context.Background())
	tc.cancel = cancel
	go func() { tc.done <- tc.Run(ctx) }()
	t.Cleanup(func() { tc.stop(t) })
	return tc
}

// stop cancels Run and checks it returns nil.
func (tc *testClient) stop(t *testing.T) {
	t.Helper()
	tc.stopped.Do(func() {
		tc.cancel()
		select {
		case err := <-tc.done:
			if err != nil {
				t.Errorf("Run returned %v, want nil", err)
			}
		case <-time.After(deadline):
			t.Fatal("Run did not return after cancel")
		}
	})
}

// waitUpdate waits for a snapshot matching ok; snapshots before it must
// satisfy meanwhile (nil: anything goes).
func (tc *testClient) waitUpdate(t *testing.T, what string, ok, meanwhile func(*model.Snapshot) bool) *model.Snapshot {
	t.Helper()
	timeout := time.After(deadline)
	for {
		select {
		case s := <-tc.updates:
			if ok(s) {
				return s
			}
			if meanwhile != nil && !meanwhile(s) {
				t.Fatalf("waiting for %s: unexpected snapshot with versions %v", what, s.Versions)
			}
		case <-timeout:
			t.Fatalf("timed out waiting for %s; status %+v", what, tc.Status())
		}
	}
}

// noUpdate checks that no snapshot is queued.
func (tc *testClient) noUpdate(t *testing.T, why string) {
	t.Helper()
	select {
	case s := <-tc.updates:
		t.Fatalf("%s: unexpected snapshot with versions %v", why, s.Versions)
	default:
	}
}

func atVersion(v string) func(*model.Snapshot) bool {
	return func(s *model.Snapshot) bool {
		for _, typ := range typeURLs {
			if s.Versions[typ] != v {
				return false
			}
		}
		return true
	}
}

func isType(typ string) func(request) bool {
	return func(r request) bool { return r.req.GetTypeUrl() == typ }
}

// logRecorder is a slog.Handler that keeps messages (not attributes) so a
// test can count them; nothing is printed.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string // "LEVEL message"
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logRecorder) WithGroup(string) slog.Handler            { return l }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.msgs = append(l.msgs, r.Level.String()+" "+r.Message)
	return nil
}

func (l *logRecorder) count(levelAndMsg string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, m := range l.msgs {
		if m == levelAndMsg {
			n++
		}
	}
	return n
}
