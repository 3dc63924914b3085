package freeport

import (
	"net"
	"strconv"
	"testing"
)

// Ports are distinct, bindable, and outside the kernel's ephemeral range
// when there is room below it.
func TestLoopback(t *testing.T) {
	lo, hi := portRange()
	seen := map[int]bool{}
	for range 50 {
		p, err := Loopback()
		if err != nil {
			t.Fatal(err)
		}
		if seen[p] {
			t.Fatalf("port %d handed out twice", p)
		}
		seen[p] = true
		if hi > lo && (p < lo || p >= hi) {
			t.Errorf("port %d outside [%d, %d)", p, lo, hi)
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			t.Fatalf("port %d not free: %v", p, err)
		}
		l.Close()
	}
}

// A port in use is skipped.
func TestLoopbackSkipsBusyPort(t *testing.T) {
	p, err := Loopback()
	if err != nil {
		t.Fatal(err)
	}
	lo, hi := portRange()
	if hi <= lo {
		t.Skip("no port range below the ephemeral one here")
	}
	ports.Lock()
	next := ports.next
	ports.Unlock()
	l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(next)))
	if err != nil {
		t.Skipf("port %d taken by someone else: %v", next, err)
	}
	defer l.Close()
	q, err := Loopback()
	if err != nil {
		t.Fatal(err)
	}
	if q == next || q == p {
		t.Errorf("got busy or repeated port %d", q)
	}
}
