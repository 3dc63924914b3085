package store

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/api"
)

// Resources survive a restart of the embedded etcd on the same data dir,
// even though the restarted etcd listens on different ports.
func TestRestartKeepsResources(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	s, err := Open(ctx, Config{DataDir: dir, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	firstEndpoint := s.Client().Endpoints()[0]

	// A second store on the same data dir fails at once (etcd itself
	// would wait forever for its database lock).
	if _, err := Open(ctx, Config{DataDir: dir, Logger: discardLogger()}); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("second Open on a data dir in use: err = %v", err)
	}
	if _, err := s.Apply(ctx, []api.Resource{route("", "reviews", "reviews", map[string]int{"v1": 100})}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, []api.Resource{route("", "reviews", "reviews", map[string]int{"v2": 100})}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(filepath.Join(dir, "etcd", "member")); err != nil {
		t.Fatalf("embedded etcd data not in DataDir/etcd: %v", err)
	}

	start := time.Now()
	s, err = Open(ctx, Config{DataDir: dir, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	t.Logf("restart took %s (endpoints %s then %s)", time.Since(start), firstEndpoint, s.Client().Endpoints()[0])
	got, err := s.Get(ctx, api.KindRoute, "default", "reviews")
	if err != nil {
		t.Fatal(err)
	}
	if got.Meta().Generation != 2 || got.(*api.Route).Spec.Rules[0].Version != "v2" {
		t.Errorf("after restart: %+v", got)
	}
}

// With Endpoints the store uses an existing cluster: here the shared
// embedded etcd stands in for an external one.
func TestExternalEndpoints(t *testing.T) {
	embeddedStore := sharedStore(t)
	ext, err := Open(t.Context(), Config{Endpoints: embeddedStore.Client().Endpoints(), Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer ext.Close()
	if ext.embedded != nil {
		t.Fatal("Open with Endpoints started an embedded etcd")
	}
	if _, err := ext.Apply(t.Context(), []api.Resource{route("", "ext", "ext", map[string]int{"v1": 100})}); err != nil {
		t.Fatal(err)
	}
	if _, err := embeddedStore.Get(t.Context(), api.KindRoute, "default", "ext"); err != nil {
		t.Errorf("written through the external client, not visible to the other: %v", err)
	}
	ext.Close()
	// The other store's client is untouched by closing this one.
	if _, err := embeddedStore.List(t.Context(), api.KindRoute); err != nil {
		t.Error(err)
	}
}

func TestOpenUnreachableEndpointFails(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Open(ctx, Config{Endpoints: []string{"http://127.0.0.1:1"}, Logger: discardLogger()})
	if err == nil {
		t.Fatal("Open of an endpoint nobody listens on succeeded")
	}
	if time.Since(start) > 3*time.Second {
		t.Errorf("Open took %s to fail; it should honour ctx", time.Since(start))
	}
	t.Log(err)
}

func TestOpenEmbeddedNeedsDataDir(t *testing.T) {
	if _, err := Open(t.Context(), Config{}); err == nil {
		t.Fatal("Open without DataDir or Endpoints succeeded")
	}
}
