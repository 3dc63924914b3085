package store

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"

	clientv3 "go.etcd.io/etcd/client/v3"

	"trellis.dev/trellis/internal/api"
)

// Apply results.
const (
	Created   = "created"
	Updated   = "updated"
	Unchanged = "unchanged"
)

// ApplyResult says what Apply did with one resource.
type ApplyResult struct {
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Name       string `json:"name"`
	Generation int64  `json:"generation"`
	Result     string `json:"result"` // Created, Updated or Unchanged
}

// MaxApply is the most resources one Apply takes: etcd's default
// --max-txn-ops, so an external cluster with default settings accepts every
// apply the embedded one does.
const MaxApply = 128

// applyAttempts bounds retries when another writer changes one of the keys
// between our read and our write.
const applyAttempts = 5

// Apply stores resources all-or-nothing in one etcd transaction.
//
// Each resource's metadata.generation is set: 1 when created, previous+1
// when its content changed, unchanged otherwise (then nothing is written for
// it, so an idempotent re-apply does not wake up watchers). An empty
// namespace becomes api.DefaultNamespace. Both are set on the resources
// passed in.
func (s *Store) Apply(ctx context.Context, rs []api.Resource) ([]ApplyResult, error) {
	if len(rs) > MaxApply {
		return nil, fmt.Errorf("%w: %d resources in one apply, at most %d", ErrInvalid, len(rs), MaxApply)
	}
	keys := make([]string, len(rs))
	seen := make(map[string]bool, len(rs))
	for i, r := range rs {
		m := r.Meta()
		if m.Namespace == "" {
			m.Namespace = api.DefaultNamespace
		}
		if err := checkRef(r.GetKind(), m.Namespace, m.Name); err != nil {
			return nil, err
		}
		if err := api.Validate(r); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
		}
		keys[i] = ResourceKey(r.GetKind(), m.Namespace, m.Name)
		if seen[keys[i]] {
			return nil, fmt.Errorf("%w: %s %s/%s appears more than once", ErrInvalid, r.GetKind(), m.Namespace, m.Name)
		}
		seen[keys[i]] = true
	}
	if len(rs) == 0 {
		return []ApplyResult{}, nil
	}

	for range applyAttempts {
		results, ok, err := s.tryApply(ctx, rs, keys)
		if err != nil || ok {
			return results, err
		}
	}
	return nil, fmt.Errorf("%w: resources kept changing during apply, try again", ErrConflict)
}

// tryApply reads the current values, decides each result, and commits only
// if none of the keys changed since the read (ok=false: try again).
func (s *Store) tryApply(ctx context.Context, rs []api.Resource, keys []string) ([]ApplyResult, bool, error) {
	gets := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		gets[i] = clientv3.OpGet(k)
	}
	read, err := s.cli.Txn(ctx).Then(gets...).Commit()
	if err != nil {
		return nil, false, fmt.Errorf("store: apply: reading current values: %w", err)
	}

	var (
		conds   = make([]clientv3.Cmp, 0, len(rs))
		puts    = make([]clientv3.Op, 0, len(rs))
		results = make([]ApplyResult, len(rs))
	)
	for i, r := range rs {
		m := r.Meta()
		m.Generation = 0
		next, err := json.Marshal(r)
		if err != nil {
			return nil, false, fmt.Errorf("store: apply: encoding %s %s/%s: %w", r.GetKind(), m.Namespace, m.Name, err)
		}
		res := ApplyResult{Kind: r.GetKind(), Namespace: m.Namespace, Name: m.Name}

		kvs := read.Responses[i].GetResponseRange().Kvs
		if len(kvs) == 0 {
			conds = append(conds, clientv3.Compare(clientv3.CreateRevision(keys[i]), "=", 0))
			res.Result, res.Generation = Created, 1
		} else {
			conds = append(conds, clientv3.Compare(clientv3.ModRevision(keys[i]), "=", kvs[0].ModRevision))
			prevGen, same, err := compareStored(kvs[0].Value, next)
			if err != nil {
				return nil, false, fmt.Errorf("store: apply: decoding stored %s: %w", keys[i], err)
			}
			if same {
				res.Result, res.Generation = Unchanged, prevGen
			} else {
				res.Result, res.Generation = Updated, prevGen+1
			}
		}
		m.Generation = res.Generation
		results[i] = res
		if res.Result == Unchanged {
			continue
		}
		val, err := json.Marshal(r)
		if err != nil {
			return nil, false, err
		}
		puts = append(puts, clientv3.OpPut(keys[i], string(val)))
	}

	if len(puts) == 0 {
		return results, true, nil // nothing to write; a read is as good as a commit
	}
	resp, err := s.cli.Txn(ctx).If(conds...).Then(puts...).Commit()
	if err != nil {
		return nil, false, fmt.Errorf("store: apply: %w", err)
	}
	if !resp.Succeeded {
		return nil, false, nil
	}
	for _, res := range results {
		s.log.Info("applied", "kind", res.Kind, "namespace", res.Namespace, "name", res.Name,
			"generation", res.Generation, "result", res.Result)
	}
	return results, true, nil
}

// compareStored says whether the stored value equals next (a resource
// encoded with generation 0) apart from metadata.generation, and returns the
// stored generation. The comparison is on decoded JSON, so it is
// independent of field order and of which release wrote the value.
func compareStored(stored, next []byte) (gen int64, same bool, err error) {
	var old, cur map[string]any
	if err := json.Unmarshal(stored, &old); err != nil {
		return 0, false, err
	}
	if err := json.Unmarshal(next, &cur); err != nil {
		return 0, false, err
	}
	if md, ok := old["metadata"].(map[string]any); ok {
		if g, ok := md["generation"].(float64); ok {
			gen = int64(g)
		}
		delete(md, "generation")
	}
	if md, ok := cur["metadata"].(map[string]any); ok {
		delete(md, "generation")
	}
	return gen, reflect.DeepEqual(old, cur), nil
}
