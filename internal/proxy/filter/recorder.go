package filter

import "net/http"

// Recorder remembers the status code of a response, for the metrics and
// the filters that look at the answer, and runs the filters' OnHeader
// hooks just before the header goes out. It unwraps
// (http.ResponseController), so flushing, trailers and hijacking still
// reach the real ResponseWriter.
type Recorder struct {
	http.ResponseWriter
	code  int
	hooks []func(status int, h http.Header)
}

// OnHeader has f called once, just before the response's header is
// written: the status is known and the header can still change (Envoy's
// encodeHeaders). Hooks run in the reverse order of registration, so the
// filter nearest the router sees the answer first, as in Envoy.
func (r *Recorder) OnHeader(f func(status int, h http.Header)) {
	r.hooks = append(r.hooks, f)
}

// final runs the hooks for a final status and records it.
func (r *Recorder) final(code int) {
	r.code = code
	for i := len(r.hooks) - 1; i >= 0; i-- {
		r.hooks[i](code, r.ResponseWriter.Header())
	}
	r.hooks = nil
}

func (r *Recorder) WriteHeader(code int) {
	if r.code == 0 && code >= 200 { // 1xx are interim, not the status
		r.final(code)
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *Recorder) Write(b []byte) (int, error) {
	if r.code == 0 {
		r.final(http.StatusOK)
	}
	return r.ResponseWriter.Write(b)
}

// Flush keeps Recorder an http.Flusher for code that asserts the interface.
func (r *Recorder) Flush() {
	if r.code == 0 {
		r.final(http.StatusOK)
	}
	_ = http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *Recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Status is the response's status; a handler that wrote nothing sent 200.
func (r *Recorder) Status() int {
	if r.code == 0 {
		return http.StatusOK
	}
	return r.code
}
