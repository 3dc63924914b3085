package proxy

import (
	"context"
	"errors"
	"sync"
)

// Leave takes this instance out of the mesh — the control plane
// deregisters it and pushes peers a config without it — and keeps serving,
// with its config still followed: requests that peers send before that push
// arrives are still answered, and the app's own calls still work (trellis
// run drains this way before it stops the app). It returns once the control
// plane confirmed the instance left, or ctx ends. Shutdown still follows.
func (p *Proxy) Leave(ctx context.Context) {
	p.log.Info("leaving the mesh, still serving")
	p.leaveMesh(ctx)
}

// Shutdown stops the proxy without dropping what is in flight. First it
// leaves the mesh (the control plane deregisters this instance and peers
// stop sending to it) and closes its streams; then it stops accepting and lets requests in
// flight finish until ctx ends; what is still open then (including CONNECT
// tunnels) is closed.
func (p *Proxy) Shutdown(ctx context.Context) error {
	if !p.shuttingDown.CompareAndSwap(false, true) {
		return errors.New("proxy: already shut down")
	}
	p.log.Info("proxy shutting down")
	// Start has returned or never will now: what it set is fixed.
	p.mu.Lock()
	listeners, adminSrv := p.listeners, p.adminSrv
	xdsCancel, xdsDone := p.xdsCancel, p.xdsDone
	p.mu.Unlock()

	p.leaveMesh(ctx)
	p.stopMembership(ctx)
	if xdsCancel != nil {
		xdsCancel()
		select {
		case <-xdsDone:
		case <-ctx.Done():
		}
	}

	var wg sync.WaitGroup
	errs := make([]error, len(listeners)+1)
	for i, l := range listeners {
		wg.Go(func() { errs[i] = l.srv.Shutdown(ctx) })
	}
	if p.tunnels != nil {
		wg.Go(func() { errs[len(listeners)] = p.tunnels.Shutdown(ctx) })
	}
	wg.Wait()
	if ctx.Err() != nil {
		for _, l := range listeners {
			l.srv.Close()
		}
		if p.tunnels != nil {
			p.tunnels.Close()
		}
	}
	p.health.Stop()
	p.toMesh.CloseIdleConnections()
	if p.toApp != nil {
		p.toApp.CloseIdleConnections()
	}
	// Admin last: /ready says "shutting down" while the rest drains.
	if adminSrv != nil {
		adminSrv.Close()
	}
	p.log.Info("proxy stopped")
	return errors.Join(errs...)
}
