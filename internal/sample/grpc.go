package sample

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
)

// The gRPC echo service is hand-written (no protoc): every message is a
// google.protobuf.Struct, a well-known type every protobuf runtime ships, so
// clients need no generated code either (see EchoUnary and friends).
//
//	service trellis.sample.Echo {
//	  rpc Echo(Struct) returns (Struct);
//	  rpc Stream(Struct) returns (stream Struct);
//	  rpc Chat(stream Struct) returns (stream Struct);
//	}
const (
	EchoServiceName  = "trellis.sample.Echo"
	echoMethod       = "/" + EchoServiceName + "/Echo"
	streamMethod     = "/" + EchoServiceName + "/Stream"
	chatMethod       = "/" + EchoServiceName + "/Chat"
	defaultStreamCnt = 3
	maxStreamCnt     = 100
)

// echoServer is the HandlerType of the service: RegisterService checks the
// implementation against it.
type echoServer interface {
	echo(context.Context, *structpb.Struct) (*structpb.Struct, error)
	stream(*structpb.Struct, grpc.ServerStream) error
	chat(grpc.ServerStream) error
}

var _ echoServer = (*echoService)(nil)

var (
	streamDesc = grpc.StreamDesc{StreamName: "Stream", ServerStreams: true}
	chatDesc   = grpc.StreamDesc{StreamName: "Chat", ServerStreams: true, ClientStreams: true}
)

var echoServiceDesc = grpc.ServiceDesc{
	ServiceName: EchoServiceName,
	HandlerType: (*echoServer)(nil),
	Methods:     []grpc.MethodDesc{{MethodName: "Echo", Handler: echoUnaryHandler}},
	Streams: []grpc.StreamDesc{
		{StreamName: streamDesc.StreamName, ServerStreams: true, Handler: streamHandler},
		{StreamName: chatDesc.StreamName, ServerStreams: true, ClientStreams: true, Handler: chatHandler},
	},
	Metadata: "trellis/sample (hand-written, google.protobuf.Struct messages)",
}

// newGRPCServer builds the gRPC side of the echo backend: the Echo service and
// the standard health service, SERVING for "" and the Echo service.
func newGRPCServer(cfg EchoConfig) (*grpc.Server, *health.Server) {
	s := grpc.NewServer()
	s.RegisterService(&echoServiceDesc, &echoService{cfg: cfg})
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(EchoServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, hs)
	return s, hs
}

type echoService struct{ cfg EchoConfig }

func (e *echoService) echo(ctx context.Context, in *structpb.Struct) (*structpb.Struct, error) {
	md := map[string]any{}
	// Includes :authority (the handler transport adds it from r.Host), which
	// shows the name the client dialled, e.g. echo:9000 through a proxy.
	m, _ := metadata.FromIncomingContext(ctx)
	for k, v := range m {
		if len(v) > 0 {
			md[k] = v[0]
		}
	}
	return e.reply(map[string]any{"message": field(in, "message"), "metadata": md})
}

func (e *echoService) stream(in *structpb.Struct, ss grpc.ServerStream) error {
	n := defaultStreamCnt
	if v, ok := in.GetFields()["count"]; ok && v.GetNumberValue() >= 1 {
		n = int(min(v.GetNumberValue(), maxStreamCnt))
	}
	for i := range n {
		out, err := e.reply(map[string]any{"message": field(in, "message"), "seq": i})
		if err != nil {
			return err
		}
		if err := ss.SendMsg(out); err != nil {
			return err
		}
	}
	return nil
}

func (e *echoService) chat(ss grpc.ServerStream) error {
	for {
		in := new(structpb.Struct)
		if err := ss.RecvMsg(in); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return err
		}
		out, err := e.reply(in.AsMap())
		if err != nil {
			return err
		}
		if err := ss.SendMsg(out); err != nil {
			return err
		}
	}
}

// reply adds service and version to fields.
func (e *echoService) reply(fields map[string]any) (*structpb.Struct, error) {
	fields["service"] = e.cfg.Service
	fields["version"] = e.cfg.Version
	s, err := structpb.NewStruct(fields)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "building reply: %v", err)
	}
	return s, nil
}

func field(s *structpb.Struct, name string) any {
	if v, ok := s.GetFields()[name]; ok {
		return v.AsInterface()
	}
	return ""
}

// The three handlers below are what protoc-gen-go-grpc would generate.

func echoUnaryHandler(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
	in := new(structpb.Struct)
	if err := dec(in); err != nil {
		return nil, err
	}
	s := srv.(echoServer)
	if interceptor == nil {
		return s.echo(ctx, in)
	}
	info := &grpc.UnaryServerInfo{Server: srv, FullMethod: echoMethod}
	return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
		return s.echo(ctx, req.(*structpb.Struct))
	})
}

func streamHandler(srv any, ss grpc.ServerStream) error {
	in := new(structpb.Struct)
	if err := ss.RecvMsg(in); err != nil {
		return err
	}
	return srv.(echoServer).stream(in, ss)
}

func chatHandler(srv any, ss grpc.ServerStream) error {
	return srv.(echoServer).chat(ss)
}
