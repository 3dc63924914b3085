package proxy

import (
	"runtime/debug"
	"sync"
	"time"
)

// After a config update the heap still holds the garbage of decoding and
// converting it — about 30 MB for a mesh of 1,000 services — and the heap
// goal the update pushed up. An idle proxy allocates nothing, so nothing
// collects that garbage until the runtime's forced GC two minutes later,
// and meanwhile the resident memory stays at the update's peak
// (BenchmarkIdleSidecarRSS: 49 MB instead of 36 MB). So a config update
// schedules a collection that also hands the free memory back to the OS
// (debug.FreeOSMemory): a second after the update, so that a burst of
// updates costs one, and at most once every releaseEvery, so that a
// control plane pushing constantly costs at most that — one extra GC
// cycle, next to the hundreds per second a proxy under load runs anyway.
var (
	releaseDelay = time.Second
	releaseEvery = 10 * time.Second
)

// memoryReleaser runs debug.FreeOSMemory after config updates, as above.
// It is process-wide state: the runtime's heap is per process, and several
// proxies (trellis demo) should not each release it.
type memoryReleaser struct {
	mu      sync.Mutex
	pending bool
	last    time.Time
	// release is debug.FreeOSMemory and after is time.AfterFunc, but for
	// tests.
	release func()
	after   func(time.Duration, func())
}

var releaser = &memoryReleaser{
	release: debug.FreeOSMemory,
	after:   func(d time.Duration, f func()) { time.AfterFunc(d, f) },
}

// configApplied schedules a release, unless one is scheduled already.
func (m *memoryReleaser) configApplied() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.pending {
		return
	}
	m.pending = true
	at := time.Now().Add(releaseDelay)
	if next := m.last.Add(releaseEvery); next.After(at) {
		at = next
	}
	m.after(time.Until(at), func() {
		m.mu.Lock()
		m.pending = false
		m.last = time.Now()
		m.mu.Unlock()
		m.release()
	})
}
