// Package registry keeps the mesh's service instances in etcd, each under a
// lease: an instance is in the mesh exactly as long as something keeps its
// lease alive.
//
// A control plane registers an instance when the instance's sidecar opens
// its xDS stream and deregisters it when the stream ends. If the control
// plane itself dies, nobody renews the lease and etcd removes the instance
// within the TTL, so a crashed control plane cannot leave stale endpoints
// behind (a cause of 503s during rollouts in other meshes).
//
// Instances live at store.InstanceKey(service, id) as JSON api.Instance.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/store"
)

// DefaultTTL is how long an instance outlives its control plane. etcd rounds
// lease TTLs up to whole seconds and has a floor of its own: 1 s with the
// embedded etcd's timing, 2 s with etcd's default timing. etcd notices an
// expired lease up to 0.5 s late.
const DefaultTTL = 5 * time.Second

// revokeTimeout bounds the revoke at deregistration; if etcd does not answer
// in time the lease expires on its own within the TTL.
const revokeTimeout = 3 * time.Second

// ErrClosed is returned by Register after Close.
var ErrClosed = errors.New("registry closed")

// Registry registers instances under leases and lists them.
type Registry struct {
	cli *clientv3.Client
	ttl int64 // seconds
	log *slog.Logger

	// ctx is the life of every keepalive; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	held   map[string]*registration // by instance ID: the ones this process keeps alive
	closed bool
}

// New returns a registry on cli. ttl <= 0 means DefaultTTL.
func New(cli *clientv3.Client, ttl time.Duration, logger *slog.Logger) *Registry {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Registry{
		cli:    cli,
		ttl:    int64(math.Ceil(ttl.Seconds())),
		log:    logger.With("component", "registry"),
		ctx:    ctx,
		cancel: cancel,
		held:   make(map[string]*registration),
	}
}

// Register puts inst into etcd under a fresh lease and keeps the lease alive
// until the returned deregister is called (the instance then leaves at once)
// or the registry is closed. ctx bounds only the initial write.
//
// If etcd loses the lease while the instance is registered (an etcd restart
// that outlasted the TTL, a long partition), the instance is written again
// under a new lease, with backoff, until that succeeds.
//
// Registering an ID this registry already holds replaces the older
// registration: a proxy that reconnects before its old stream is noticed as
// gone must not be removed by the old stream's deregister.
func (r *Registry) Register(ctx context.Context, inst api.Instance) (deregister func(), err error) {
	if err := checkInstance(inst); err != nil {
		return nil, err
	}
	if r.ctx.Err() != nil {
		return nil, ErrClosed
	}
	val, err := json.Marshal(inst)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(r.ctx)
	reg := &registration{
		r:      r,
		inst:   inst,
		key:    store.InstanceKey(inst.Service, inst.ID),
		val:    string(val),
		ctx:    rctx,
		cancel: cancel,
		done:   make(chan struct{}),
	}
	// Bound the first write by the caller's ctx as well as our own life.
	wctx, wcancel := context.WithCancel(ctx)
	stop := context.AfterFunc(rctx, wcancel)
	err = reg.grantAndPut(wctx)
	stop()
	wcancel()
	if err != nil {
		cancel()
		reg.revoke() // a lease granted before the put failed
		return nil, fmt.Errorf("registry: register %s: %w", inst.ID, err)
	}

	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		cancel()
		reg.revoke()
		return nil, ErrClosed
	}
	old := r.held[inst.ID]
	r.held[inst.ID] = reg
	r.mu.Unlock()

	go reg.keepAlive()
	if old != nil {
		// The key now carries the new lease, so revoking the old one leaves it.
		old.stop()
	}
	r.log.Info("instance registered", "id", inst.ID, "service", inst.Service, "version", inst.Version,
		"address", fmt.Sprintf("%s:%d", inst.Address, inst.Port), "lease", fmt.Sprintf("%x", reg.currentLease()))
	return reg.deregister, nil
}

// Close revokes every lease this registry holds: its instances leave now
// rather than when their TTL runs out.
func (r *Registry) Close() {
	r.mu.Lock()
	r.closed = true
	regs := make([]*registration, 0, len(r.held))
	for _, reg := range r.held {
		regs = append(regs, reg)
	}
	r.mu.Unlock()
	var wg sync.WaitGroup
	for _, reg := range regs {
		wg.Go(reg.stop)
	}
	wg.Wait()
	r.cancel()
}

// forget drops reg from held unless a newer registration of the same ID
// replaced it.
func (r *Registry) forget(reg *registration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.held[reg.inst.ID] == reg {
		delete(r.held, reg.inst.ID)
	}
}

func checkInstance(inst api.Instance) error {
	if err := store.CheckKeySegment("instance id", inst.ID); err != nil {
		return err
	}
	if err := store.CheckKeySegment("instance service", inst.Service); err != nil {
		return err
	}
	if inst.Port < 0 || inst.Port > 65535 {
		return fmt.Errorf("%w: instance port %d out of range", store.ErrInvalid, inst.Port)
	}
	return nil
}
