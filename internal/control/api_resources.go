package control

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/store"
)

// MaxApplyBytes is the largest body POST /v1/apply accepts.
const MaxApplyBytes = 1 << 20

type applyAnswer struct {
	Applied []store.ApplyResult `json:"applied"`
}

type resourceRef struct {
	Kind      string `json:"kind"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

type deletedAnswer[T any] struct {
	Deleted T `json:"deleted"`
}

// apply decodes one or more YAML/JSON documents and stores them in one
// transaction: any decode, validation, size or store error stores nothing.
func (a *apiHandler) apply(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxApplyBytes))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			writeError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is over %d bytes; split the apply", MaxApplyBytes))
			return
		}
		writeError(w, http.StatusBadRequest, "reading request body: "+err.Error())
		return
	}
	resources, err := api.Decode(body)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	a.applyMu.Lock()
	defer a.applyMu.Unlock()
	if err := a.sizer.check(r.Context(), resources); err != nil {
		a.writeErr(w, r, err)
		return
	}
	results, err := a.store.Apply(r.Context(), resources)
	if err != nil {
		a.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, applyAnswer{Applied: results})
}

// listResources answers every resource of kind, or of one namespace with
// ?namespace=.
func (a *apiHandler) listResources(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		all, err := a.store.List(r.Context(), kind)
		if err != nil {
			a.writeErr(w, r, err)
			return
		}
		ns := r.URL.Query().Get("namespace")
		items := make([]api.Resource, 0, len(all))
		for _, res := range all {
			if ns == "" || res.Meta().Namespace == ns {
				items = append(items, res)
			}
		}
		writeJSON(w, http.StatusOK, list[api.Resource]{Items: items})
	}
}

func (a *apiHandler) getResource(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ns, name := namespaceOf(r), r.PathValue("name")
		res, err := a.store.Get(r.Context(), kind, ns, name)
		if err != nil {
			a.writeResourceErr(w, r, err, kind, ns, name)
			return
		}
		writeJSON(w, http.StatusOK, res)
	}
}

func (a *apiHandler) deleteResource(kind string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ns, name := namespaceOf(r), r.PathValue("name")
		if err := a.store.Delete(r.Context(), kind, ns, name); err != nil {
			a.writeResourceErr(w, r, err, kind, ns, name)
			return
		}
		writeJSON(w, http.StatusOK, deletedAnswer[resourceRef]{resourceRef{Kind: kind, Namespace: ns, Name: name}})
	}
}

// writeResourceErr words a missing resource the way a user names it:
// route "reviews" not found (in namespace "prod").
func (a *apiHandler) writeResourceErr(w http.ResponseWriter, r *http.Request, err error, kind, ns, name string) {
	if !errors.Is(err, store.ErrNotFound) {
		a.writeErr(w, r, err)
		return
	}
	msg := fmt.Sprintf("%s %q not found", strings.ToLower(kind), name)
	if ns != api.DefaultNamespace {
		msg += fmt.Sprintf(" in namespace %q", ns)
	}
	writeError(w, http.StatusNotFound, msg)
}

func namespaceOf(r *http.Request) string {
	if ns := r.URL.Query().Get("namespace"); ns != "" {
		return ns
	}
	return api.DefaultNamespace
}
