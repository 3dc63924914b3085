package forward

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"trellis.dev/trellis/internal/meshxds"
)

// slowBackend answers after a long sleep that no test waits for: it ends
// when its request is cancelled (the proxy gave up and closed the
// connection or reset the stream), reported on cancelled, or when the
// test is over.
func slowBackend(t *testing.T) (addr string, cancelled <-chan struct{}) {
	stop := make(chan struct{})
	c := make(chan struct{}, 8)
	addr = serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
			c <- struct{}{}
		case <-time.After(time.Minute):
			w.Write([]byte("late"))
		case <-stop:
		}
	}))
	t.Cleanup(func() { close(stop) })
	return addr, c
}

// watchingWriter is a ResponseWriter that can tell whether its client is
// gone, as h1server's can: the fast path then waits for the answer in
// slices, re-arming the connection's read deadline after each.
type watchingWriter struct{ http.ResponseWriter }

func (watchingWriter) ClientGone() bool { return false }

// A request whose deadline passes before the instance answers is
// answered 504 upstream_timeout (grpc-status 4 for gRPC), and the exchange
// with the instance ends: it sees its request cancelled, and the fast
// path's connection is not pooled. On every path: the fast path with and
// without a client watcher (the watcher's wait slices used to re-arm the
// read deadline that the cancellation had set, so the request waited for
// the instance), ReverseProxy over HTTP/1.1 and over h2c.
func TestDeadlineIsUpstreamTimeout(t *testing.T) {
	cases := []struct {
		name       string
		noFastPath bool
		watch      bool
		h2c        bool
		grpc       bool
	}{
		{name: "fast path, client watcher", watch: true},
		{name: "fast path"},
		{name: "ReverseProxy HTTP/1.1", noFastPath: true},
		{name: "ReverseProxy h2c", h2c: true},
		{name: "gRPC over h2c", h2c: true, grpc: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			backend, cancelled := slowBackend(t)
			f := New(Options{NoFastPath: tc.noFastPath})
			t.Cleanup(f.CloseIdleConnections)
			target := &Target{Addr: backend, Service: "reviews", Version: "v1", Timeout: 100 * time.Millisecond}
			proxy := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ctx, cancel := context.WithTimeout(r.Context(), target.Timeout)
				defer cancel()
				if tc.watch {
					w = watchingWriter{w}
				}
				f.Forward(w, r.WithContext(ctx), target)
			}))
			c := clients(t)["HTTP/1.1"]
			if tc.h2c {
				c = clients(t)["HTTP/2.0"]
			}
			c.Timeout = 10 * time.Second // a bound for a failing test, not a measure
			req, _ := http.NewRequest("GET", "http://"+proxy+"/slow", nil)
			req.Host = "reviews"
			if tc.grpc {
				req.Method = "POST"
				req.Header.Set("Content-Type", "application/grpc")
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatalf("no answer: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusGatewayTimeout || resp.Header.Get(meshxds.HeaderError) != "upstream_timeout" {
				t.Fatalf("got %d %q, want 504 upstream_timeout", resp.StatusCode, resp.Header.Get(meshxds.HeaderError))
			}
			if tc.grpc && resp.Header.Get("Grpc-Status") != "4" {
				t.Errorf("grpc-status %q, want 4 (DEADLINE_EXCEEDED)", resp.Header.Get("Grpc-Status"))
			}
			select {
			case <-cancelled:
			case <-time.After(10 * time.Second):
				t.Fatal("the instance's request was not cancelled")
			}
			f.pool.mu.Lock()
			pooled := len(f.pool.idle[backend])
			f.pool.mu.Unlock()
			if pooled != 0 {
				t.Errorf("%d connections to the instance pooled after the timeout, want 0", pooled)
			}
		})
	}
}

// The message names the destination and the limit.
func TestUpstreamTimeoutMessage(t *testing.T) {
	f := New(Options{})
	ctx, cancel := context.WithDeadline(context.Background(), time.Unix(1, 0))
	defer cancel()
	r := httptest.NewRequestWithContext(ctx, "GET", "http://reviews/", nil)
	w := httptest.NewRecorder()
	f.writeError(w, r, &Target{Addr: "10.0.0.1:9080", Service: "reviews", Version: "v1", Timeout: 150 * time.Millisecond}, context.DeadlineExceeded)
	want := "upstream_timeout: service \"reviews\" version \"v1\" at 10.0.0.1:9080 did not answer within 150ms\n"
	if w.Code != 504 || w.Body.String() != want {
		t.Errorf("got %d %q, want 504 %q", w.Code, w.Body.String(), want)
	}
}
