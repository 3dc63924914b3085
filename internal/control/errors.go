package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"trellis.dev/trellis/internal/store"
)

// Typed errors from the store and registry become HTTP statuses here, at
// the edge, and nowhere else.
func statusOf(err error) int {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, store.ErrInvalid), errors.As(err, new(*refusedError)):
		return http.StatusBadRequest
	case errors.Is(err, store.ErrConflict):
		return http.StatusConflict
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

// refusedError is a request this package refuses as written (400), its
// message the whole answer.
type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

func refused(format string, args ...any) error { return &refusedError{fmt.Sprintf(format, args...)} }

// errorBody is every error answer: {"error": "..."}.
type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v) // the client went away if this fails; nothing to do
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, errorBody{Error: msg})
}

// writeErr answers with err's status. Server-side failures are logged:
// they are ours to fix, the client's mistakes are not.
func (a *apiHandler) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	status := statusOf(err)
	if status >= 500 {
		a.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	writeError(w, status, err.Error())
}

// answerUnmatched answers a request no pattern of mux matches, with the
// handler mux chose for it (h): its plain-text 404 and 405 become JSON
// errors, keeping the Allow header of a 405.
func answerUnmatched(w http.ResponseWriter, r *http.Request, mux *http.ServeMux, h http.Handler) {
	rec := &statusRecorder{header: http.Header{}}
	h.ServeHTTP(rec, r)
	if rec.status != http.StatusNotFound && rec.status != http.StatusMethodNotAllowed {
		mux.ServeHTTP(w, r) // a redirect to the clean path, say: let the mux answer
		return
	}
	if allow := rec.header.Get("Allow"); allow != "" {
		w.Header().Set("Allow", allow)
	}
	msg := "no such API endpoint: " + r.Method + " " + r.URL.Path
	if rec.status == http.StatusMethodNotAllowed {
		msg = "method " + r.Method + " not allowed on " + r.URL.Path
	}
	writeError(w, rec.status, msg)
}

// statusRecorder captures the status a handler writes, discarding the body.
type statusRecorder struct {
	header http.Header
	status int
}

func (s *statusRecorder) Header() http.Header { return s.header }
func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return len(b), nil
}
func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
}
