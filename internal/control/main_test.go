package control

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"trellis.dev/trellis/internal/store"
)

// One control plane (and so one embedded etcd, about a second to start)
// serves the tests of this package that need one; each test empties
// /trellis/ first and uses its own service names.
var shared *Server

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "trellis-control-test-")
	if err != nil {
		panic(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	shared, err = Start(ctx, Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", XDSAddr: "127.0.0.1:0", Logger: discard()})
	cancel()
	if err != nil {
		panic(err)
	}
	code := m.Run()
	shared.Close()
	os.RemoveAll(dir)
	os.Exit(code)
}

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// sharedServer returns the package's control plane with an empty store.
func sharedServer(t *testing.T) *Server {
	t.Helper()
	if _, err := shared.Store().Client().Delete(t.Context(), store.Prefix, clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	return shared
}

type answer struct {
	status int
	header http.Header
	body   string
}

// call sends one request to the server's HTTP API.
func call(t *testing.T, s *Server, method, path, body string) answer {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, "http://"+s.HTTPAddr()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if method == "POST" || method == "PUT" || method == "PATCH" {
		req.Header.Set("Content-Type", "application/yaml") // as the CLI sends
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// decode unmarshals an answer's JSON body, failing the test on a status
// other than want.
func decode[T any](t *testing.T, a answer, want int) T {
	t.Helper()
	if a.status != want {
		t.Fatalf("status %d, want %d; body %s", a.status, want, a.body)
	}
	var v T
	dec := json.NewDecoder(bytes.NewReader([]byte(a.body)))
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding %q: %v", a.body, err)
	}
	return v
}
