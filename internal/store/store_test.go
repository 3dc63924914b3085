package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"trellis.dev/trellis/internal/api"
)

func TestApplyGetListDelete(t *testing.T) {
	s := sharedStore(t)
	ctx := t.Context()

	apply := func(r api.Resource, wantResult string, wantGen int64) {
		t.Helper()
		res, err := s.Apply(ctx, []api.Resource{r})
		if err != nil {
			t.Fatalf("apply %s: %v", key(r), err)
		}
		want := ApplyResult{Kind: api.KindRoute, Namespace: r.Meta().Namespace, Name: r.Meta().Name,
			Generation: wantGen, Result: wantResult}
		if len(res) != 1 || res[0] != want {
			t.Fatalf("apply %s = %+v, want %+v", key(r), res, want)
		}
	}
	apply(route("", "reviews", "reviews", map[string]int{"v1": 100}), Created, 1)
	apply(route("default", "reviews", "reviews", map[string]int{"v1": 100}), Unchanged, 1)
	apply(route("", "reviews", "reviews", map[string]int{"v1": 80, "v2": 20}), Updated, 2)
	apply(route("", "reviews", "reviews", map[string]int{"v1": 80, "v2": 20}), Unchanged, 2)
	apply(route("prod", "reviews", "reviews", map[string]int{"v2": 100}), Created, 1)
	apply(route("", "ratings", "ratings", map[string]int{"v1": 100}), Created, 1)

	got, err := s.Get(ctx, api.KindRoute, "default", "reviews")
	if err != nil {
		t.Fatal(err)
	}
	rt := got.(*api.Route)
	if rt.Metadata.Generation != 2 || len(rt.Spec.Rules) != 2 || *rt.Spec.Rules[1].Weight != 20 {
		t.Errorf("get = %+v, want generation 2 and the v1 80 / v2 20 split", rt)
	}

	list, err := s.List(ctx, api.KindRoute)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range list {
		names = append(names, r.Meta().Namespace+"/"+r.Meta().Name)
	}
	if want := []string{"default/ratings", "default/reviews", "prod/reviews"}; !slices.Equal(names, want) {
		t.Errorf("list = %v, want %v", names, want)
	}
	routes, err := s.ListRoutes(ctx)
	if err != nil || len(routes) != 3 || routes[2].Spec.Service != "reviews" {
		t.Errorf("ListRoutes = %+v, %v", routes, err)
	}

	if err := s.Delete(ctx, api.KindRoute, "prod", "reviews"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, api.KindRoute, "prod", "reviews"); !errors.Is(err, ErrNotFound) {
		t.Errorf("get after delete: err = %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, api.KindRoute, "prod", "reviews"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: err = %v, want ErrNotFound", err)
	}
	// Re-creating a deleted resource starts its generation over.
	apply(route("prod", "reviews", "reviews", map[string]int{"v2": 100}), Created, 1)
}

func TestApplyIsAllOrNothing(t *testing.T) {
	s := sharedStore(t)
	ctx := t.Context()
	if _, err := s.Apply(ctx, []api.Resource{route("", "keep", "keep", map[string]int{"v1": 100})}); err != nil {
		t.Fatal(err)
	}

	bad := route("", "bad", "bad", map[string]int{"v1": 60, "v2": 30}) // weights sum to 90
	cases := map[string][]api.Resource{
		"invalid resource last": {
			route("", "keep", "keep", map[string]int{"v2": 100}), // would update
			route("", "new", "new", map[string]int{"v1": 100}),   // would create
			bad,
		},
		"duplicate": {
			route("", "new", "new", map[string]int{"v1": 100}),
			route("default", "new", "new", map[string]int{"v2": 100}),
		},
		"bad name": {route("", "a/b", "new", map[string]int{"v1": 100})},
	}
	for name, rs := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := s.Apply(ctx, rs); !errors.Is(err, ErrInvalid) {
				t.Fatalf("apply: err = %v, want ErrInvalid", err)
			}
			list, _ := s.List(ctx, api.KindRoute)
			if len(list) != 1 || list[0].Meta().Name != "keep" || list[0].Meta().Generation != 1 {
				t.Fatalf("after a failed apply the store holds %d routes (first %+v), want only keep at generation 1", len(list), list[0].Meta())
			}
		})
	}

	tooMany := make([]api.Resource, MaxApply+1)
	for i := range tooMany {
		tooMany[i] = route("", fmt.Sprintf("r%d", i), "svc", map[string]int{"v1": 100})
	}
	if _, err := s.Apply(ctx, tooMany); !errors.Is(err, ErrInvalid) {
		t.Errorf("apply of %d resources: err = %v, want ErrInvalid", len(tooMany), err)
	}
}

// Several documents decoded together are applied in one transaction.
func TestApplyDecodedDocuments(t *testing.T) {
	s := sharedStore(t)
	rs := mustDecode(t, `
apiVersion: trellis.dev/v1alpha1
kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  rules:
  - version: v3
    matches:
    - headers: {gray: {exact: "1"}}
  - {version: v1, weight: 80}
  - {version: v2, weight: 20}
---
{"apiVersion": "trellis.dev/v1alpha1", "kind": "Route", "metadata": {"name": "ratings", "namespace": "shop"},
 "spec": {"service": "ratings", "rules": [{"version": "v1", "weight": 100}]}}
`)
	res, err := s.Apply(t.Context(), rs)
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || res[0].Result != Created || res[1].Namespace != "shop" {
		t.Fatalf("results = %+v", res)
	}
	got, err := s.Get(t.Context(), api.KindRoute, "default", "reviews")
	if err != nil {
		t.Fatal(err)
	}
	if m := got.(*api.Route).Spec.Rules[0].Matches[0].Headers["gray"]; m.Exact != "1" {
		t.Errorf("stored match lost: %+v", got)
	}
}

// Concurrent applies to one resource must each see the previous generation:
// the compare-and-swap retries instead of losing an increment.
func TestApplyConcurrentGenerations(t *testing.T) {
	s := sharedStore(t)
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for i := range writers {
		wg.Go(func() {
			r := route("", "hot", "hot", map[string]int{"v1": 100 - i, "v2": i})
			if _, err := s.Apply(t.Context(), []api.Resource{r}); err != nil && !errors.Is(err, ErrConflict) {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := s.Get(t.Context(), api.KindRoute, "default", "hot")
	if err != nil {
		t.Fatal(err)
	}
	// Each spec differs from every other, so every successful apply bumped
	// the generation by one. (A writer that gave up with ErrConflict did not.)
	if g := got.Meta().Generation; g < 2 || g > writers {
		t.Errorf("generation = %d after %d distinct applies", g, writers)
	}
	resp, _ := s.Client().Get(t.Context(), ResourceKey(api.KindRoute, "default", "hot"))
	if v := resp.Kvs[0].Version; v != got.Meta().Generation {
		t.Errorf("etcd version %d != generation %d: an increment was lost", v, got.Meta().Generation)
	}
}

func TestWatchSignals(t *testing.T) {
	s := sharedStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	ch := s.Watch(ctx)

	waitSignal(t, ch, "watch established")
	if _, err := s.Apply(ctx, []api.Resource{route("", "w", "w", map[string]int{"v1": 100})}); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, ch, "apply")
	if _, err := s.Client().Put(ctx, InstanceKey("w", "w-1"), `{}`); err != nil {
		t.Fatal(err)
	}
	waitSignal(t, ch, "instance put")
	// An unchanged apply writes nothing, so it must not wake the control plane.
	if _, err := s.Apply(ctx, []api.Resource{route("", "w", "w", map[string]int{"v1": 100})}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ch:
		t.Error("signal after an unchanged apply")
	case <-time.After(200 * time.Millisecond):
	}
	// Keys outside /trellis/ are not ours.
	s.Client().Put(ctx, "/other/x", "1")
	select {
	case <-ch:
		t.Error("signal for a key outside /trellis/")
	case <-time.After(200 * time.Millisecond):
	}
	s.Client().Delete(ctx, "/other/x")

	cancel()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("watch channel not closed after ctx was cancelled")
		}
	}
}

func waitSignal(t *testing.T, ch <-chan struct{}, after string) {
	t.Helper()
	select {
	case _, ok := <-ch:
		if !ok {
			t.Fatalf("watch channel closed, waiting for a signal after %s", after)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no watch signal after %s", after)
	}
}

func TestGetBadArguments(t *testing.T) {
	s := sharedStore(t)
	if _, err := s.Get(t.Context(), api.KindRoute, "", "x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("empty namespace: err = %v", err)
	}
	if _, err := s.List(t.Context(), "Route/x"); !errors.Is(err, ErrInvalid) {
		t.Errorf("kind with '/': err = %v", err)
	}
	// A value that no longer decodes is skipped by List, not fatal to it.
	s.Client().Put(t.Context(), ResourceKey(api.KindRoute, "default", "broken"), "{not json")
	s.Apply(t.Context(), []api.Resource{route("", "ok", "ok", map[string]int{"v1": 100})})
	list, err := s.List(t.Context(), api.KindRoute)
	if err != nil || len(list) != 1 || list[0].Meta().Name != "ok" {
		t.Errorf("list with a broken value = %v, %v", list, err)
	}
}
