package filter

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"trellis.dev/trellis/internal/proxy/mesherr"
	"trellis.dev/trellis/internal/proxy/model"
)

// tagFilter appends its tag to a request header on the way in and to a
// response header on the way out; stop answers instead of passing on.
type tagFilter struct {
	tag  string
	stop bool
}

func (f tagFilter) Serve(r *Request, next Handler) {
	r.HTTP.Header.Add("X-Seen", f.tag)
	if f.stop {
		r.Fail(mesherr.New(mesherr.AccessDenied, "stopped by %s", f.tag))
		return
	}
	r.Response.Header().Add("X-Out", f.tag)
	next.Serve(r)
}

// answer is a terminal filter: it answers 200 with the tags it saw.
type answer struct{}

func (answer) Serve(r *Request, _ Handler) {
	r.Response.WriteHeader(http.StatusOK)
	_, _ = r.Response.Write([]byte(strings.Join(r.HTTP.Header.Values("X-Seen"), ",")))
}

func init() {
	typeURL := func(n string) string { return "type.googleapis.com/test." + n }
	Register(Factory{Name: "test.a", TypeURL: typeURL("a"), New: func(any, Deps) Filter { return tagFilter{tag: "a"} }})
	Register(Factory{Name: "test.b", TypeURL: typeURL("b"), New: func(any, Deps) Filter { return tagFilter{tag: "b"} }})
	Register(Factory{Name: "test.stop", TypeURL: typeURL("stop"), New: func(any, Deps) Filter { return tagFilter{tag: "stop", stop: true} }})
	Register(Factory{Name: "test.answer", TypeURL: typeURL("answer"), Terminal: true, New: func(any, Deps) Filter { return answer{} }})
}

func TestChainRunsFiltersInOrder(t *testing.T) {
	for _, tc := range []struct {
		name     string
		filters  []string
		code     int
		seen     string   // body: the tags the terminal saw
		out      []string // X-Out on the response
		meshCode mesherr.Code
	}{
		{"router alone", []string{"test.answer"}, 200, "", nil, ""},
		{"in order, out in order", []string{"test.a", "test.b", "test.answer"}, 200, "a,b", []string{"a", "b"}, ""},
		{"order is the listener's", []string{"test.b", "test.a", "test.answer"}, 200, "b,a", []string{"b", "a"}, ""},
		{"a filter that answers ends the chain", []string{"test.a", "test.stop", "test.b", "test.answer"}, 403, "", []string{"a"}, mesherr.AccessDenied},
		{"a chain without terminal is answered", []string{"test.a"}, 404, "", []string{"a"}, mesherr.NoRoute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l := &model.Listener{Name: "outbound"}
			for _, n := range tc.filters {
				l.HTTPFilters = append(l.HTTPFilters, model.HTTPFilter{Name: n})
			}
			head, err := Build(l, Deps{})
			if err != nil {
				t.Fatal(err)
			}
			w := httptest.NewRecorder()
			req := &Request{HTTP: httptest.NewRequest("GET", "http://reviews/", nil), Response: Recorder{ResponseWriter: w}}
			head.Serve(req)
			if req.Response.Status() != tc.code || w.Code != tc.code {
				t.Fatalf("status %d (recorded %d), want %d", w.Code, req.Response.Status(), tc.code)
			}
			if tc.code == 200 && w.Body.String() != tc.seen {
				t.Errorf("terminal saw %q, want %q", w.Body.String(), tc.seen)
			}
			if got := w.Header().Values("X-Out"); strings.Join(got, ",") != strings.Join(tc.out, ",") {
				t.Errorf("X-Out %v, want %v", got, tc.out)
			}
			if tc.meshCode != "" && (req.Err == nil || req.Err.Code != tc.meshCode) {
				t.Errorf("Err %v, want code %s", req.Err, tc.meshCode)
			}
		})
	}
}

func TestBuildRefusesUnregistered(t *testing.T) {
	_, err := Build(&model.Listener{Name: "outbound", HTTPFilters: []model.HTTPFilter{{Name: "test.nope"}}}, Deps{})
	if err == nil || !strings.Contains(err.Error(), `"test.nope" is not registered`) {
		t.Fatalf("err %v", err)
	}
}

func TestRegisterRefusesDuplicates(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("registering test.a twice did not panic")
		}
	}()
	Register(Factory{Name: "test.a", TypeURL: "type.googleapis.com/test.a2", New: func(any, Deps) Filter { return answer{} }})
}
