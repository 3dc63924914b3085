package proxy

import (
	"strings"

	"trellis.dev/trellis/internal/proxy/model"
)

// setSnapshot makes s the configuration new requests use. Requests already
// routed keep the snapshot they loaded. It is the xDS client's OnUpdate, and
// the hook tests use to configure a proxy without a control plane.
func (p *Proxy) setSnapshot(s *model.Snapshot) {
	if s == nil {
		return
	}
	p.health.Update(s) // probe the new endpoints, stop probing the gone ones
	p.forgetGoneClusters(s)
	p.snapshot.Store(s)
	p.metrics.ConfigUpdated()
	p.log.Info("config applied", "versions", s.Versions, "clusters", len(s.Clusters))
	p.maybeReady()
	releaser.configApplied()
}

// readiness reports whether the proxy is ready, and why not.
func (p *Proxy) readiness() (bool, string) {
	switch {
	case p.shuttingDown.Load():
		return false, "shutting down"
	case !p.bound.Load():
		return false, "listeners not bound yet"
	case p.snapshot.Load() == nil:
		why := "no configuration from the control plane at " + p.cfg.ControlAddr + " yet"
		switch st := p.xdsStatus(); {
		case !st.Connected:
			why += " (not connected)"
		case len(st.Waiting) > 0:
			why += " (waiting for " + strings.Join(st.Waiting, ", ") + ")"
		}
		return false, why
	}
	return true, ""
}
