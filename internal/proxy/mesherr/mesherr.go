// Package mesherr holds the errors the mesh itself produces: the typed error
// the data plane passes around inside, and its one mapping to HTTP (and gRPC)
// at the edge. A request the mesh refuses or cannot deliver never gets a bare
// 503: it gets a status, an x-trellis-error header with a stable code, and a
// one-line body that says what happened.
package mesherr

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"trellis.dev/trellis/internal/meshxds"
)

// Code is a stable, machine-readable error code.
type Code string

// Codes from the design brief ("Errors the mesh itself produces"), plus
// UpstreamReset, which the brief's table does not name (see statusOf).
const (
	NoRoute               Code = "no_route"
	NoHealthyUpstream     Code = "no_healthy_upstream"
	UpstreamConnectFailed Code = "upstream_connect_failed"
	UpstreamTimeout       Code = "upstream_timeout"
	Overloaded            Code = "overloaded"
	RateLimited           Code = "rate_limited"
	AccessDenied          Code = "access_denied"
	EgressBlocked         Code = "egress_blocked"
	// UpstreamReset: the connection to the chosen instance failed after the
	// request was (at least partly) sent, so it could not be retried safely.
	UpstreamReset Code = "upstream_reset"
	// HeaderTooLarge: the request head is over the listener's header size
	// or count limit (431, as Envoy answers).
	HeaderTooLarge Code = "header_too_large"
	// AppUnavailable: an inbound sidecar could not connect to its own app.
	// Nothing reached the app, so the calling sidecar may send the request
	// to another instance (see forward).
	AppUnavailable Code = "app_unavailable"
	// MethodNotAllowed: a CONNECT on a listener that takes none (the
	// gateway and the inbound listener are not forward proxies).
	MethodNotAllowed Code = "method_not_allowed"
	// BadRequest: the client's request is malformed — ambiguous or invalid
	// HTTP/1.1 framing (RFC 9112 §6), or a body that turned out malformed
	// while it was being forwarded. Nothing of it is the instance's fault.
	BadRequest Code = "bad_request"
)

// gRPC status codes used below (google.golang.org/grpc/codes), kept as
// numbers so this package does not depend on grpc.
const (
	grpcUnimplemented     = 12
	grpcUnavailable       = 14
	grpcDeadlineExceeded  = 4
	grpcResourceExhausted = 8
	grpcPermissionDenied  = 7
	grpcInternal          = 13
)

// mapping is the edge: each code's HTTP status and gRPC status.
var mapping = map[Code]struct{ http, grpc int }{
	NoRoute:               {http.StatusNotFound, grpcUnimplemented},
	NoHealthyUpstream:     {http.StatusServiceUnavailable, grpcUnavailable},
	UpstreamConnectFailed: {http.StatusServiceUnavailable, grpcUnavailable},
	UpstreamTimeout:       {http.StatusGatewayTimeout, grpcDeadlineExceeded},
	Overloaded:            {http.StatusServiceUnavailable, grpcUnavailable},
	RateLimited:           {http.StatusTooManyRequests, grpcResourceExhausted},
	AccessDenied:          {http.StatusForbidden, grpcPermissionDenied},
	EgressBlocked:         {http.StatusBadGateway, grpcPermissionDenied},
	UpstreamReset:         {http.StatusBadGateway, grpcUnavailable},
	HeaderTooLarge:        {http.StatusRequestHeaderFieldsTooLarge, grpcInternal},
	AppUnavailable:        {http.StatusServiceUnavailable, grpcUnavailable},
	MethodNotAllowed:      {http.StatusMethodNotAllowed, grpcUnimplemented},
	BadRequest:            {http.StatusBadRequest, grpcInternal},
}

// HTTPStatus is the HTTP status a response with this code carries.
func (c Code) HTTPStatus() int {
	if m, ok := mapping[c]; ok {
		return m.http
	}
	return http.StatusInternalServerError
}

// GRPCStatus is the grpc-status a gRPC response with this code carries.
func (c Code) GRPCStatus() int {
	if m, ok := mapping[c]; ok {
		return m.grpc
	}
	return grpcInternal
}

// Error is a mesh error: a code and what happened, in words.
type Error struct {
	Code Code
	Msg  string // one line, no code prefix
	Err  error  // cause, if any (not shown to clients)
}

// New returns a mesh error with a formatted message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// Wrap is New with a cause kept for logs and errors.Is.
func Wrap(cause error, code Code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...), Err: cause}
}

func (e *Error) Error() string { return string(e.Code) + ": " + e.Msg }
func (e *Error) Unwrap() error { return e.Err }

// Dest names a destination in messages: `service "reviews" version "v1"`,
// or `service "reviews"` when the version is empty.
func Dest(service, version string) string {
	if version == "" {
		return fmt.Sprintf("service %q", service)
	}
	return fmt.Sprintf("service %q version %q", service, version)
}

// As returns the mesh error in err's chain.
func As(err error) (*Error, bool) {
	var e *Error
	ok := errors.As(err, &e)
	return e, ok
}

// Write sends e as the response to r. gRPC requests get a trailers-only
// response (no body: a gRPC client would try to parse one as a message)
// with grpc-status and grpc-message, so a gRPC client sees a real status
// and not "unexpected HTTP status"; the HTTP status stays the table's.
func Write(w http.ResponseWriter, r *http.Request, e *Error) {
	h := w.Header()
	h.Set(meshxds.HeaderError, string(e.Code))
	if IsGRPC(r) {
		h.Set("Content-Type", "application/grpc")
		h.Set("Grpc-Status", strconv.Itoa(e.Code.GRPCStatus()))
		h.Set("Grpc-Message", encodeGRPCMessage(e.Error()))
		w.WriteHeader(e.Code.HTTPStatus())
		return
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(e.Code.HTTPStatus())
	// One line; a message never holds a newline, but make sure.
	_, _ = w.Write([]byte(strings.ReplaceAll(e.Error(), "\n", " ") + "\n"))
}

// IsGRPC reports whether r is a gRPC request (content-type application/grpc
// or application/grpc+proto, …).
func IsGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "application/grpc") &&
		(len(ct) == len("application/grpc") || ct[len("application/grpc")] == '+' || ct[len("application/grpc")] == ';')
}

// encodeGRPCMessage percent-encodes a grpc-message value as the gRPC HTTP/2
// spec asks: bytes outside printable ASCII, and '%' itself.
func encodeGRPCMessage(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= ' ' && c <= '~' && c != '%' {
			b.WriteByte(c)
			continue
		}
		fmt.Fprintf(&b, "%%%02X", c)
	}
	return b.String()
}
