package store

import (
	"context"

	"trellis.dev/trellis/internal/api"
)

// ListTrafficPolicies is List(KindTrafficPolicy) with concrete types, for
// the translator.
func (s *Store) ListTrafficPolicies(ctx context.Context) ([]api.TrafficPolicy, error) {
	rs, err := s.List(ctx, api.KindTrafficPolicy)
	if err != nil {
		return nil, err
	}
	out := make([]api.TrafficPolicy, 0, len(rs))
	for _, r := range rs {
		if p, ok := r.(*api.TrafficPolicy); ok {
			out = append(out, *p)
		}
	}
	return out, nil
}
