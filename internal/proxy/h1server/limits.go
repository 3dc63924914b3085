package h1server

import (
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/mesherr"
)

// Header limits, as Envoy's defaults (max_request_headers_kb 60,
// max_headers_count 100).
const (
	// DefaultMaxHeaderBytes bounds a request head: the request line, the
	// header fields and the empty line, line ends included.
	DefaultMaxHeaderBytes = 60 << 10
	// DefaultMaxHeaders bounds the number of header fields of a request,
	// Host included.
	DefaultMaxHeaders = 100
)

// HeadTooLarge is the refusal of a head over maxBytes.
func HeadTooLarge(maxBytes int) *mesherr.Error {
	return mesherr.New(mesherr.HeaderTooLarge, "request head larger than %d bytes", maxBytes)
}

// TooManyHeaders is the refusal of a head with more than maxFields fields.
func TooManyHeaders(maxFields int) *mesherr.Error {
	return mesherr.New(mesherr.HeaderTooLarge, "request with more than %d header fields", maxFields)
}

// LimitHeaders refuses, with 431 and x-trellis-error: header_too_large, a
// request whose head (as headSize counts it) is over maxBytes or that has
// more than maxFields header fields, and serves the others with h. An
// HTTP/1 connection is closed after the refusal; an HTTP/2 one goes on
// (only the stream is answered). refused, when not nil, is called for each
// refusal.
//
// It is how the requests that net/http reads (connections handed off, h2c,
// CONNECT tunnels) get the same limits as the fast path: net/http has no
// limit on the number of fields, and its own limit on the size
// (MaxHeaderBytes) answers a 431 of its own; set it above maxBytes as a
// backstop (Server does, at twice maxBytes).
func LimitHeaders(h http.Handler, maxBytes, maxFields int, refused func()) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if e := checkHeaders(r, maxBytes, maxFields); e != nil {
			if refused != nil {
				refused()
			}
			if r.ProtoMajor == 1 {
				w.Header().Set("Connection", "close")
			}
			mesherr.Write(w, r, e)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// checkHeaders returns the refusal of r's head, nil when it is within the
// limits.
func checkHeaders(r *http.Request, maxBytes, maxFields int) *mesherr.Error {
	fields, size := 0, headSize(r)
	if r.Host != "" {
		fields++
	}
	for k, vs := range r.Header {
		fields += len(vs)
		for _, v := range vs {
			size += len(k) + len(": ") + len(v) + len("\r\n")
		}
		if fields > maxFields {
			return TooManyHeaders(maxFields)
		}
		if size > maxBytes {
			return HeadTooLarge(maxBytes)
		}
	}
	if fields > maxFields {
		return TooManyHeaders(maxFields)
	}
	if size > maxBytes {
		return HeadTooLarge(maxBytes)
	}
	return nil
}

// headSize is the size of r's request line, Host field and final empty
// line as an HTTP/1.1 client would send them, its other fields left out.
// For a request sent in that form it is what the fast path counts; for
// HTTP/2 it is close to HPACK's uncompressed size without the 32 bytes per
// field.
func headSize(r *http.Request) int {
	n := len(r.Method) + 1 + len(r.RequestURI) + 1 + len(r.Proto) + len("\r\n") + len("\r\n")
	if r.Host != "" {
		n += len("Host: ") + len(r.Host) + len("\r\n")
	}
	return n
}

// ErrorResponse is e as a whole HTTP/1.1 response that closes the
// connection, for answers written on a connection before (or without) any
// http.ResponseWriter: what mesherr.Write sends, with a Content-Length and
// Connection: close.
func ErrorResponse(e *mesherr.Error) []byte {
	body := strings.ReplaceAll(e.Error(), "\n", " ") + "\n"
	status := e.Code.HTTPStatus()
	var b strings.Builder
	b.WriteString("HTTP/1.1 " + strconv.Itoa(status) + " " + http.StatusText(status) + "\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("X-Content-Type-Options: nosniff\r\n")
	b.WriteString(http.CanonicalHeaderKey(meshxds.HeaderError) + ": " + string(e.Code) + "\r\n")
	b.WriteString("Content-Length: " + strconv.Itoa(len(body)) + "\r\n")
	b.WriteString("Connection: close\r\n")
	b.WriteString("Date: " + time.Now().UTC().Format(http.TimeFormat) + "\r\n\r\n")
	b.WriteString(body)
	return []byte(b.String())
}

// How Refuse waits for the client after its answer.
const (
	refuseWriteTimeout = time.Second
	lingerTimeout      = 500 * time.Millisecond
	lingerMax          = 256 << 10
)

// Refuse writes e on nc as a whole response, half-closes nc and reads
// what the client still sends (at most 256 KiB, at most half a second)
// before returning; the caller closes nc. Closing at once would reset the
// connection while the rest of the request is unread, and a reset can
// destroy the answer before the client reads it (net/http waits the same
// way after its own early answers). It blocks for up to 1.5 s.
func Refuse(nc net.Conn, e *mesherr.Error) {
	nc.SetWriteDeadline(time.Now().Add(refuseWriteTimeout))
	if _, err := nc.Write(ErrorResponse(e)); err != nil {
		return
	}
	if cw, ok := nc.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	}
	nc.SetReadDeadline(time.Now().Add(lingerTimeout))
	io.CopyN(io.Discard, nc, lingerMax)
}

// netHTTP431 is the whole answer net/http writes, in one Write, when a
// head is over its MaxHeaderBytes (net/http/server.go, conn.serve).
// handedConn replaces it with ours; TestFallbackHeaderTooLarge notices if
// net/http changes it.
const netHTTP431 = "HTTP/1.1 431 Request Header Fields Too Large\r\n" +
	"Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n" +
	"431 Request Header Fields Too Large"

// net/http's own plain answers to requests it cannot read (server.go,
// conn.serve): "HTTP/1.1 400 Bad Request[: reason]", errorHeaders, the
// status again as the body; or a 501 to an unsupported transfer coding.
// handedConn replaces them with ours; TestHandOff notices if net/http
// changes them.
const (
	netHTTPErrorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
	netHTTP400          = "400 Bad Request"
	netHTTP501          = "HTTP/1.1 501 Not Implemented" + netHTTPErrorHeaders + "Unsupported transfer encoding"
)

// netHTTPError reports whether p is one of net/http's plain 400 or 501
// answers, and its reason.
func netHTTPError(p []byte) (string, bool) {
	s := string(p) // no allocation for the comparisons
	const line = "HTTP/1.1 " + netHTTP400
	if len(s) < len(line) || s[:len(line)] != line {
		if s == netHTTP501 {
			return "unsupported transfer encoding", true
		}
		return "", false
	}
	i := strings.Index(s, netHTTPErrorHeaders)
	if i < 0 || s[i+len(netHTTPErrorHeaders):] != s[len("HTTP/1.1 "):i] {
		return "", false
	}
	if r, ok := strings.CutPrefix(s[len(line):i], ": "); ok && r != "" {
		return r, true
	}
	return "refused by the HTTP/1.1 parser", true
}
