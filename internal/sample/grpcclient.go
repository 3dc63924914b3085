package sample

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/structpb"
)

// EchoUnary calls trellis.sample.Echo/Echo with {"message": msg}.
func EchoUnary(ctx context.Context, conn grpc.ClientConnInterface, msg string) (*structpb.Struct, error) {
	in, err := structpb.NewStruct(map[string]any{"message": msg})
	if err != nil {
		return nil, err
	}
	out := new(structpb.Struct)
	if err := conn.Invoke(ctx, echoMethod, in, out); err != nil {
		return nil, err
	}
	return out, nil
}

// EchoStream calls trellis.sample.Echo/Stream and collects the replies.
// count <= 0 leaves the server default (3); the server caps it at 100.
func EchoStream(ctx context.Context, conn grpc.ClientConnInterface, msg string, count int) ([]*structpb.Struct, error) {
	fields := map[string]any{"message": msg}
	if count > 0 {
		fields["count"] = count
	}
	in, err := structpb.NewStruct(fields)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx) // releases the stream on early return
	defer cancel()
	st, err := conn.NewStream(ctx, &streamDesc, streamMethod)
	if err != nil {
		return nil, err
	}
	if err := st.SendMsg(in); err != nil {
		return nil, err
	}
	if err := st.CloseSend(); err != nil {
		return nil, err
	}
	var outs []*structpb.Struct
	for {
		out := new(structpb.Struct)
		if err := st.RecvMsg(out); errors.Is(err, io.EOF) {
			return outs, nil
		} else if err != nil {
			return outs, err
		}
		outs = append(outs, out)
	}
}

// EchoChat calls trellis.sample.Echo/Chat, sending each message and waiting
// for its echo before the next (lock-step keeps the result order obvious).
func EchoChat(ctx context.Context, conn grpc.ClientConnInterface, msgs []string) ([]*structpb.Struct, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := conn.NewStream(ctx, &chatDesc, chatMethod)
	if err != nil {
		return nil, err
	}
	outs := make([]*structpb.Struct, 0, len(msgs))
	for i, m := range msgs {
		in, err := structpb.NewStruct(map[string]any{"message": m, "seq": i})
		if err != nil {
			return outs, err
		}
		if err := st.SendMsg(in); err != nil {
			// The real cause is in the status, which RecvMsg returns.
			if errors.Is(err, io.EOF) {
				err = st.RecvMsg(new(structpb.Struct))
			}
			return outs, err
		}
		out := new(structpb.Struct)
		if err := st.RecvMsg(out); err != nil {
			return outs, err
		}
		outs = append(outs, out)
	}
	if err := st.CloseSend(); err != nil {
		return outs, err
	}
	if err := st.RecvMsg(new(structpb.Struct)); !errors.Is(err, io.EOF) {
		if err == nil {
			err = errors.New("chat: unexpected extra reply")
		}
		return outs, err
	}
	return outs, nil
}

// GRPCCallConfig configures GRPCCall.
type GRPCCallConfig struct {
	Target  string        // grpc target, e.g. "echo:9000"
	Message string        // default "hello"
	Count   int           // replies asked of Stream; default 3
	Timeout time.Duration // for all calls together; default 10s
}

// GRPCCall is a stock grpc-go client for end-to-end tests: it dials Target
// with nothing but insecure credentials, so proxying happens only as it would
// for any grpc-go app, through HTTPS_PROXY (see proxy_test.go for what grpc-go
// does with it). It runs health Check, Echo, Stream and Chat and writes one
// JSON line per reply to out, e.g.
//
//	{"call":"unary","message":"hello","metadata":{...},"service":"echo","version":"v2"}
//
// The error names the call that failed.
func GRPCCall(ctx context.Context, cfg GRPCCallConfig, out io.Writer) error {
	if cfg.Target == "" {
		return errors.New("grpc-call: no target")
	}
	if cfg.Message == "" {
		cfg.Message = "hello"
	}
	if cfg.Count <= 0 {
		cfg.Count = defaultStreamCnt
	}
	cfg.Count = min(cfg.Count, maxStreamCnt) // the server caps it too
	if cfg.Timeout <= 0 {
		cfg.Timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()

	conn, err := grpc.NewClient(cfg.Target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fmt.Errorf("grpc-call: client for %s: %w", cfg.Target, err)
	}
	defer conn.Close()

	enc := json.NewEncoder(out)
	emit := func(call string, s *structpb.Struct) error {
		m := s.AsMap()
		m["call"] = call
		return enc.Encode(m)
	}

	hr, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return fmt.Errorf("grpc-call health: %w", err)
	}
	if err := enc.Encode(map[string]any{"call": "health", "status": hr.GetStatus().String()}); err != nil {
		return err
	}
	if hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		return fmt.Errorf("grpc-call health: %s", hr.GetStatus())
	}

	u, err := EchoUnary(ctx, conn, cfg.Message)
	if err != nil {
		return fmt.Errorf("grpc-call unary: %w", err)
	}
	if err := emit("unary", u); err != nil {
		return err
	}

	ss, err := EchoStream(ctx, conn, cfg.Message, cfg.Count)
	for _, s := range ss {
		if err := emit("stream", s); err != nil {
			return err
		}
	}
	if err != nil {
		return fmt.Errorf("grpc-call stream: %w", err)
	}
	if len(ss) != cfg.Count {
		return fmt.Errorf("grpc-call stream: got %d replies, want %d", len(ss), cfg.Count)
	}

	msgs := []string{cfg.Message + " 1", cfg.Message + " 2", cfg.Message + " 3"}
	cs, err := EchoChat(ctx, conn, msgs)
	for _, s := range cs {
		if err := emit("chat", s); err != nil {
			return err
		}
	}
	if err != nil {
		return fmt.Errorf("grpc-call chat: %w", err)
	}
	return nil
}
