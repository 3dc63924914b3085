package store

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap"

	"trellis.dev/trellis/internal/api"
)

// The watch outlives a restart of an external etcd: after etcd comes back
// (same socket, same data), a change made through another client still
// reaches the watcher.
func TestWatchSurvivesEtcdRestart(t *testing.T) {
	tmp := t.TempDir()
	dir, sock := filepath.Join(tmp, "etcd"), filepath.Join(tmp, "etcd.sock")
	start := func() *embedded {
		t.Helper()
		e, err := startEtcd(t.Context(), dir, sock, zap.NewNop())
		if err != nil {
			t.Fatalf("start etcd: %v", err)
		}
		return e
	}
	e := start()
	s, err := Open(t.Context(), Config{Endpoints: []string{e.clientURL}, Logger: discardLogger()})
	if err != nil {
		e.close()
		t.Fatal(err)
	}
	defer s.Close()

	ch := s.Watch(t.Context())
	waitSignal(t, ch, "watch established")

	e.close()
	e = start()
	defer func() { e.close() }()

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	// Drain a signal the reconnect itself may have produced.
	select {
	case <-ch:
	case <-time.After(100 * time.Millisecond):
	}
	changed := time.Now()
	if _, err := s.Apply(ctx, []api.Resource{route("", "after", "after", map[string]int{"v1": 100})}); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, ch, "apply after etcd restart")
	t.Logf("signal %s after the change", time.Since(changed))
}
