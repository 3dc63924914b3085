package registry

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	clientv3 "go.etcd.io/etcd/client/v3"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/store"
)

// List returns every registered instance, whichever control plane holds
// it, ordered by service, then ID.
func (r *Registry) List(ctx context.Context) ([]api.Instance, error) {
	resp, err := r.cli.Get(ctx, store.InstancesPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("registry: list: %w", err)
	}
	out := make([]api.Instance, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		var inst api.Instance
		if err := json.Unmarshal(kv.Value, &inst); err != nil {
			r.log.Error("skipping stored instance that does not decode", "key", string(kv.Key), "err", err)
			continue
		}
		out = append(out, inst)
	}
	slices.SortFunc(out, func(a, b api.Instance) int {
		return cmp.Or(cmp.Compare(a.Service, b.Service), cmp.Compare(a.ID, b.ID))
	})
	return out, nil
}

// Delete force-deregisters an instance by ID (an error wrapping
// store.ErrNotFound if there is none). The instance leaves the mesh at once.
//
// If this process holds it, it stops holding it (its deregister becomes a
// no-op). If another control plane holds it, that one still counts it as
// held, but the key stays gone until its sidecar reconnects (or that control
// plane has to write every instance again after losing its lease) — a live
// sidecar that reconnects is, after all, a live instance.
func (r *Registry) Delete(ctx context.Context, id string) error {
	if err := store.CheckKeySegment("instance id", id); err != nil {
		return err
	}
	// IDs are unique across services in practice, but the key is
	// service/id, so look for the ID under every service.
	resp, err := r.cli.Get(ctx, store.InstancesPrefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return fmt.Errorf("registry: delete %s: %w", id, err)
	}
	var ops []clientv3.Op
	for _, kv := range resp.Kvs {
		if strings.HasSuffix(string(kv.Key), "/"+id) {
			ops = append(ops, clientv3.OpDelete(string(kv.Key)))
		}
	}

	r.mu.Lock()
	reg := r.held[id]
	r.mu.Unlock()
	if reg != nil {
		r.deregister(reg)
	}
	if len(ops) == 0 {
		if reg != nil {
			return nil
		}
		return fmt.Errorf("instance %q: %w", id, store.ErrNotFound)
	}
	if _, err := r.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
		return fmt.Errorf("registry: delete %s: %w", id, err)
	}
	r.log.Info("instance force-deregistered", "id", id)
	return nil
}
