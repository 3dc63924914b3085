package tunnel

import (
	"context"
	"io"
	"sync"
	"time"
)

// Tracker keeps what a server must end on shutdown: its open connections
// and the number of relays running (which cannot be told to finish, only
// waited for or cut). The tunnel server and the inbound listener's relays
// share it. The zero value is ready to use.
type Tracker[C interface {
	comparable
	io.Closer
}] struct {
	mu      sync.Mutex
	conns   map[C]struct{}
	relays  int
	closing bool
}

// Track adds c, unless the server is stopping: then it reports false and
// the caller closes c.
func (t *Tracker[C]) Track(c C) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	if t.conns == nil {
		t.conns = map[C]struct{}{}
	}
	t.conns[c] = struct{}{}
	return true
}

// Untrack removes c.
func (t *Tracker[C]) Untrack(c C) {
	t.mu.Lock()
	delete(t.conns, c)
	t.mu.Unlock()
}

// Open is the number of connections tracked.
func (t *Tracker[C]) Open() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

// RelayStarted counts a relay running until the returned func is called.
func (t *Tracker[C]) RelayStarted() (ended func()) {
	t.mu.Lock()
	t.relays++
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		t.relays--
		t.mu.Unlock()
	}
}

// Stop makes Track refuse new connections.
func (t *Tracker[C]) Stop() {
	t.mu.Lock()
	t.closing = true
	t.mu.Unlock()
}

// WaitRelays waits until no relay runs, or ctx ends (its error then).
func (t *Tracker[C]) WaitRelays(ctx context.Context) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		t.mu.Lock()
		n := t.relays
		t.mu.Unlock()
		if n == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// CloseAll stops the tracker and closes every connection it holds.
func (t *Tracker[C]) CloseAll() {
	t.mu.Lock()
	t.closing = true
	conns := make([]C, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.Close()
	}
}
