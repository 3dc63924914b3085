package proxy

import (
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
