package registry

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

const (
	regrantMin = 100 * time.Millisecond
	regrantMax = 5 * time.Second

	// opTimeout bounds one grant or one re-put transaction.
	opTimeout = 5 * time.Second

	// maxTxnOps is the size of a re-put transaction; etcd refuses more
	// than --max-txn-ops (128 by default) operations in one.
	maxTxnOps = 100
)

// errStale ends a re-put whose lease has been replaced in turn.
var errStale = errors.New("lease replaced")

// start launches the keeper, unless the registry is already closed.
func (r *Registry) start() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.closed {
		r.wg.Add(1)
		go r.keep()
	}
}

// keep grants the registry's lease and keeps it alive until Close; when etcd
// loses it, keep grants a new one and starts a re-put of every held instance
// under it. The keepalive itself is clientv3's: one renewal every TTL/3 on
// the client's lease stream, whatever the number of instances. This
// goroutine only waits for the lease to end; it does no per-instance work,
// so nothing can make it late.
func (r *Registry) keep() {
	defer r.wg.Done()
	var prev clientv3.LeaseID // the lost lease, while replacing it
	for {
		id, ok := r.grant()
		if !ok {
			return
		}
		kctx, kcancel := context.WithCancel(r.ctx)
		r.mu.Lock()
		r.lease, r.kaCancel, r.last = id, kcancel, id
		close(r.ready)
		r.mu.Unlock()
		if prev != 0 {
			r.wg.Add(1)
			go r.reput(kctx, id, prev)
		}

		ch, err := r.cli.KeepAlive(kctx, id)
		if err == nil {
			for range ch { // responses carry nothing we need; the channel closing does
			}
		}
		kcancel()

		r.mu.Lock()
		r.lease, r.kaCancel = 0, nil
		r.ready = make(chan struct{})
		held := len(r.held)
		r.mu.Unlock()
		if r.ctx.Err() != nil {
			return
		}
		r.log.Warn("registry lease lost; granting a new one and registering its instances again",
			"lease", fmt.Sprintf("%x", id), "instances", held, "err", err)
		prev = id
	}
}

// grant grants a lease, retrying with backoff; false once the registry is
// closed. It logs the first failure only.
func (r *Registry) grant() (clientv3.LeaseID, bool) {
	delay := regrantMin
	for failed := false; ; failed = true {
		ctx, cancel := context.WithTimeout(r.ctx, opTimeout)
		resp, err := r.cli.Grant(ctx, r.ttl)
		cancel()
		if err == nil {
			if failed {
				r.log.Info("registry lease granted", "lease", fmt.Sprintf("%x", resp.ID))
			}
			return resp.ID, true
		}
		if r.ctx.Err() != nil {
			return 0, false
		}
		if !failed {
			r.log.Warn("granting the registry lease failed; retrying with backoff", "err", err)
		}
		select {
		case <-r.ctx.Done():
			return 0, false
		case <-time.After(delay):
		}
		delay = min(2*delay, regrantMax)
	}
}

// waitLease returns the lease being kept alive, waiting for one if there is
// none yet (first Register) or a lost one is being replaced.
func (r *Registry) waitLease(ctx context.Context) (clientv3.LeaseID, error) {
	for {
		r.mu.Lock()
		id, ready, closed := r.lease, r.ready, r.closed
		r.mu.Unlock()
		switch {
		case closed:
			return 0, ErrClosed
		case id != 0:
			return id, nil
		}
		select {
		case <-ready:
		case <-r.ctx.Done():
			return 0, ErrClosed
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// leaseLost tells the keeper that etcd no longer has lease id, when a write
// finds out before the keepalive does.
func (r *Registry) leaseLost(id clientv3.LeaseID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.lease == id && r.kaCancel != nil {
		r.kaCancel()
	}
}

// reput writes every held instance not yet under lease again under it, in
// transactions of at most maxTxnOps, retrying with backoff until done or
// ctx (lease's keepalive) ends. Then it revokes prev, the lease it
// replaces, in case etcd still has it (the keepalive can also end because
// etcd did not answer in time).
func (r *Registry) reput(ctx context.Context, lease, prev clientv3.LeaseID) {
	defer r.wg.Done()
	r.mu.Lock()
	ids := make([]string, 0, len(r.held))
	for id, reg := range r.held {
		if reg.lease != lease {
			ids = append(ids, id)
		}
	}
	r.mu.Unlock()
	slices.Sort(ids)

	delay := regrantMin
	failed := false
	for i := 0; i < len(ids); {
		batch := ids[i:min(i+maxTxnOps, len(ids))]
		err := r.reputBatch(ctx, lease, batch)
		switch {
		case err == nil:
			i += len(batch)
			delay = regrantMin
			continue
		case ctx.Err() != nil || errors.Is(err, errStale):
			return // the next lease's re-put takes over
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			r.leaseLost(lease)
			return
		}
		if !failed {
			r.log.Warn("registering instances again failed; retrying with backoff", "lease", fmt.Sprintf("%x", lease), "err", err)
			failed = true
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, regrantMax)
	}
	r.log.Info("instances registered again", "lease", fmt.Sprintf("%x", lease), "instances", len(ids))
	if r.cli.Ctx().Err() == nil {
		r.revoke(prev)
	}
}

// reputBatch writes the instances of ids that are still held and not yet
// under lease in one transaction. It holds their stripes throughout, so a
// concurrent Register or deregister of one of them lands wholly before or
// after it, and it reads each ID's current registration only then.
func (r *Registry) reputBatch(ctx context.Context, lease clientv3.LeaseID, ids []string) error {
	idx := make([]int, 0, len(ids))
	for _, id := range ids {
		idx = append(idx, r.stripeIndex(id))
	}
	slices.Sort(idx)
	idx = slices.Compact(idx)
	for _, i := range idx {
		r.stripe[i].Lock()
	}
	defer func() {
		for _, i := range slices.Backward(idx) {
			r.stripe[i].Unlock()
		}
	}()

	r.mu.Lock()
	if r.lease != lease {
		r.mu.Unlock()
		return errStale
	}
	var regs []*registration
	var ops []clientv3.Op
	for _, id := range ids {
		if reg := r.held[id]; reg != nil && reg.lease != lease {
			regs = append(regs, reg)
			ops = append(ops, clientv3.OpPut(reg.key, reg.val, clientv3.WithLease(lease)))
		}
	}
	r.mu.Unlock()
	if len(ops) == 0 {
		return nil
	}
	tctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	resp, err := r.cli.Txn(tctx).Then(ops...).Commit()
	if err != nil {
		return err
	}
	r.mu.Lock()
	for _, reg := range regs {
		reg.lease, reg.rev = lease, resp.Header.Revision
	}
	r.mu.Unlock()
	return nil
}

// revoke revokes a lease, removing every key on it. A closed client would
// only make it wait for its timeout, so it does not try.
func (r *Registry) revoke(id clientv3.LeaseID) {
	if r.cli.Ctx().Err() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), revokeTimeout)
	defer cancel()
	if _, err := r.cli.Revoke(ctx, id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		r.log.Warn("revoking the registry lease failed; it expires on its own",
			"lease", fmt.Sprintf("%x", id), "ttl", r.ttl, "err", err)
	}
}
