// Package freeport hands out free loopback TCP ports for another process
// to bind a moment later (a demo's apps, the end-to-end tests' processes).
//
// Not ports the kernel chose for a listener on :0: such a port, closed and
// handed on, can go to the very next listener on :0 (a sidecar starting
// meanwhile binds three) before the process binds it, which then fails
// with "address already in use". The ports come from below the kernel's
// ephemeral range instead, which it never assigns on its own (neither to
// :0 listeners nor to outgoing connections), each at most once per process
// until the range wraps around, starting at a random point so that two
// processes rarely meet.
package freeport

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// Loopback returns a port nothing listens on at 127.0.0.1 now.
func Loopback() (int, error) {
	ports.Lock()
	defer ports.Unlock()
	if !ports.init {
		ports.init = true
		ports.lo, ports.hi = portRange()
		if ports.hi > ports.lo {
			ports.next = ports.lo + rand.IntN(ports.hi-ports.lo)
		}
	}
	for range ports.hi - ports.lo {
		p := ports.next
		if ports.next++; ports.next == ports.hi {
			ports.next = ports.lo
		}
		if l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p))); err == nil {
			l.Close()
			return p, nil
		}
	}
	// No room below the ephemeral range, or not Linux: let the kernel
	// choose, and live with the race.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ports is Loopback's state: it hands out lo ≤ port < hi in turn.
var ports struct {
	sync.Mutex
	init         bool
	lo, hi, next int
}

// portRange is [10000, start of the kernel's ephemeral range), or an empty
// range when that is unknown or too small.
func portRange() (lo, hi int) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0
	}
	ephemeral, err := strconv.Atoi(f[0])
	if err != nil || ephemeral < 10000+1000 {
		return 0, 0
	}
	return 10000, ephemeral
}
