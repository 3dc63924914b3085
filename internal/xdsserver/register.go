package xdsserver

import (
	"context"
	"sync"

	"trellis.dev/trellis/internal/api"
)

// registration is the Registrar state of one node ID. Its mutex serialises
// Register/deregister calls for that ID, which do I/O and so run outside
// s.mu. Lock order: registration.mu, then Server.mu.
type registration struct {
	mu         sync.Mutex
	registered *api.Instance // what is registered now, nil if nothing
	deregister func()
	users      int // reconciles holding this entry; guarded by Server.mu
}

// reconcile makes the registration of node id match the node's current
// state: registered as its announced instance while connected, not at all
// once gone. It is level-triggered — it reads the desired state after
// taking the ID's lock — so a close and a reconnect racing each other
// cannot leave the wrong result, whatever order they run in.
func (s *Server) reconcile(ctx context.Context, id string) error {
	if s.reg == nil {
		return nil
	}
	s.mu.Lock()
	r := s.regs[id]
	if r == nil {
		r = &registration{}
		s.regs[id] = r
	}
	r.users++
	s.mu.Unlock()

	r.mu.Lock()
	defer r.mu.Unlock()
	err := s.reconcileLocked(ctx, id, r)

	// Drop the entry once nobody uses it and nothing is registered, so the
	// map only holds live registrations.
	s.mu.Lock()
	r.users--
	if r.users == 0 && r.deregister == nil {
		delete(s.regs, id)
	}
	s.mu.Unlock()
	return err
}

// reconcileLocked does the work of reconcile; r.mu must be held.
func (s *Server) reconcileLocked(ctx context.Context, id string, r *registration) error {
	s.mu.Lock()
	var want *api.Instance
	if ns := s.nodes[id]; ns != nil && ns.inst != nil {
		inst := *ns.inst
		want = &inst
	}
	s.mu.Unlock()

	if want != nil && r.registered != nil && *want == *r.registered {
		return nil
	}
	if r.deregister != nil {
		r.deregister()
		s.log.Info("instance deregistered", "node", id, "service", r.registered.Service)
		r.registered, r.deregister = nil, nil
	}
	if want == nil {
		return nil
	}
	deregister, err := s.reg.Register(ctx, *want)
	if err != nil {
		return err
	}
	if deregister == nil {
		deregister = func() {}
	}
	r.registered, r.deregister = want, deregister
	s.log.Info("instance registered", "node", id, "service", want.Service, "version", want.Version,
		"address", want.Address, "port", want.Port)
	return nil
}
