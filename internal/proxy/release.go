package proxy

import (
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// After a config update the heap still holds the garbage of decoding and
// converting it — about 30 MB for a mesh of 1,000 services — and the heap
// goal the update pushed up. An idle proxy allocates nothing, so nothing
// collects that garbage until the runtime's forced GC two minutes later,
// and meanwhile the resident memory stays at the update's peak
// (BenchmarkSidecarProcess: 49 MB instead of 36 MB). So a config update
// schedules a collection that also hands the free memory back to the OS
// (debug.FreeOSMemory): a second after the update, so that a burst of
// updates costs one, and at most once every releaseEvery, so that a
// control plane pushing constantly costs at most that — one extra GC
// cycle, next to the hundreds per second a proxy under load runs anyway.
//
// In a process that is only a proxy (ReleaseExecutablePages), the release
// also drops the binary's resident pages (release_linux.go): after the
// collection, because the collection itself touches megabytes of the
// binary (the stack maps of every goroutine's frames in the pclntab).
var (
	releaseDelay = time.Second
	releaseEvery = 10 * time.Second
)

// memoryReleaser runs the release after config updates, as above.
// It is process-wide state: the runtime's heap is per process, and several
// proxies (trellis demo) should not each release it.
type memoryReleaser struct {
	mu      sync.Mutex
	pending bool
	last    time.Time
	// release is releaseMemory and after is time.AfterFunc, but for
	// tests.
	release func()
	after   func(time.Duration, func())
}

var releaser = &memoryReleaser{
	release: releaseMemory,
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

// executableLog is set by ReleaseExecutablePages: the logger of a process
// whose releases also drop the binary's pages.
var executableLog atomic.Pointer[slog.Logger]

// ReleaseExecutablePages makes the memory release that follows every
// config update — the first one when the proxy becomes Ready — also drop
// the resident pages of the trellis binary, which starting the process
// mapped and the proxy does not use (release_linux.go: why, and why it is
// safe); and drops them again after a collection that ends a quiet spell
// (watchQuietCollections). It is for a process whose job is to be a proxy
// — trellis proxy, trellis gateway, trellis run — and not for one that
// also runs the control plane (trellis demo), whose pages would only fault
// back in. Errors are logged to log (nil: slog.Default()).
func ReleaseExecutablePages(log *slog.Logger) {
	if log == nil {
		log = slog.Default()
	}
	executableLog.Store(log)
	watchOnce.Do(func() { go watchQuietCollections() })
}

// releaseMemory is the release: a collection that returns free memory to
// the OS and, if asked for, the binary's pages.
func releaseMemory() {
	debug.FreeOSMemory()
	releaseExecutable()
}

// releaseExecutable drops the binary's pages, if the process asked for it.
func releaseExecutable() {
	log := executableLog.Load()
	if log == nil {
		return
	}
	n, err := releaseExecutablePages()
	if err != nil {
		log.Warn("releasing the binary's pages", "error", err)
		return
	}
	log.Debug("released the binary's pages", "resident_mb", float64(n)/(1<<20))
}

// An idle Go process still collects: the runtime forces a collection
// every two minutes, and scanning the goroutines' stacks reads their stack
// maps in the binary's pclntab, which maps about 5 MB of it back (an idle
// sidecar: 17.8 MB before the first forced collection, 22.5 MB after). So
// a collection that comes after none for quietGap — the forced one, or the
// first after a burst of traffic — is followed by a release of the
// binary's pages. Under load collections are seconds apart and nothing is
// released.
var (
	quietGap  = time.Minute
	watchOnce sync.Once
)

func watchQuietCollections() {
	var q quietCollections
	afterCollections(func() bool {
		if q.observe(time.Now()) {
			go releaseExecutable()
		}
		return true
	})
}

// quietCollections tells a collection that comes after a quiet spell.
type quietCollections struct {
	last atomic.Int64 // when the previous collection was seen, in Unix ns
}

// observe records a collection seen at now and says whether quietGap or
// more passed since the one before.
func (q *quietCollections) observe(now time.Time) bool {
	prev := q.last.Swap(now.UnixNano())
	return prev != 0 && now.Sub(time.Unix(0, prev)) >= quietGap
}

// afterCollections calls f after each collection, as long as f returns
// true. It polls nothing: the cleanup of an object nothing references runs
// once the next collection has found it unreachable, and arms the next.
func afterCollections(f func() bool) {
	runtime.AddCleanup(new(collectionMark), func(f func() bool) {
		if f() {
			afterCollections(f)
		}
	}, f)
}

// collectionMark is 16 bytes so that the allocator does not pack it with
// other small objects (whose lifetimes would delay its cleanup).
type collectionMark struct{ _ [16]byte }
