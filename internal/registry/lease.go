package registry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"trellis.dev/trellis/internal/api"
)

const (
	regrantMin = 100 * time.Millisecond
	regrantMax = 5 * time.Second
)

// registration is one instance kept alive by this process.
type registration struct {
	r    *Registry
	inst api.Instance
	key  string
	val  string

	ctx    context.Context // cancelled to stop keeping the lease alive
	cancel context.CancelFunc
	done   chan struct{} // closed when keepAlive returns

	mu    sync.Mutex
	lease clientv3.LeaseID

	stopOnce sync.Once
}

func (g *registration) currentLease() clientv3.LeaseID {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.lease
}

// grantAndPut writes the instance under a new lease. The lease is recorded
// as soon as it exists so that stop can revoke it even if the put fails.
func (g *registration) grantAndPut(ctx context.Context) error {
	lease, err := g.r.cli.Grant(ctx, g.r.ttl)
	if err != nil {
		return fmt.Errorf("grant lease: %w", err)
	}
	g.mu.Lock()
	prev := g.lease
	g.lease = lease.ID
	g.mu.Unlock()
	if _, err := g.r.cli.Put(ctx, g.key, g.val, clientv3.WithLease(lease.ID)); err != nil {
		return fmt.Errorf("put %s: %w", g.key, err)
	}
	if prev != 0 {
		// The key now belongs to the new lease. Revoke the old one, if etcd
		// still has it, rather than leave it to expire.
		g.revokeLease(prev)
	}
	return nil
}

// keepAlive renews the lease until ctx ends, writing the instance again
// under a new lease whenever etcd loses the old one.
func (g *registration) keepAlive() {
	defer close(g.done)
	log := g.r.log.With("id", g.inst.ID, "service", g.inst.Service)
	for {
		ch, err := g.r.cli.KeepAlive(g.ctx, g.currentLease())
		if err == nil {
			for range ch { // responses carry nothing we need; the channel closing does
			}
		}
		if g.ctx.Err() != nil {
			return
		}
		log.Warn("instance lease lost, registering again", "lease", fmt.Sprintf("%x", g.currentLease()), "err", err)
		if !g.regrant() {
			return
		}
		log.Info("instance registered again", "lease", fmt.Sprintf("%x", g.currentLease()))
	}
}

// regrant retries grantAndPut with backoff; false when ctx ended first.
func (g *registration) regrant() bool {
	delay := regrantMin
	for {
		if err := g.grantAndPut(g.ctx); err == nil {
			return true
		} else if g.ctx.Err() == nil {
			g.r.log.Warn("registering instance again failed, retrying", "id", g.inst.ID, "in", delay, "err", err)
		}
		select {
		case <-g.ctx.Done():
			return false
		case <-time.After(delay):
		}
		delay = min(2*delay, regrantMax)
	}
}

// deregister is what Register returns: the instance leaves now.
func (g *registration) deregister() {
	g.stop()
	g.r.log.Info("instance deregistered", "id", g.inst.ID, "service", g.inst.Service)
}

// stop ends the keepalive and revokes the lease (removing the key if it is
// still attached to it). Safe to call more than once and concurrently.
func (g *registration) stop() {
	g.stopOnce.Do(func() {
		g.cancel()
		<-g.done
		g.revoke()
		g.r.forget(g)
	})
}

func (g *registration) revoke() {
	if id := g.currentLease(); id != 0 {
		g.revokeLease(id)
	}
}

func (g *registration) revokeLease(id clientv3.LeaseID) {
	if g.r.cli.Ctx().Err() != nil {
		return // client closed: a revoke would only wait for its timeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), revokeTimeout)
	defer cancel()
	_, err := g.r.cli.Revoke(ctx, id)
	if err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		g.r.log.Warn("revoking lease failed; it expires on its own", "id", g.inst.ID,
			"lease", fmt.Sprintf("%x", id), "ttl", g.r.ttl, "err", err)
	}
}
