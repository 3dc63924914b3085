package sample

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestGRPCHealth(t *testing.T) {
	t.Parallel()
	conn := dialGRPC(t, startEcho(t, EchoConfig{Service: "echo", Version: "v1"}))
	for _, svc := range []string{"", EchoServiceName} {
		r, err := healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health %q: %v %v", svc, r, err)
		}
	}
}

func TestGRPCUnary(t *testing.T) {
	t.Parallel()
	addr := startEcho(t, EchoConfig{Service: "echo", Version: "v1"})
	out, err := EchoUnary(t.Context(), dialGRPC(t, addr), "hi")
	if err != nil {
		t.Fatal(err)
	}
	m := out.AsMap()
	for k, v := range map[string]any{"service": "echo", "version": "v1", "message": "hi"} {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if got := path(m, "metadata", ":authority"); got != addr {
		t.Errorf("metadata[:authority] = %v, want %s", got, addr)
	}
	if got, _ := path(m, "metadata", "user-agent").(string); !strings.Contains(got, "grpc-go") {
		t.Errorf("metadata[user-agent] = %q", got)
	}
}

func TestGRPCStream(t *testing.T) {
	t.Parallel()
	conn := dialGRPC(t, startEcho(t, EchoConfig{Service: "echo", Version: "v1"}))
	tests := []struct{ count, want int }{{0, 3}, {1, 1}, {5, 5}, {500, 100}}
	for _, tt := range tests {
		outs, err := EchoStream(t.Context(), conn, "s", tt.count)
		if err != nil {
			t.Fatalf("count %d: %v", tt.count, err)
		}
		if len(outs) != tt.want {
			t.Fatalf("count %d: %d replies, want %d", tt.count, len(outs), tt.want)
		}
		for i, o := range outs {
			m := o.AsMap()
			if m["seq"] != float64(i) || m["message"] != "s" || m["service"] != "echo" {
				t.Errorf("reply %d: %v", i, m)
			}
		}
	}
}

func TestGRPCChat(t *testing.T) {
	t.Parallel()
	conn := dialGRPC(t, startEcho(t, EchoConfig{Service: "echo", Version: "v3"}))
	msgs := []string{"a", "b", "c", "d"}
	outs, err := EchoChat(t.Context(), conn, msgs)
	if err != nil {
		t.Fatal(err)
	}
	if len(outs) != len(msgs) {
		t.Fatalf("%d replies", len(outs))
	}
	for i, o := range outs {
		m := o.AsMap()
		if m["message"] != msgs[i] || m["seq"] != float64(i) || m["version"] != "v3" {
			t.Errorf("reply %d: %v", i, m)
		}
	}
}

// A gRPC stream in flight when ServeEcho is asked to stop finishes normally.
func TestGRPCStreamSurvivesShutdown(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeEcho(ctx, lis, EchoConfig{Logger: discard}) }()

	conn := dialGRPC(t, lis.Addr().String())
	st, err := conn.NewStream(t.Context(), &chatDesc, chatMethod)
	if err != nil {
		t.Fatal(err)
	}
	exchange := func(msg string) {
		t.Helper()
		in, _ := structpb.NewStruct(map[string]any{"message": msg})
		out := new(structpb.Struct)
		if err := st.SendMsg(in); err != nil {
			t.Fatal(err)
		}
		if err := st.RecvMsg(out); err != nil || out.AsMap()["message"] != msg {
			t.Fatalf("%s: %v %v", msg, out, err)
		}
	}
	exchange("before")

	// Watch health to know when shutdown has begun: it turns NOT_SERVING first.
	wctx, wcancel := context.WithCancel(t.Context())
	w, err := healthpb.NewHealthClient(conn).Watch(wctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v %v", r, err)
	}
	cancel()
	if r, err := w.Recv(); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch: %v %v", r, err)
	}
	wcancel() // a watch would otherwise hold shutdown open like any stream
	exchange("during shutdown")
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := st.RecvMsg(new(structpb.Struct)); !errors.Is(err, io.EOF) {
		t.Fatalf("end of chat: %v", err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(shutdownGrace - time.Second):
		t.Fatal("ServeEcho did not return after the stream ended")
	}
}

func TestGRPCCallDirect(t *testing.T) {
	t.Parallel()
	addr := startEcho(t, EchoConfig{Service: "echo", Version: "v2"})
	var out bytes.Buffer
	if err := GRPCCall(t.Context(), GRPCCallConfig{Target: addr, Message: "m", Count: 2}, &out); err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	for line := range strings.Lines(out.String()) {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		calls[m["call"].(string)]++
		if m["call"] != "health" && (m["service"] != "echo" || m["version"] != "v2") {
			t.Errorf("line %q", line)
		}
	}
	if want := map[string]int{"health": 1, "unary": 1, "stream": 2, "chat": 3}; !maps.Equal(calls, want) {
		t.Errorf("calls %v, want %v\n%s", calls, want, out.String())
	}
}

func TestGRPCCallNamesFailingCall(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	err = GRPCCall(t.Context(), GRPCCallConfig{Target: dead, Timeout: 5 * time.Second}, new(bytes.Buffer))
	if err == nil || !strings.Contains(err.Error(), "grpc-call health") {
		t.Fatalf("err = %v", err)
	}
}
