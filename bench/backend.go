package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// BodySize is the size of every response body (HTTP and gRPC) and of the
// gRPC request message's payload.
const BodySize = 1024

// The gRPC service, written by hand (no codegen): bench/proto/bench.proto
// describes the same service for ghz.
const (
	grpcService = "trellis.bench.Bench"
	grpcMethod  = "Echo"
	grpcCall    = grpcService + "." + grpcMethod // ghz's --call
)

// benchServer is the gRPC service's handler type.
type benchServer interface {
	echo(context.Context, *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error)
}

type benchService struct{ reply *wrapperspb.BytesValue }

func (s *benchService) echo(_ context.Context, in *wrapperspb.BytesValue) (*wrapperspb.BytesValue, error) {
	if len(in.GetValue()) != BodySize { // the load is what it says it is
		return nil, status.Errorf(codes.InvalidArgument, "request payload is %d bytes, want %d", len(in.GetValue()), BodySize)
	}
	return s.reply, nil
}

var benchServiceDesc = grpc.ServiceDesc{
	ServiceName: grpcService,
	HandlerType: (*benchServer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: grpcMethod, Handler: echoHandler}},
	Metadata:    "bench/proto/bench.proto",
}

// echoHandler is what protoc-gen-go-grpc would generate for Echo.
func echoHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(wrapperspb.BytesValue)
	if err := dec(in); err != nil {
		return nil, err
	}
	if interceptor == nil {
		return srv.(benchServer).echo(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: "/" + grpcService + "/" + grpcMethod}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return srv.(benchServer).echo(ctx, req.(*wrapperspb.BytesValue))
	})
}

// body is the fixed 1 KiB payload.
var body = bytes.Repeat([]byte("trellis-"), BodySize/8)

// httpHandler answers every request with the 1 KiB body.
func httpHandler() http.Handler {
	length := strconv.Itoa(len(body))
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		h := w.Header()
		h["Content-Type"] = []string{"application/octet-stream"}
		h["Content-Length"] = []string{length}
		_, _ = w.Write(body)
	})
}

// runBackend is `bench backend --http-port P --grpc-port G`: HTTP/1.1 and
// h2c (prior knowledge) on one port, gRPC on the other. It runs until
// SIGTERM/SIGINT. The harness starts it pinned to a core.
func runBackend(args []string) error {
	var httpPort, grpcPort int
	for i := 0; i+1 < len(args); i += 2 {
		n, err := strconv.Atoi(args[i+1])
		if err != nil {
			return fmt.Errorf("backend: %s %q: %v", args[i], args[i+1], err)
		}
		switch args[i] {
		case "--http-port":
			httpPort = n
		case "--grpc-port":
			grpcPort = n
		default:
			return fmt.Errorf("backend: unknown flag %s", args[i])
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hl, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort)))
	if err != nil {
		return err
	}
	gl, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(grpcPort)))
	if err != nil {
		return err
	}
	hs, gs := newBackendServers()
	errc := make(chan error, 2)
	go func() { errc <- hs.Serve(hl) }()
	go func() { errc <- gs.Serve(gl) }()
	fmt.Fprintf(os.Stderr, "bench backend ready: http=%s grpc=%s\n", hl.Addr(), gl.Addr())
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, http.ErrServerClosed) {
			return err
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	gs.Stop()
	return nil
}

// newBackendServers builds the HTTP (h1 + h2c) and gRPC servers.
func newBackendServers() (*http.Server, *grpc.Server) {
	var protos http.Protocols
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	hs := &http.Server{Handler: httpHandler(), Protocols: &protos, ReadHeaderTimeout: 30 * time.Second}
	gs := grpc.NewServer()
	gs.RegisterService(&benchServiceDesc, &benchService{reply: wrapperspb.Bytes(body)})
	return hs, gs
}
