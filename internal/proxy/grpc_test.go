package proxy

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/model"
)

// healthBackend is grpc-go's health service, with a Watch for the service
// "stream" that proves streaming works through the proxies: it sends one
// message, waits until the client has received it (so nothing may sit in a
// buffer), sends another, then ends with a non-OK status and a trailer.
type healthBackend struct {
	*health.Server
	proceed chan struct{}
}

func (h *healthBackend) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	grpc.SetHeader(ctx, metadata.Pairs("x-header", "h"))
	grpc.SetTrailer(ctx, metadata.Pairs("x-trailer", "t"))
	return h.Server.Check(ctx, req)
}

func (h *healthBackend) Watch(req *healthpb.HealthCheckRequest, s healthpb.Health_WatchServer) error {
	if req.GetService() != "stream" {
		return h.Server.Watch(req, s)
	}
	if err := s.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}); err != nil {
		return err
	}
	select {
	case <-h.proceed:
	case <-s.Context().Done():
		return s.Context().Err()
	}
	if err := s.Send(&healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING}); err != nil {
		return err
	}
	s.SetTrailer(metadata.Pairs("x-trailer", "watch-done"))
	return status.Error(codes.ResourceExhausted, "watch budget spent: 2 messages")
}

// grpcMesh is service "hc" (a gRPC health server behind its sidecar) and a
// client sidecar routing to it.
func grpcMesh(t *testing.T) (*healthBackend, *Proxy) {
	t.Helper()
	hb := &healthBackend{Server: health.NewServer(), proceed: make(chan struct{})}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, hb)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	side := sidecar(t, "hc", "v1", ln.Addr().String())
	client, _ := startProxy(t, Config{Role: meshxds.RoleSidecar}, snapshot(
		[]*model.VirtualHost{vhost("hc", to("hc|v1", 100)), vhost("down", to("down|v1", 100))},
		map[string][]string{"hc|v1": {side.InboundAddr()}, "down|v1": {}},
	))
	return hb, client
}

// grpcClients are the two ways an app's gRPC client reaches the mesh:
// h2c straight to the outbound listener with the service as authority, and
// through CONNECT as grpc-go does with HTTPS_PROXY.
func grpcClients(t *testing.T, outbound, authority string) map[string]*grpc.ClientConn {
	t.Helper()
	direct, err := grpc.NewClient("passthrough:///"+outbound,
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithAuthority(authority))
	if err != nil {
		t.Fatal(err)
	}
	viaConnect, err := grpc.NewClient("passthrough:///"+authority,
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(connectDial(outbound)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close(); viaConnect.Close() })
	return map[string]*grpc.ClientConn{"h2c": direct, "CONNECT": viaConnect}
}

func TestGRPC(t *testing.T) {
	hb, client := grpcMesh(t)
	for name, cc := range grpcClients(t, client.OutboundAddr(), "hc:9090") {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			hc := healthpb.NewHealthClient(cc)

			t.Run("unary", func(t *testing.T) {
				var header, trailer metadata.MD
				resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Header(&header), grpc.Trailer(&trailer))
				if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					t.Fatalf("Check: %v %v", resp, err)
				}
				if got := header.Get(meshxds.HeaderVersion); len(got) != 1 || got[0] != "v1" {
					t.Errorf("header %s = %v", meshxds.HeaderVersion, got)
				}
				if header.Get("x-header")[0] != "h" || len(trailer.Get("x-trailer")) != 1 || trailer.Get("x-trailer")[0] != "t" {
					t.Errorf("header %v trailer %v", header, trailer)
				}
			})

			t.Run("unary error", func(t *testing.T) {
				_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "missing"})
				if st := status.Convert(err); st.Code() != codes.NotFound || st.Message() != "unknown service" {
					t.Fatalf("Check(missing) = %v, want NotFound \"unknown service\"", err)
				}
			})

			t.Run("server streaming", func(t *testing.T) {
				var trailer metadata.MD
				stream, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{Service: "stream"}, grpc.Trailer(&trailer))
				if err != nil {
					t.Fatal(err)
				}
				first, err := stream.Recv()
				if err != nil || first.GetStatus() != healthpb.HealthCheckResponse_SERVING {
					t.Fatalf("first: %v %v", first, err)
				}
				hb.proceed <- struct{}{}
				second, err := stream.Recv()
				if err != nil || second.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
					t.Fatalf("second: %v %v", second, err)
				}
				_, err = stream.Recv()
				if st := status.Convert(err); st.Code() != codes.ResourceExhausted || st.Message() != "watch budget spent: 2 messages" {
					t.Fatalf("end of stream: %v", err)
				}
				if got := trailer.Get("x-trailer"); len(got) != 1 || got[0] != "watch-done" {
					t.Fatalf("trailer %v", trailer)
				}
			})
		})
	}
}

// Mesh errors reach a gRPC client as gRPC statuses.
func TestGRPCMeshErrors(t *testing.T) {
	_, client := grpcMesh(t)
	tests := []struct {
		authority string
		code      codes.Code
		message   string
	}{
		{"nowhere:9090", codes.Unimplemented, `no_route: host "nowhere" matches no service`},
		{"down:9090", codes.Unavailable, `no_healthy_upstream: service "down" version "v1" has no healthy instance`},
	}
	for _, tt := range tests {
		for name, cc := range grpcClients(t, client.OutboundAddr(), tt.authority) {
			t.Run(tt.authority+"/"+name, func(t *testing.T) {
				_, err := healthpb.NewHealthClient(cc).Check(context.Background(), &healthpb.HealthCheckRequest{})
				if name == "CONNECT" && tt.authority == "nowhere:9090" {
					// Not a mesh service: a host outside the mesh, which the
					// sidecar connects to before answering CONNECT, as
					// without a mesh (tunnel_test.go).
					if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "CONNECT: 503") {
						t.Fatalf("got %v, want Unavailable with the CONNECT's 503", err)
					}
					return
				}
				if st := status.Convert(err); st.Code() != tt.code || st.Message() != tt.message {
					t.Fatalf("got %v, want %v %q", err, tt.code, tt.message)
				}
			})
		}
	}
}
