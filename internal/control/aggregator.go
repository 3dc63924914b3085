package control

import (
	"context"
	"log/slog"
	"time"

	"trellis.dev/trellis/internal/registry"
	"trellis.dev/trellis/internal/store"
	"trellis.dev/trellis/internal/translate"
	"trellis.dev/trellis/internal/xdsserver"
)

// Debounce: a burst of changes (an apply of many resources, a deployment
// registering instances one by one) becomes one publish. quiet is how long
// the store must stay still; maxDelay caps the wait after the first change
// so that a steady trickle cannot hold a push back. Both are far below the
// sub-second push the design promises.
const (
	debounceQuiet = 10 * time.Millisecond
	debounceMax   = 100 * time.Millisecond
	// readRetry: when etcd cannot be read, try again after this long even
	// if no new change arrives.
	readRetry = time.Second
)

// publisher is the part of the xDS server the aggregator needs.
type publisher interface {
	Update(translate.Input) error
	Version() string
}

var _ publisher = (*xdsserver.Server)(nil)

// aggregator turns "something changed in etcd" into a new xDS snapshot: it
// re-reads every route and instance and hands them to the xDS server, which
// translates, checks and publishes them. Re-reading everything keeps it
// correct after missed events; the state is small.
type aggregator struct {
	read func(context.Context) (translate.Input, error)
	xds  publisher
	log  *slog.Logger

	quiet, max, retry time.Duration
}

func newAggregator(st *store.Store, reg *registry.Registry, xds publisher, log *slog.Logger) *aggregator {
	return &aggregator{
		read: func(ctx context.Context) (translate.Input, error) { return readInput(ctx, st, reg) },
		xds:  xds, log: log.With("component", "aggregator"),
		quiet: debounceQuiet, max: debounceMax, retry: readRetry,
	}
}

// readInput reads the translator's input. Routes, traffic policies and
// instances are separate reads, not one snapshot; a change between them
// raises another signal, so the next publish catches up.
func readInput(ctx context.Context, st *store.Store, reg *registry.Registry) (translate.Input, error) {
	routes, err := st.ListRoutes(ctx)
	if err != nil {
		return translate.Input{}, err
	}
	policies, err := st.ListTrafficPolicies(ctx)
	if err != nil {
		return translate.Input{}, err
	}
	instances, err := reg.List(ctx)
	if err != nil {
		return translate.Input{}, err
	}
	return translate.Input{Routes: routes, TrafficPolicies: policies, Instances: instances}, nil
}

// run publishes after every (debounced) signal until ctx ends or signals is
// closed.
func (a *aggregator) run(ctx context.Context, signals <-chan struct{}) {
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case _, ok := <-signals:
			if !ok {
				return
			}
		case <-retry:
		}
		retry = nil
		first := time.Now()
		if !a.debounce(ctx, signals, first) {
			return
		}
		if err := a.sync(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			a.log.Error("reading config from etcd failed; proxies keep the last published config",
				"err", err, "retryIn", a.retry)
			retry = time.After(a.retry)
			continue
		}
		a.log.Debug("config synced", "version", a.xds.Version(), "sinceChange", time.Since(first).Round(time.Microsecond))
	}
}

// debounce waits until no signal has arrived for a.quiet, or until a.max
// after first. False when ctx ended or signals closed.
func (a *aggregator) debounce(ctx context.Context, signals <-chan struct{}, first time.Time) bool {
	deadline := first.Add(a.max)
	timer := time.NewTimer(a.quiet)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case _, ok := <-signals:
			if !ok {
				return false
			}
			timer.Reset(min(a.quiet, time.Until(deadline)))
		case <-timer.C:
			return true
		}
	}
}

// sync reads the current routes and instances and publishes them. Only a
// read failure is returned: a config the xDS server refuses is logged, and
// the proxies keep the last one it accepted until the next change.
func (a *aggregator) sync(ctx context.Context) error {
	in, err := a.read(ctx)
	if err != nil {
		return err
	}
	if err := a.xds.Update(in); err != nil {
		a.log.Error("config not published; proxies keep the last published config",
			"err", err, "routes", len(in.Routes), "instances", len(in.Instances))
	}
	return nil
}
