package proxy

import (
	"context"
	"sync"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/membership"
)

// memberClient is what the proxy needs of its membership client; tests
// replace it (newMember) to run without a control plane.
type memberClient interface {
	Run(ctx context.Context) error
	SetReady(ready bool)
	Leave(ctx context.Context)
	Status() membership.Status
}

var _ memberClient = (*membership.Client)(nil)

func newMembershipClient(cfg membership.ClientConfig) memberClient { return membership.NewClient(cfg) }

// startMembership keeps this sidecar's instance in the mesh while its app is
// ready: it probes the app and announces the result on the membership
// stream (internal/membership), which is independent of the xDS stream, so
// a config the proxy cannot take never takes the instance out of the mesh.
// Only a sidecar with an app registers. p.mu must be held.
func (p *Proxy) startMembership(ctx context.Context, inboundPort int) {
	if !p.cfg.hasInbound() {
		return
	}
	c := p.newMember(membership.ClientConfig{
		Addr: p.cfg.ControlAddr,
		Instance: api.Instance{ID: p.nodeID, Service: p.cfg.Service, Version: p.cfg.Version,
			Address: p.cfg.Address, Port: inboundPort, Zone: p.cfg.Zone},
		Logger: p.log,
	})
	mctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	p.member, p.memberCancel, p.memberDone = c, cancel, done
	probe := newAppProbe(&p.cfg)
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		wg.Go(func() { p.watchApp(mctx, probe, c.SetReady) })
		_ = c.Run(mctx)
		wg.Wait()
	}()
}

// leaveMesh takes the instance out of the registry and waits until the
// control plane confirms it (or ctx ends); the membership stream stays up
// and the app is never announced ready again.
func (p *Proxy) leaveMesh(ctx context.Context) {
	p.mu.Lock()
	c := p.member
	p.mu.Unlock()
	if c != nil {
		c.Leave(ctx)
	}
}

// stopMembership closes the membership stream (deregistering the instance if
// Leave has not already).
func (p *Proxy) stopMembership(ctx context.Context) {
	p.mu.Lock()
	cancel, done := p.memberCancel, p.memberDone
	p.mu.Unlock()
	if cancel == nil {
		return
	}
	cancel()
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// membershipStatus is the sidecar's view of its registration; zero for a
// proxy without an app.
func (p *Proxy) membershipStatus() (membership.Status, bool) {
	p.mu.Lock()
	c := p.member
	p.mu.Unlock()
	if c == nil {
		return membership.Status{}, false
	}
	return c.Status(), true
}
