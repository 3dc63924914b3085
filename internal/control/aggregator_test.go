package control

import (
	"trellis.dev/trellis/internal/testutil"

	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"trellis.dev/trellis/internal/translate"
)

// fakeXDS records every Update.
type fakeXDS struct {
	mu      sync.Mutex
	updates []time.Time
	fail    error
}

func (f *fakeXDS) Update(translate.Input) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updates = append(f.updates, time.Now())
	return f.fail
}

func (f *fakeXDS) Version() string { return "" }

func (f *fakeXDS) count() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.updates)
}

func startAggregator(t *testing.T, read func(context.Context) (translate.Input, error)) (*fakeXDS, chan struct{}) {
	t.Helper()
	xds := &fakeXDS{}
	a := &aggregator{read: read, xds: xds, log: discard(), quiet: debounceQuiet, max: debounceMax, retry: 50 * time.Millisecond}
	signals := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.run(ctx, signals); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return xds, signals
}

func okRead(context.Context) (translate.Input, error) { return translate.Input{}, nil }

func send(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// A burst of changes becomes one publish, soon after the burst.
func TestAggregatorDebouncesBurst(t *testing.T) {
	xds, signals := startAggregator(t, okRead)
	start := time.Now()
	// A burst is 5 changes 1 ms apart; on a loaded machine a sleep can
	// outlast the quiet period, and then the debouncer rightly publishes
	// at that gap too: each such gap allows one more publish.
	gaps := 0
	last := time.Now()
	for i := range 5 {
		send(signals)
		if now := time.Now(); i > 0 && now.Sub(last) >= debounceQuiet {
			gaps++
		}
		last = time.Now()
		time.Sleep(time.Millisecond)
	}
	testutil.Eventually(t, time.Second, "a publish", func() bool { return xds.count() >= 1 })
	xds.mu.Lock()
	first := xds.updates[0]
	xds.mu.Unlock()
	if d := first.Sub(start); d > debounceMax+50*time.Millisecond && gaps == 0 {
		t.Errorf("published %s after the first change", d)
	}
	time.Sleep(3 * debounceQuiet)
	if n := xds.count(); n > 1+gaps {
		t.Errorf("%d publishes for one burst (%d gaps of the quiet period in it)", n, gaps)
	}
}

// A steady trickle (a change every 5 ms, never quiet for 10 ms) still
// publishes at least every debounceMax.
func TestAggregatorTrickleCannotStarve(t *testing.T) {
	xds, signals := startAggregator(t, okRead)
	stop := time.After(350 * time.Millisecond)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
loop:
	for {
		select {
		case <-tick.C:
			send(signals)
		case <-stop:
			break loop
		}
	}
	if n := xds.count(); n < 2 {
		t.Errorf("%d publishes in 350 ms of constant changes; want one per %s", n, debounceMax)
	}
}

// A failed read is retried without a new change; a refused Update is not.
func TestAggregatorRetriesFailedRead(t *testing.T) {
	var mu sync.Mutex
	failures := 2
	read := func(context.Context) (translate.Input, error) {
		mu.Lock()
		defer mu.Unlock()
		if failures > 0 {
			failures--
			return translate.Input{}, errors.New("etcd unavailable")
		}
		return translate.Input{}, nil
	}
	xds, signals := startAggregator(t, read)
	send(signals)
	testutil.Eventually(t, 2*time.Second, "publish after the read recovers", func() bool { return xds.count() == 1 })

	xds.mu.Lock()
	xds.fail = errors.New("inconsistent snapshot")
	xds.mu.Unlock()
	send(signals)
	testutil.Eventually(t, time.Second, "refused update attempted", func() bool { return xds.count() == 2 })
	time.Sleep(200 * time.Millisecond)
	if n := xds.count(); n != 2 {
		t.Errorf("a refused Update was retried (%d updates); it only changes with the input", n)
	}
}
