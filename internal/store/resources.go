package store

import (
	"context"
	"fmt"

	clientv3 "go.etcd.io/etcd/client/v3"

	"trellis.dev/trellis/internal/api"
)

// Get returns one resource, or an error wrapping ErrNotFound.
func (s *Store) Get(ctx context.Context, kind, namespace, name string) (api.Resource, error) {
	if err := checkRef(kind, namespace, name); err != nil {
		return nil, err
	}
	resp, err := s.cli.Get(ctx, ResourceKey(kind, namespace, name))
	if err != nil {
		return nil, fmt.Errorf("store: get %s %s/%s: %w", kind, namespace, name, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("%s %s/%s: %w", kind, namespace, name, ErrNotFound)
	}
	r, err := decodeResource(kind, resp.Kvs[0].Value)
	if err != nil {
		return nil, fmt.Errorf("store: decode %s: %w", resp.Kvs[0].Key, err)
	}
	return r, nil
}

// List returns every resource of one kind, ordered by namespace, then name.
//
// A stored value that no longer decodes is logged and skipped rather than
// failing the list: one bad key must not freeze the whole mesh's config.
func (s *Store) List(ctx context.Context, kind string) ([]api.Resource, error) {
	if err := CheckKeySegment("kind", kind); err != nil {
		return nil, err
	}
	resp, err := s.cli.Get(ctx, KindPrefix(kind), clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("store: list %s: %w", kind, err)
	}
	out := make([]api.Resource, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		r, err := decodeResource(kind, kv.Value)
		if err != nil {
			s.log.Error("skipping stored resource that does not decode", "key", string(kv.Key), "err", err)
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// ListRoutes is List(KindRoute) with concrete types, for the translator.
func (s *Store) ListRoutes(ctx context.Context) ([]api.Route, error) {
	rs, err := s.List(ctx, api.KindRoute)
	if err != nil {
		return nil, err
	}
	routes := make([]api.Route, 0, len(rs))
	for _, r := range rs {
		if rt, ok := r.(*api.Route); ok {
			routes = append(routes, *rt)
		}
	}
	return routes, nil
}

// Delete removes one resource, or returns an error wrapping ErrNotFound.
func (s *Store) Delete(ctx context.Context, kind, namespace, name string) error {
	if err := checkRef(kind, namespace, name); err != nil {
		return err
	}
	resp, err := s.cli.Delete(ctx, ResourceKey(kind, namespace, name))
	if err != nil {
		return fmt.Errorf("store: delete %s %s/%s: %w", kind, namespace, name, err)
	}
	if resp.Deleted == 0 {
		return fmt.Errorf("%s %s/%s: %w", kind, namespace, name, ErrNotFound)
	}
	s.log.Info("deleted", "kind", kind, "namespace", namespace, "name", name)
	return nil
}

func checkRef(kind, namespace, name string) error {
	for _, seg := range [][2]string{{"kind", kind}, {"namespace", namespace}, {"name", name}} {
		if err := CheckKeySegment(seg[0], seg[1]); err != nil {
			return err
		}
	}
	return nil
}

// decodeResource turns a stored value back into its typed resource. Stored
// values were validated when applied, so this is a plain, lenient JSON
// decode (api.DecodeJSON): a field dropped by a later release must not make
// old data unreadable.
func decodeResource(kind string, data []byte) (api.Resource, error) {
	return api.DecodeJSON(kind, data)
}
