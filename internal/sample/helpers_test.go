package sample

import (
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

var discard = slog.New(slog.DiscardHandler)

// startEcho runs ServeEcho on a fresh 127.0.0.1 port until the test ends and
// checks that it then stops cleanly. It returns the address.
func startEcho(t *testing.T, cfg EchoConfig) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Logger == nil {
		cfg.Logger = discard
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeEcho(ctx, lis, cfg) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeEcho: %v", err)
		}
	})
	return lis.Addr().String()
}

func dialGRPC(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// get does a GET and decodes the JSON answer.
func get(t *testing.T, c *http.Client, url string, hdr map[string]string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q", url, ct)
	}
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("%s: decoding: %v", url, err)
	}
	return resp.StatusCode, m
}

// noProxyClient never consults the environment, so tests behave the same
// wherever they run.
func noProxyClient() *http.Client {
	return &http.Client{Transport: &http.Transport{Proxy: nil}}
}

// childEnv returns the environment for a re-executed test binary: ours,
// minus any proxy settings, plus extra.
func childEnv(extra ...string) []string {
	var env []string
	gorace := "atexit_sleep_ms=0" // a -race child otherwise idles 1 s at exit
	for _, kv := range os.Environ() {
		name, val, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(name) {
		case "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "REQUEST_METHOD":
			continue
		case "GORACE":
			gorace = val + " " + gorace
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, "GORACE="+gorace), extra...)
}

// path walks a decoded JSON document: path(m, "upstream", "body", "service").
func path(m map[string]any, keys ...string) any {
	var v any = m
	for _, k := range keys {
		mm, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = mm[k]
	}
	return v
}
