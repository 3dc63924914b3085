package control

import (
	"net"
	"strings"
	"testing"
	"time"
)

// A control plane of its own (a second etcd start): Close releases both
// ports, ends Done and Wait, and can be called again.
func TestStartClose(t *testing.T) {
	s, err := Start(t.Context(), Config{DataDir: t.TempDir(), HTTPAddr: "127.0.0.1:0", XDSAddr: "127.0.0.1:0", Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	httpAddr, xdsAddr := s.HTTPAddr(), s.XDSAddr()
	if strings.HasSuffix(httpAddr, ":0") || strings.HasSuffix(xdsAddr, ":0") {
		t.Fatalf("addresses not the bound ones: %s %s", httpAddr, xdsAddr)
	}
	if a := call(t, s, "GET", "/healthz", ""); a.status != 200 {
		t.Fatalf("healthz = %d", a.status)
	}
	// The etcd ports are never etcd's defaults.
	for _, ep := range s.Store().Client().Endpoints() {
		if strings.HasSuffix(ep, ":2379") {
			t.Errorf("embedded etcd on its default port: %s", ep)
		}
	}

	select {
	case <-s.Done():
		t.Fatal("Done before Close")
	default:
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Done():
	case <-time.After(time.Second):
		t.Fatal("Done not closed after Close")
	}
	if err := s.Wait(); err != nil {
		t.Errorf("Wait after Close = %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	for _, addr := range []string{httpAddr, xdsAddr} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("%s still taken after Close: %v", addr, err)
			continue
		}
		l.Close()
	}
}

// A taken port fails Start at once, before any etcd is started.
func TestStartPortInUse(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dir := t.TempDir()
	start := time.Now()
	_, err = Start(t.Context(), Config{DataDir: dir, HTTPAddr: "127.0.0.1:0", XDSAddr: taken.Addr().String(), Logger: discard()})
	if err == nil || !strings.Contains(err.Error(), "xDS") {
		t.Fatalf("Start on a taken xDS port: err = %v", err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Errorf("failing took %s; the listeners are bound before etcd starts", d)
	}
}
