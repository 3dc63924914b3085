package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"trellis.dev/trellis/internal/api"
)

// An embedded etcd costs about a second to start, so the tests of this
// package share one; each test starts from an empty /trellis/ prefix.
var shared struct {
	once sync.Once
	dir  string
	s    *Store
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.s != nil {
		shared.s.Close()
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// sharedStore returns the package's embedded store with /trellis/ emptied.
func sharedStore(t *testing.T) *Store {
	t.Helper()
	shared.once.Do(func() {
		shared.dir, shared.err = os.MkdirTemp("", "trellis-store-test-")
		if shared.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shared.s, shared.err = Open(ctx, Config{DataDir: shared.dir, Logger: discardLogger()})
	})
	if shared.err != nil {
		t.Fatalf("open shared store: %v", shared.err)
	}
	if _, err := shared.s.Client().Delete(t.Context(), Prefix, clientv3.WithPrefix()); err != nil {
		t.Fatalf("wipe %s: %v", Prefix, err)
	}
	return shared.s
}

// route builds a valid Route sending all of service's traffic by weight.
func route(ns, name, service string, weights map[string]int) *api.Route {
	r := &api.Route{
		APIVersion: api.APIVersion,
		Kind:       api.KindRoute,
		Metadata:   api.Metadata{Name: name, Namespace: ns},
		Spec:       api.RouteSpec{Service: service},
	}
	for _, v := range []string{"v1", "v2", "v3"} {
		if w, ok := weights[v]; ok {
			r.Spec.Rules = append(r.Spec.Rules, api.RouteRule{Version: v, Weight: &w})
		}
	}
	return r
}

func mustDecode(t *testing.T, yaml string) []api.Resource {
	t.Helper()
	rs, err := api.Decode([]byte(yaml))
	if err != nil {
		t.Fatalf("decode: %v", err)
	}
	return rs
}

func key(r api.Resource) string {
	m := r.Meta()
	return fmt.Sprintf("%s %s/%s", r.GetKind(), m.Namespace, m.Name)
}
