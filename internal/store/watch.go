package store

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Watch returns a channel that receives a value soon after anything under
// Prefix (resources or instances) changes. Signals coalesce: the channel
// holds at most one, so a slow reader sees one signal for many changes and
// must re-read the state it cares about. The channel also receives a signal
// each time the underlying etcd watch is (re-)established, because changes
// made while it was down would otherwise go unnoticed. It is closed when ctx
// is done or the Store is closed.
//
// The etcd watch re-establishes itself when it breaks: compaction of the
// revision it was resuming from, loss of the etcd leader, or an etcd restart
// that the client could not ride out.
func (s *Store) Watch(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	go s.watchLoop(ctx, ch)
	return ch
}

const (
	watchRetryMin = 100 * time.Millisecond
	watchRetryMax = 5 * time.Second
)

func (s *Store) watchLoop(ctx context.Context, ch chan<- struct{}) {
	defer close(ch)
	delay := watchRetryMin
	for {
		started := time.Now()
		s.watchOnce(ctx, ch)
		// A watch that lived a while was healthy: start the backoff over.
		if time.Since(started) > watchRetryMax {
			delay = watchRetryMin
		}
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, watchRetryMax)
	}
}

// watchOnce runs one etcd watch until it ends, signalling ch on creation and
// on every batch of events.
func (s *Store) watchOnce(ctx context.Context, ch chan<- struct{}) {
	// WithRequireLeader: a member cut off from its leader cancels the watch
	// instead of silently delivering nothing.
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	// Watch from "now": the signal on creation tells the reader to re-read
	// everything, which covers whatever happened while no watch was open.
	wch := s.cli.Watch(wctx, Prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	for resp := range wch {
		if err := resp.Err(); err != nil {
			if ctx.Err() == nil {
				s.log.Warn("etcd watch broke, re-establishing", "err", err)
			}
			return
		}
		if resp.Created || len(resp.Events) > 0 {
			notify(ch)
		}
	}
}

// notify sends a signal unless one is already pending.
func notify(ch chan<- struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}
