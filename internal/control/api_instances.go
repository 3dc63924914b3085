package control

import (
	"errors"
	"fmt"
	"net/http"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/store"
)

type instanceRef struct {
	ID string `json:"id"`
}

// listInstances answers every registered instance, or one service's with
// ?service=.
func (a *apiHandler) listInstances(w http.ResponseWriter, r *http.Request) {
	all, err := a.reg.List(r.Context())
	if err != nil {
		a.writeErr(w, r, err)
		return
	}
	svc := r.URL.Query().Get("service")
	items := make([]api.Instance, 0, len(all))
	for _, inst := range all {
		if svc == "" || inst.Service == svc {
			items = append(items, inst)
		}
	}
	writeJSON(w, http.StatusOK, list[api.Instance]{Items: items})
}

// deleteInstance force-deregisters an instance; see registry.Delete for
// what happens if its sidecar is still connected.
func (a *apiHandler) deleteInstance(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := a.reg.Delete(r.Context(), id); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusNotFound, fmt.Sprintf("instance %q not found", id))
			return
		}
		a.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, deletedAnswer[instanceRef]{instanceRef{ID: id}})
}

func (a *apiHandler) listServices(w http.ResponseWriter, r *http.Request) {
	services, err := a.services(r)
	if err != nil {
		a.writeErr(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list[api.ServiceSummary]{Items: services})
}

func (a *apiHandler) getService(w http.ResponseWriter, r *http.Request) {
	services, err := a.services(r)
	if err != nil {
		a.writeErr(w, r, err)
		return
	}
	name := r.PathValue("name")
	for _, s := range services {
		if s.Name == name {
			writeJSON(w, http.StatusOK, s)
			return
		}
	}
	writeError(w, http.StatusNotFound, fmt.Sprintf("service %q not found: no instance registered and no route for it", name))
}

func (a *apiHandler) services(r *http.Request) ([]api.ServiceSummary, error) {
	routes, err := a.store.ListRoutes(r.Context())
	if err != nil {
		return nil, err
	}
	instances, err := a.reg.List(r.Context())
	if err != nil {
		return nil, err
	}
	return summarize(routes, instances), nil
}
