package proxy

import (
	"runtime"
	"testing"
	"time"
)

// Updates coalesce into one release until it has run; the next release
// waits for releaseEvery after the last one.
func TestMemoryReleaser(t *testing.T) {
	var scheduled []time.Duration
	var run []func()
	released := 0
	m := &memoryReleaser{
		release: func() { released++ },
		after: func(d time.Duration, f func()) {
			scheduled = append(scheduled, d)
			run = append(run, f)
		},
	}
	for range 3 {
		m.configApplied()
	}
	if len(run) != 1 || scheduled[0] > releaseDelay {
		t.Fatalf("scheduled %v, want one release within %v", scheduled, releaseDelay)
	}
	run[0]()
	if released != 1 {
		t.Fatalf("released %d times", released)
	}
	m.configApplied()
	if len(run) != 2 || scheduled[1] < releaseEvery-time.Second {
		t.Fatalf("scheduled %v, want the second about %v after the first", scheduled, releaseEvery)
	}
}

// Applying a config schedules a release with the process-wide releaser.
func TestSetSnapshotReleasesMemory(t *testing.T) {
	scheduled := make(chan func(), 1)
	saved := releaser
	releaser = &memoryReleaser{release: func() {}, after: func(_ time.Duration, f func()) { scheduled <- f }}
	t.Cleanup(func() { releaser = saved })
	p, _ := startProxy(t, Config{Role: "sidecar"}, nil)
	p.setSnapshot(snapshot(nil, nil))
	select {
	case <-scheduled:
	default:
		t.Fatal("no release scheduled")
	}
}

// The binary's pages are released again after a collection that follows a
// quiet minute (the runtime's forced one, in an idle proxy), not after the
// collections of a busy one.
func TestQuietCollections(t *testing.T) {
	var q quietCollections
	t0 := time.Unix(1000, 0)
	for i, step := range []struct {
		at   time.Duration
		want bool
	}{
		{0, false},                 // the first collection seen: nothing to compare with
		{2 * time.Second, false},   // busy
		{5 * time.Second, false},   // busy
		{125 * time.Second, true},  // two quiet minutes, then the forced collection
		{145 * time.Second, false}, // 20 s after the last one
		{215 * time.Second, true},  // 70 s after
	} {
		if got := q.observe(t0.Add(step.at)); got != step.want {
			t.Errorf("step %d (collection at %v): release %v, want %v", i, step.at, got, step.want)
		}
	}
}

// afterCollections calls back after every collection until told to stop.
func TestAfterCollections(t *testing.T) {
	calls := make(chan int, 1)
	n := 0
	afterCollections(func() bool {
		n++
		calls <- n
		return n < 3
	})
	for want := 1; want <= 3; want++ {
		runtime.GC()
		select {
		case got := <-calls:
			if got != want {
				t.Fatalf("call %d, want %d", got, want)
			}
		case <-time.After(time.Minute): // a guard against hanging, not a measure
			t.Fatalf("no call %d after a collection", want)
		}
	}
	runtime.GC()
	runtime.GC()
	select {
	case got := <-calls:
		t.Fatalf("call %d after f returned false", got)
	default:
	}
}
