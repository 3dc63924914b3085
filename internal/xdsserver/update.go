package xdsserver

import (
	"fmt"
	"strconv"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"

	"trellis.dev/trellis/internal/translate"
)

// Update translates in and publishes the result to every connected node
// (and to nodes that connect later). If translation fails or the snapshot is
// inconsistent, it returns the error and publishes nothing; proxies keep
// their config.
//
// Versions: each publish takes the next number. A type whose resources did
// not change keeps its previous version, so proxies are sent only the types
// that changed (an endpoint change is an EDS push, not a push of all four
// types). If nothing changed at all, nothing is published and Version()
// stays the same.
func (s *Server) Update(in translate.Input) error {
	s.updateMu.Lock()
	defer s.updateMu.Unlock()

	out, err := translate.Translate(in)
	if err != nil {
		return fmt.Errorf("translate: %w", err)
	}
	for _, w := range out.Warnings {
		s.log.Warn("translation warning", "warning", w)
	}

	s.mu.Lock()
	prev, next := s.snap, s.version+1
	s.mu.Unlock()

	decoded, err := cache.NewSnapshot(strconv.FormatUint(next, 10), out.Resources())
	if err != nil {
		return fmt.Errorf("building snapshot: %w", err)
	}
	if err := decoded.Consistent(); err != nil {
		return fmt.Errorf("inconsistent snapshot, not published: %w", err)
	}
	// Marshal every resource once here rather than once per node and push
	// (wire.go).
	snap, err := encodeSnapshot(decoded)
	if err != nil {
		return fmt.Errorf("encoding snapshot: %w", err)
	}
	if !carryVersions(prev, snap) {
		s.log.Debug("config unchanged, nothing published")
		return nil
	}
	// The snapshot is shared by every node; building the delta version map
	// now, before it is shared, keeps it immutable afterwards.
	if err := snap.ConstructVersionMap(); err != nil {
		return fmt.Errorf("building snapshot version map: %w", err)
	}
	pub, err := publish(snap)
	if err != nil {
		return fmt.Errorf("publishing snapshot: %w", err)
	}

	// Under s.mu so that a node connecting now gets either this snapshot
	// from bindLocked or the previous one and then this one from here.
	s.mu.Lock()
	defer s.mu.Unlock()
	s.snap, s.pub, s.version = snap, pub, next
	s.cache.published(pub)
	for id := range s.nodes {
		if err := s.cache.SetSnapshot(s.ctx, id, pub); err != nil {
			s.log.Error("setting snapshot", "node", id, "error", err)
		}
	}
	s.log.Info("published config", "version", next, "nodes", len(s.nodes),
		"clusters", len(out.Clusters), "endpoints", len(out.Endpoints))
	return nil
}

// Version is the last published snapshot version ("" before the first).
func (s *Server) Version() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.version == 0 {
		return ""
	}
	return strconv.FormatUint(s.version, 10)
}

// carryVersions gives every type of next whose resources equal those of
// prev the version prev had, and reports whether any type changed.
func carryVersions(prev, next *cache.Snapshot) (changed bool) {
	if prev == nil {
		return true
	}
	for t := range next.Resources {
		if sameResources(prev.Resources[t].Items, next.Resources[t].Items) {
			next.Resources[t].Version = prev.Resources[t].Version
		} else {
			changed = true
		}
	}
	return changed
}

func sameResources(a, b map[string]types.ResourceWithTTL) bool {
	if len(a) != len(b) {
		return false
	}
	for name, ra := range a {
		rb, ok := b[name]
		if !ok || !proto.Equal(ra.Resource, rb.Resource) {
			return false
		}
	}
	return true
}
