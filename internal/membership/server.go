package membership

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	statuspb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"trellis.dev/trellis/internal/api"
)

// Registrar puts an instance into the registry until deregister is called.
// ctx bounds the Register call only. (*registry.Registry is one.)
type Registrar interface {
	Register(ctx context.Context, inst api.Instance) (deregister func(), err error)
}

// minChangeInterval is the shortest time between two registration changes
// of one stream; a variable so that tests can change it.
var minChangeInterval = 500 * time.Millisecond

// Server is the control plane's side: it registers the instance of every
// live stream whose latest announcement says ready.
type Server struct {
	reg Registrar
	log *slog.Logger
	// keep: the control plane is stopping; streams that end now leave
	// their registrations for the next control plane (see Keep).
	keep atomic.Bool

	mu      sync.Mutex
	members map[string]*member // by node ID: the live streams
}

type member struct {
	peer       string
	since      time.Time
	registered *api.Instance // nil while not ready
}

// Member is one live membership stream, for the API.
type Member struct {
	ID         string        `json:"id"`
	Peer       string        `json:"peer"`
	Since      time.Time     `json:"since"`
	Registered *api.Instance `json:"registered,omitempty"`
}

// NewServer returns a server registering with reg.
func NewServer(reg Registrar, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{reg: reg, log: log.With("component", "membership"), members: map[string]*member{}}
}

// Keep makes streams that end from now on leave their instances
// registered: the control plane is stopping, its sidecars are not, and they
// will register again with the next one (registry.Release keeps the keys
// until then).
func (s *Server) Keep() { s.keep.Store(true) }

// Attach serves the membership service on g.
func (s *Server) Attach(g *grpc.Server) { g.RegisterService(&serviceDesc, s) }

// Members lists the live streams, sorted by ID.
func (s *Server) Members() []Member {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Member, 0, len(s.members))
	for id, m := range s.members {
		out = append(out, Member{ID: id, Peer: m.peer, Since: m.since, Registered: m.registered})
	}
	slices.SortFunc(out, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// join runs one stream: claim the node ID, then follow the announcements
// until the stream ends, which deregisters the instance.
func (s *Server) join(stream grpc.ServerStream) error {
	ctx := stream.Context()
	peerAddr := ""
	if p, ok := peer.FromContext(ctx); ok {
		peerAddr = p.Addr.String()
	}
	first := new(corev3.Node)
	if err := stream.RecvMsg(first); err != nil {
		return err
	}
	id := first.GetId()
	if id == "" {
		return status.Error(codes.InvalidArgument, "node.id: required")
	}
	if holder, ok := s.claim(id, peerAddr); !ok {
		s.log.Warn("refused a second stream for a live node id", "node", id, "peer", peerAddr, "holder", holder)
		return status.Errorf(codes.AlreadyExists,
			"node id %q is held by a live stream from %s; a second process cannot take it over", id, holder)
	}
	log := s.log.With("node", id, "peer", peerAddr)
	var deregister func()
	defer func() {
		switch {
		case deregister != nil && s.keep.Load():
			log.Debug("control plane stopping: instance left registered for the next one")
		case deregister != nil:
			deregister()
			log.Info("instance left the mesh")
		}
		s.release(id)
	}()

	var lastChange time.Time
	msg := first
	for {
		if msg.GetId() != id {
			return status.Errorf(codes.InvalidArgument, "node.id: a stream cannot change its node id (%q, then %q)", id, msg.GetId())
		}
		a := announcementOf(msg, peerAddr)
		var want *api.Instance
		if a.Ready {
			if err := api.ValidateInstance(a.Instance); err != nil {
				log.Warn("registration refused", "error", err)
				return status.Errorf(codes.InvalidArgument, "registration refused: %v", err)
			}
			want = &a.Instance
		}
		have := s.registered(id)
		if !sameInstance(want, have) {
			// Every change is an etcd write and a push to every proxy: one
			// stream may change its registration at most once per
			// minChangeInterval (a sidecar's own probe thresholds keep it
			// far below; a client flapping on purpose is slowed to that).
			if wait := time.Until(lastChange.Add(minChangeInterval)); wait > 0 {
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-time.After(wait):
				}
			}
			lastChange = time.Now()
			if deregister != nil {
				deregister()
				deregister = nil
				s.setRegistered(id, nil)
				log.Info("instance left the mesh (not ready)")
			}
			if want != nil {
				d, err := s.reg.Register(ctx, *want)
				if err != nil {
					log.Warn("registering failed", "error", err)
					return status.Errorf(codes.Unavailable, "registering: %v", err)
				}
				deregister = d
				s.setRegistered(id, want)
				log.Info("instance joined the mesh", "service", want.Service, "version", want.Version,
					"address", want.Address, "port", want.Port)
			}
		}
		answer := msgNotRegistered
		if want != nil {
			answer = msgRegistered
		}
		if err := stream.SendMsg(&statuspb.Status{Code: int32(codes.OK), Message: answer}); err != nil {
			return err
		}
		msg = new(corev3.Node)
		if err := stream.RecvMsg(msg); err != nil {
			if errors.Is(err, io.EOF) {
				return nil // a clean leave
			}
			return err
		}
	}
}

// claim makes id's stream this one, unless a live stream holds it.
func (s *Server) claim(id, peerAddr string) (holder string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, held := s.members[id]; held {
		return m.peer, false
	}
	s.members[id] = &member{peer: peerAddr, since: time.Now()}
	return "", true
}

func (s *Server) release(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.members, id)
}

func (s *Server) registered(id string) *api.Instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.members[id]; m != nil {
		return m.registered
	}
	return nil
}

func (s *Server) setRegistered(id string, inst *api.Instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m := s.members[id]; m != nil {
		m.registered = inst
	}
}

func sameInstance(a, b *api.Instance) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}

// String makes a Member readable in test failures.
func (m Member) String() string {
	return fmt.Sprintf("%s@%s registered=%v", m.ID, m.Peer, m.Registered != nil)
}
