package mesherr

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestMapping(t *testing.T) {
	tests := []struct {
		code       Code
		http, grpc int
	}{
		{NoRoute, 404, 12},
		{NoHealthyUpstream, 503, 14},
		{UpstreamConnectFailed, 503, 14},
		{UpstreamTimeout, 504, 4},
		{Overloaded, 503, 14},
		{RateLimited, 429, 8},
		{AccessDenied, 403, 7},
		{EgressBlocked, 502, 7},
		{UpstreamReset, 502, 14},
		{BadRequest, 400, 13},
		{"unknown", 500, 13},
	}
	for _, tt := range tests {
		if h, g := tt.code.HTTPStatus(), tt.code.GRPCStatus(); h != tt.http || g != tt.grpc {
			t.Errorf("%s: HTTP %d gRPC %d, want %d %d", tt.code, h, g, tt.http, tt.grpc)
		}
	}
}

func TestWrite(t *testing.T) {
	e := New(NoHealthyUpstream, "service %q version %q has no healthy instance", "reviews", "v2")
	tests := []struct {
		name        string
		contentType string
		wantHeaders map[string]string
		wantBody    string
	}{
		{"http", "", map[string]string{"X-Trellis-Error": "no_healthy_upstream", "Content-Type": "text/plain; charset=utf-8"},
			"no_healthy_upstream: service \"reviews\" version \"v2\" has no healthy instance\n"},
		{"grpc", "application/grpc+proto", map[string]string{"X-Trellis-Error": "no_healthy_upstream",
			"Content-Type": "application/grpc", "Grpc-Status": "14",
			"Grpc-Message": "no_healthy_upstream: service \"reviews\" version \"v2\" has no healthy instance"}, ""},
		{"grpc-web is not grpc", "application/grpc-web", map[string]string{"Grpc-Status": ""},
			"no_healthy_upstream: service \"reviews\" version \"v2\" has no healthy instance\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/", nil)
			if tt.contentType != "" {
				r.Header.Set("Content-Type", tt.contentType)
			}
			w := httptest.NewRecorder()
			Write(w, r, e)
			if w.Code != http.StatusServiceUnavailable || w.Body.String() != tt.wantBody {
				t.Fatalf("got %d %q, want 503 %q", w.Code, w.Body.String(), tt.wantBody)
			}
			for k, v := range tt.wantHeaders {
				if got := w.Header().Get(k); got != v {
					t.Errorf("%s = %q, want %q", k, got, v)
				}
			}
		})
	}
}

func TestEncodeGRPCMessage(t *testing.T) {
	for in, want := range map[string]string{
		"plain text: ok": "plain text: ok",
		"100% sure":      "100%25 sure",
		"naïve\n":        "na%C3%AFve%0A",
	} {
		if got := encodeGRPCMessage(in); got != want {
			t.Errorf("encodeGRPCMessage(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAs(t *testing.T) {
	cause := errors.New("connection refused")
	err := fmt.Errorf("forwarding: %w", Wrap(cause, UpstreamConnectFailed, "connect failed"))
	e, ok := As(err)
	if !ok || e.Code != UpstreamConnectFailed || !errors.Is(err, cause) {
		t.Fatalf("As(%v) = %v %v", err, e, ok)
	}
	if e.Error() != "upstream_connect_failed: connect failed" {
		t.Fatalf("Error() = %q", e.Error())
	}
}
