// Package registry keeps the mesh's service instances in etcd under a lease:
// an instance is in the mesh exactly as long as something keeps its lease
// alive.
//
// A control plane registers an instance while the instance's sidecar
// announces it ready on its membership stream (internal/membership) and
// deregisters it (deletes its key) when it is no longer ready or the stream
// ends. Every instance one Registry registers shares that Registry's one
// lease, renewed by one keepalive loop. If the control plane itself stops
// (Release) or dies, nobody renews the lease: its sidecars register again
// with the next control plane, and etcd removes what nobody registered
// again within the TTL, so a gone control plane leaves no stale endpoints
// behind for long (a cause of 503s during rollouts in other meshes).
//
// Why one lease and not one per instance: the keepalive traffic and work
// must not grow with the mesh. With a lease per instance, a control plane
// holding 4,000 instances sent 4,000 renewals every TTL/3 and ran a
// goroutine per instance to do it; in bench/controlplane a cold start of
// 2,000 proxies against 1,000 services kept the process busy pushing the
// initial config for 15 s, the renewals fell behind, and every one of the
// 4,000 leases (5 s TTL) expired while its sidecar was still connected. One
// lease is one renewal every TTL/3 whatever the number of instances, on a
// goroutine of its own that does no per-instance work, so it cannot queue
// behind registrations or config pushes. (Issue 8, item 7.)
//
// Instances live at store.InstanceKey(service, id) as JSON api.Instance.
package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"math"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/store"
)

// DefaultTTL is how long an instance outlives its control plane. etcd rounds
// lease TTLs up to whole seconds and has a floor of its own: 1 s with the
// embedded etcd's timing, 2 s with etcd's default timing. etcd notices an
// expired lease up to 0.5 s late.
//
// 15 s, not less: the lease is the control plane's, not an instance's, so
// the TTL decides only two things. How long a control plane starved of CPU
// may go without renewing before every instance it registered is deleted at
// once (bench/controlplane once lost a 5 s lease at 2,000 proxies × 1,000
// services while pushing endpoint changes with nothing admitting streams,
// on two shared cores); and how long the instances of a crashed control
// plane stay listed, which gives their sidecars, still alive, the time to
// reconnect to a control plane and register again before they expire.
// Instances that die along with their control plane stay that long too;
// callers retry another instance on a failed connect.
const DefaultTTL = 15 * time.Second

// revokeTimeout bounds the revoke at Close and the delete at deregistration;
// if etcd does not answer in time the lease expires on its own within the
// TTL.
const revokeTimeout = 3 * time.Second

// ErrClosed is returned by Register after Close.
var ErrClosed = errors.New("registry closed")

// stripes is the number of locks that serialise the etcd writes of one
// instance ID (see Registry.stripe).
const stripes = 256

// Registry registers instances under one shared lease and lists them.
type Registry struct {
	cli *clientv3.Client
	ttl int64 // seconds
	log *slog.Logger

	// ctx is the life of the keepalive and of every write in the
	// background; Close cancels it.
	ctx    context.Context
	cancel context.CancelFunc

	startOnce sync.Once
	wg        sync.WaitGroup // the keeper and any re-put in progress

	// stripe[i] serialises the writes (put, re-put, delete) of the instance
	// IDs that hash to i, and the recording of what each wrote, so that
	// a re-put after a lost lease never overwrites a newer registration.
	// Held across an etcd call; taken before mu. A re-put takes several, in
	// ascending order; anything else takes at most one.
	stripe [stripes]sync.Mutex

	mu       sync.Mutex
	held     map[string]*registration // by instance ID: the ones this process keeps alive
	closed   bool
	lease    clientv3.LeaseID   // the lease being kept alive now; 0 while there is none
	ready    chan struct{}      // closed once lease != 0; replaced when the lease is lost
	kaCancel context.CancelFunc // stops the keepalive of lease
	last     clientv3.LeaseID   // the last lease granted, which Close revokes
}

// registration is one instance this registry keeps in etcd.
type registration struct {
	inst api.Instance
	key  string
	val  string

	// Guarded by Registry.mu, written only with the ID's stripe held:
	// what the key was last written as by this registration.
	lease clientv3.LeaseID
	rev   int64

	once sync.Once // deregister
}

// New returns a registry on cli. ttl <= 0 means DefaultTTL. It does not
// talk to etcd: the lease is granted on the first Register.
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
		ready:  make(chan struct{}),
	}
}

// Register puts inst into etcd under the registry's lease and keeps it there
// until the returned deregister is called (the instance then leaves at once)
// or the registry is closed. ctx bounds only the initial write, including
// the wait for the lease on the first Register.
//
// If etcd loses the lease while the instance is registered (an etcd restart
// that outlasted the TTL, a long partition), every instance is written again
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
	reg := &registration{inst: inst, key: store.InstanceKey(inst.Service, inst.ID), val: string(val)}
	r.startOnce.Do(r.start)

	// Bound the write by the caller's ctx as well as our own life.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(r.ctx, cancel)()

	lk := r.stripeOf(inst.ID)
	lk.Lock()
	defer lk.Unlock()
	for {
		lease, err := r.waitLease(ctx)
		if err != nil {
			if errors.Is(err, ErrClosed) {
				return nil, ErrClosed
			}
			return nil, fmt.Errorf("registry: register %s: waiting for the lease: %w", inst.ID, err)
		}
		resp, err := r.cli.Put(ctx, reg.key, reg.val, clientv3.WithLease(lease))
		if errors.Is(err, rpctypes.ErrLeaseNotFound) {
			// Lost before the keeper noticed: tell it, wait for the next.
			r.leaseLost(lease)
			continue
		}
		if err != nil {
			if r.ctx.Err() != nil {
				return nil, ErrClosed
			}
			return nil, fmt.Errorf("registry: register %s: put %s: %w", inst.ID, reg.key, err)
		}
		r.mu.Lock()
		if r.closed {
			// Close revokes the lease we wrote under (or, with a closed
			// client, it expires).
			r.mu.Unlock()
			return nil, ErrClosed
		}
		if r.lease != lease {
			// The lease was replaced while we wrote, possibly after the
			// re-put looked at held: write again under the new one.
			r.mu.Unlock()
			continue
		}
		reg.lease, reg.rev = lease, resp.Header.Revision
		r.held[inst.ID] = reg // replaces any older registration of the ID
		r.mu.Unlock()
		r.log.Info("instance registered", "id", inst.ID, "service", inst.Service, "version", inst.Version,
			"address", fmt.Sprintf("%s:%d", inst.Address, inst.Port), "lease", fmt.Sprintf("%x", lease))
		return func() { r.deregister(reg) }, nil
	}
}

// Close revokes the registry's lease, so every instance it holds leaves now
// rather than when the TTL runs out, and stops the keepalive. With a closed
// client it does not wait for etcd: the lease then expires on its own.
func (r *Registry) Close() { r.stop(true) }

// Release stops keeping the lease alive without revoking it: every instance
// stays in etcd until the lease's TTL runs out. A control plane that stops
// cleanly releases rather than closes, so that the sidecars it served, which
// are still running, can register again with the next control plane (a
// restart, another replica) before their instances expire: the first config
// that control plane pushes still has every endpoint. (Closing made every
// restart push configs without them: 404s and 503s until the sidecars came
// back.) Deregistering after Release does nothing.
func (r *Registry) Release() { r.stop(false) }

func (r *Registry) stop(revoke bool) {
	r.mu.Lock()
	r.closed = true
	clear(r.held)
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	if !revoke {
		return
	}
	// The keeper has returned, so last is the last lease anyone wrote under.
	r.mu.Lock()
	lease := r.last
	r.mu.Unlock()
	if lease != 0 {
		r.revoke(lease)
	}
}

// Held is the number of instances this registry keeps alive.
func (r *Registry) Held() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.held)
}

// LeaseID is the lease the registry keeps alive now: 0 before the first
// Register, while a lost lease is being replaced, and after Close.
func (r *Registry) LeaseID() clientv3.LeaseID {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lease
}

// deregister is what Register returns: the instance leaves now, unless a
// newer registration of its ID replaced it. Safe to call more than once.
func (r *Registry) deregister(reg *registration) {
	reg.once.Do(func() {
		lk := r.stripeOf(reg.inst.ID)
		lk.Lock()
		defer lk.Unlock()
		r.mu.Lock()
		current := r.held[reg.inst.ID] == reg
		if current {
			delete(r.held, reg.inst.ID)
		}
		lease, rev := reg.lease, reg.rev
		r.mu.Unlock()
		if !current || r.cli.Ctx().Err() != nil {
			// Replaced (the key is the newer one's), or closed (Close
			// revoked the lease), or the client is gone (the lease expires).
			return
		}
		if err := r.deleteIfOurs(reg.key, lease, rev); err != nil {
			r.log.Warn("deleting instance failed; it stays until the registry closes", "id", reg.inst.ID, "err", err)
			return
		}
		r.log.Info("instance deregistered", "id", reg.inst.ID, "service", reg.inst.Service)
	})
}

// deleteIfOurs deletes key if it is still as this registry last wrote it:
// under lease, at rev. Anything else (a newer registration of the ID here or
// on another control plane) is left alone.
func (r *Registry) deleteIfOurs(key string, lease clientv3.LeaseID, rev int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), revokeTimeout)
	defer cancel()
	_, err := r.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.ModRevision(key), "=", rev),
		clientv3.Compare(clientv3.LeaseValue(key), "=", lease),
	).Then(clientv3.OpDelete(key)).Commit()
	return err
}

func (r *Registry) stripeOf(id string) *sync.Mutex { return &r.stripe[r.stripeIndex(id)] }

func (r *Registry) stripeIndex(id string) int {
	h := fnv.New32a()
	h.Write([]byte(id))
	return int(h.Sum32() % stripes)
}

// checkInstance refuses what a proxy could not use (api.ValidateInstance),
// so that an instance written through any path is one every proxy takes.
func checkInstance(inst api.Instance) error {
	if err := api.ValidateInstance(inst); err != nil {
		return fmt.Errorf("%w: instance: %v", store.ErrInvalid, err)
	}
	return nil
}
