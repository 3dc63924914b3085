package sample

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func h2cClient() *http.Client {
	var p http.Protocols
	p.SetUnencryptedHTTP2(true) // prior knowledge only: no HTTP/1.1 fallback
	return &http.Client{Transport: &http.Transport{Protocols: &p}}
}

func TestEchoHTTP(t *testing.T) {
	t.Parallel()
	addr := startEcho(t, EchoConfig{Service: "reviews", Version: "v2"})
	clients := map[string]struct {
		c     *http.Client
		proto string
	}{
		"http1": {noProxyClient(), "HTTP/1.1"},
		"h2c":   {h2cClient(), "HTTP/2.0"},
	}
	for _, cl := range clients {
		t.Cleanup(cl.c.CloseIdleConnections) // runs before startEcho's cleanup: no idle conns to wait out
	}
	tests := []struct {
		name       string
		target     string
		wantStatus int
		wantPath   string
		wantQuery  string
	}{
		{"root", "/", 200, "/", ""},
		{"any path and query", "/a/b?x=1&y=2", 200, "/a/b", "x=1&y=2"},
		{"status override", "/teapot?status=418", 418, "/teapot", "status=418"},
		{"status 503", "/?status=503", 503, "/", "status=503"},
		{"sleep", "/?sleep=1ms", 200, "/", "sleep=1ms"},
		{"bad status", "/?status=abc", 400, "", ""},
		{"status out of range", "/?status=99", 400, "", ""},
		{"bad sleep", "/?sleep=soon", 400, "", ""},
		{"sleep over cap", "/?sleep=11s", 400, "", ""},
		{"call without to", "/call", 400, "", ""},
	}
	for cname, cl := range clients {
		for _, tt := range tests {
			t.Run(cname+"/"+tt.name, func(t *testing.T) {
				status, m := get(t, cl.c, "http://"+addr+tt.target, map[string]string{"X-Request-Id": "r1"})
				if status != tt.wantStatus {
					t.Fatalf("status %d, want %d (%v)", status, tt.wantStatus, m)
				}
				if status == 400 {
					if m["error"] == "" || m["error"] == nil {
						t.Errorf("400 without error: %v", m)
					}
					return
				}
				want := map[string]any{
					"service": "reviews", "version": "v2", "method": "GET",
					"path": tt.wantPath, "query": tt.wantQuery, "host": addr, "proto": cl.proto, "addr": addr,
				}
				for k, v := range want {
					if m[k] != v {
						t.Errorf("%s = %v, want %v", k, m[k], v)
					}
				}
				if got := path(m, "headers", "x-request-id"); got != "r1" {
					t.Errorf("headers.x-request-id = %v", got)
				}
				for k := range m["headers"].(map[string]any) {
					if strings.HasPrefix(k, "x-trellis-") {
						t.Errorf("echo must not invent mesh headers: %s", k)
					}
				}
			})
		}
	}
}

func TestEchoEnvDefaults(t *testing.T) {
	t.Setenv("TRELLIS_SERVICE", "ratings")
	t.Setenv("TRELLIS_VERSION", "canary")
	h := NewEchoHandler(EchoConfig{Logger: discard})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/x", nil))
	body := rec.Body.String()
	if rec.Code != 200 || !strings.Contains(body, `"service": "ratings"`) || !strings.Contains(body, `"version": "canary"`) {
		t.Fatalf("%d %s", rec.Code, body)
	}
	if h := rec.Header(); h.Get("X-Trellis-Service") != "" || h.Get("X-Trellis-Version") != "" {
		t.Errorf("echo set mesh headers: %v", h)
	}
}

func TestEchoFailStatus(t *testing.T) {
	h := NewEchoHandler(EchoConfig{Service: "reviews", Logger: discard, FailStatus: 500})
	for target, want := range map[string]int{"/": 500, "/x?status=503": 503, "/?status=200": 200} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		if rec.Code != want || !strings.Contains(rec.Body.String(), `"service": "reviews"`) {
			t.Errorf("%s: %d %s, want %d and the echo", target, rec.Code, rec.Body, want)
		}
	}
}

func TestEchoHealthFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "healthy")
	h := NewEchoHandler(EchoConfig{Service: "reviews", Logger: discard, HealthFile: file})
	check := func(target string, want int) {
		t.Helper()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
		if rec.Code != want {
			t.Errorf("%s: %d %s, want %d", target, rec.Code, rec.Body, want)
		}
	}
	check("/healthz", 503)
	check("/", 200)
	check("/other?status=201", 201)
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	check("/healthz", 200)
}

func TestCallFailureIs502(t *testing.T) {
	t.Parallel()
	// A closed port on loopback: loopback never goes through a proxy, so
	// this holds whatever the environment says.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close()
	addr := startEcho(t, EchoConfig{Service: "front"})
	status, m := get(t, noProxyClient(), "http://"+addr+"/call?to="+dead, nil)
	if status != http.StatusBadGateway || !strings.Contains(m["error"].(string), dead) {
		t.Fatalf("%d %v", status, m)
	}
}

// signalHandler is a slog handler that reports each "request" log record, so
// a test knows when a request has reached the echo handler.
type signalHandler struct{ arrived chan string }

func (h signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h signalHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h signalHandler) WithGroup(string) slog.Handler            { return h }
func (h signalHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "request" {
		select {
		case h.arrived <- r.Message:
		default:
		}
	}
	return nil
}

func TestServeEchoGracefulShutdown(t *testing.T) {
	t.Parallel()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	arrived := make(chan string, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeEcho(ctx, lis, EchoConfig{Logger: slog.New(signalHandler{arrived})}) }()

	type result struct {
		status int
		err    error
	}
	res := make(chan result, 1)
	go func() {
		// The sleep only holds the request open; nothing is timed by it.
		resp, err := noProxyClient().Get("http://" + lis.Addr().String() + "/?sleep=200ms")
		if err != nil {
			res <- result{err: err}
			return
		}
		resp.Body.Close()
		res <- result{status: resp.StatusCode}
	}()
	<-arrived // in flight
	cancel()
	if r := <-res; r.err != nil || r.status != 200 {
		t.Fatalf("in-flight request during shutdown: %+v", r)
	}
	if err := <-done; err != nil {
		t.Fatalf("ServeEcho: %v", err)
	}
	if _, err := net.Dial("tcp", lis.Addr().String()); err == nil {
		t.Fatal("still accepting after shutdown")
	}
}
