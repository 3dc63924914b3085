package store

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"trellis.dev/trellis/internal/api"
)

// The embedded etcd serves its clients on a Unix socket in DataDir/socket
// (0700, even if the directory existed with looser modes) and listens on
// nothing else: no client TCP port, no peer listener.
func TestEmbeddedListensOnUnixSocketOnly(t *testing.T) {
	dir := t.TempDir()
	// A socket directory left with a loose mode is tightened.
	if err := os.MkdirAll(filepath.Join(dir, "socket"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, err := Open(t.Context(), Config{DataDir: dir, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	sock := filepath.Join(dir, "socket", "etcd.sock")
	if eps := s.Client().Endpoints(); len(eps) != 1 || eps[0] != "unix://"+sock {
		t.Errorf("client endpoints %v, want unix://%s", eps, sock)
	}
	fi, err := os.Stat(filepath.Join(dir, "socket"))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("socket directory mode %v, want 0700", fi.Mode().Perm())
	}
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("no socket at %s: %v", sock, err)
	}
	e := s.embedded.etcd
	if len(e.Peers) != 0 {
		t.Errorf("etcd listens for peers on %v", e.Peers[0].Addr())
	}
	for _, l := range e.Clients {
		if l.Addr().Network() != "unix" {
			t.Errorf("etcd client listener on %s %s", l.Addr().Network(), l.Addr())
		}
	}
	if cfg := e.Config(); len(e.Clients) != 1 || len(cfg.ListenMetricsUrls) != 0 || len(cfg.ListenClientHttpUrls) != 0 {
		t.Errorf("etcd listeners: %d client, metrics %v, client HTTP %v; want one client listener only",
			len(e.Clients), cfg.ListenMetricsUrls, cfg.ListenClientHttpUrls)
	}
	if _, err := s.Apply(t.Context(), []api.Resource{route("", "sock", "sock", map[string]int{"v1": 100})}); err != nil {
		t.Fatal(err)
	}
}

// A data dir whose path is too long for a socket path gets its socket in
// a fresh 0700 temporary directory, removed when the store closes.
func TestEmbeddedLongDataDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), strings.Repeat("d", 60), strings.Repeat("e", 60))
	s, err := Open(t.Context(), Config{DataDir: dir, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	ep := s.Client().Endpoints()[0]
	sock := strings.TrimPrefix(ep, "unix://")
	if !strings.HasPrefix(ep, "unix://") || strings.HasPrefix(sock, dir) || len(sock) > maxSocketPath {
		t.Errorf("endpoint %s for data dir %s", ep, dir)
	}
	tmp := filepath.Dir(sock)
	if fi, err := os.Stat(tmp); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("temporary socket directory %s: %v %v", tmp, fi.Mode(), err)
	}
	if _, err := s.Apply(t.Context(), []api.Resource{route("", "long", "long", map[string]int{"v1": 100})}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("temporary socket directory %s left behind: %v", tmp, err)
	}
}

// When no socket path is short enough, Open says so.
func TestEmbeddedNoShortSocketPath(t *testing.T) {
	long := filepath.Join(t.TempDir(), strings.Repeat("t", 100))
	if err := os.MkdirAll(long, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", long)
	_, err := Open(t.Context(), Config{DataDir: filepath.Join(long, "data"), Logger: discardLogger()})
	if err == nil || !strings.Contains(err.Error(), "use a shorter --data-dir or TMPDIR") {
		t.Fatalf("Open with only long paths: %v", err)
	}
}
