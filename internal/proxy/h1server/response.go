package h1server

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"trellis.dev/trellis/internal/proxy/sockio"
)

// bufferBeforeChunking is how much of a body without a Content-Length is
// held back, so that a short answer (an error page) goes out with a length
// instead of chunked; net/http does the same with the same size.
const bufferBeforeChunking = 2048

// framing is how a response's body is delimited on the wire.
type framing int

const (
	undecided framing = iota // head held back, body buffered in small (for HEAD, counted)
	noBody                   // HEAD, 1xx, 204, 304
	fixed                    // Content-Length
	chunked                  // Transfer-Encoding: chunked
)

// response is the http.ResponseWriter of one request. Its fields are reset
// between requests of a connection; nothing of it outlives the handler.
type response struct {
	c   *conn
	req *http.Request
	hdr http.Header

	status      int
	wroteHeader bool
	head        bool // a HEAD request: body writes are counted, not sent
	framing     framing
	length      int64 // Content-Length when fixed
	written     int64 // body bytes written
	small       []byte
	// fields are the handler's header fields as they were at WriteHeader,
	// ready to write: as with net/http, changing the header map after
	// WriteHeader changes nothing but trailers, even while the head is
	// held back.
	fields      []byte
	hasDate     bool     // the handler set Date (or asked for none)
	hasTrailers bool     // the handler announced trailers at WriteHeader
	trailers    []string // names announced in Trailer at WriteHeader
	closeAfter  bool     // answer with Connection: close and close the connection
	failed      error    // a write to the client failed
}

var errBodyNotAllowed = http.ErrBodyNotAllowed

func (w *response) Header() http.Header { return w.hdr }

// WriteHeader writes an informational response at once, or records the
// final status and header; the final head goes out with the first Flush,
// with the body when it has a Content-Length, or when the body or the
// handler's return decides its framing.
func (w *response) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		// The fields set so far go with it, and stay (RFC 8297).
		w.fields = w.appendFields(w.fields[:0], code)
		w.writeStatusLine(code)
		w.c.bw.Write(w.fields)
		w.c.bw.WriteString("\r\n")
		w.flush()
		return
	}
	w.wroteHeader = true
	w.status = code
	w.head = w.req.Method == http.MethodHead
	if hasCloseToken(w.hdr["Connection"]) {
		w.closeAfter = true // as net/http: the handler asks to close
	}
	w.length = -1
	if v, ok := w.hdr["Content-Length"]; ok {
		if n, ok := parseResponseLength(v); ok {
			w.length = n
		} else {
			delete(w.hdr, "Content-Length") // as net/http: an invalid one is dropped
		}
	}
	_, w.hasDate = w.hdr["Date"]
	for _, v := range w.hdr["Trailer"] {
		w.hasTrailers = true
		for t := range strings.SplitSeq(v, ",") {
			if t = strings.TrimSpace(t); t != "" {
				w.trailers = append(w.trailers, http.CanonicalHeaderKey(t))
			}
		}
	}
	w.fields = w.appendFields(w.fields[:0], code) // sets hasTrailers for prefixed keys
	switch {
	case !bodyAllowedForStatus(code):
		w.framing = noBody
	case w.length >= 0:
		w.framing = fixed
	default:
		w.framing = undecided
		return
	}
	w.commit(-1)
}

// bodyAllowedForStatus: 1xx, 204 and 304 answers have no body.
func bodyAllowedForStatus(code int) bool {
	return code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified
}

// parseResponseLength reads the handler's Content-Length: one value of
// digits only (any size: a response, unlike a request here, can be large).
func parseResponseLength(v []string) (int64, bool) {
	if len(v) != 1 || v[0] == "" {
		return 0, false
	}
	for i := 0; i < len(v[0]); i++ {
		if c := v[0][i]; c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v[0], 10, 64)
	return n, err == nil
}

func hasCloseToken(vs []string) bool {
	for _, v := range vs {
		if hasToken([]byte(v), "close") {
			return true
		}
	}
	return false
}

// commit writes the final head to the connection's buffer, with the
// framing decided (an undecided one becomes chunked) and, when length is
// not negative, a Content-Length of this server.
func (w *response) commit(length int64) {
	if w.framing == undecided {
		if w.head {
			w.framing = noBody
		} else {
			w.framing = chunked
		}
	}
	if w.c.s.closing.Load() {
		// Shutdown started while the handler ran: this is the last answer.
		w.closeAfter = true
	}
	bw := w.c.bw
	w.writeStatusLine(w.status)
	bw.Write(w.fields)
	if length >= 0 {
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(bw.AvailableBuffer(), length, 10))
		bw.WriteString("\r\n")
	}
	if !w.hasDate {
		bw.WriteString("Date: ")
		bw.WriteString(httpDate())
		bw.WriteString("\r\n")
	}
	if w.framing == chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if w.closeAfter {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
}

func (w *response) writeStatusLine(code int) {
	bw := w.c.bw
	bw.WriteString("HTTP/1.1 ")
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\n")
}

// appendFields appends the handler's header fields for a head of status
// code, without the framing ones (this server's), the trailers-to-be, the
// invalid names, and what net/http leaves out of a 1xx, 204 or 304 head.
// It notes whether there were prefixed trailers.
func (w *response) appendFields(b []byte, code int) []byte {
	for k, vs := range w.hdr {
		switch {
		case k == "Transfer-Encoding" || k == "Connection":
			continue
		case strings.HasPrefix(k, http.TrailerPrefix):
			if code >= 200 {
				w.hasTrailers = true
			}
			continue
		case k == "Content-Length" && (code < 200 || code == http.StatusNoContent || code == http.StatusNotModified),
			k == "Content-Type" && code == http.StatusNotModified,
			!validKey(k):
			continue
		}
		for _, v := range vs {
			b = appendField(b, k, v)
		}
	}
	return b
}

// appendField appends "k: v" with CR and LF in v turned into spaces, as
// net/http does, so that no value can split the head.
func appendField(b []byte, k, v string) []byte {
	b = append(b, k...)
	b = append(b, ": "...)
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\r' || c == '\n' {
			b = append(b, ' ')
		} else {
			b = append(b, c)
		}
	}
	return append(b, "\r\n"...)
}

func (w *response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !bodyAllowedForStatus(w.status) {
		return 0, errBodyNotAllowed
	}
	if w.failed != nil {
		return 0, w.failed
	}
	if w.head {
		// As net/http: what a handler writes for HEAD is counted, for the
		// Content-Length, and dropped.
		if w.framing == fixed && w.written+int64(len(p)) > w.length {
			return 0, http.ErrContentLength
		}
		w.written += int64(len(p))
		if w.framing == undecided && w.written > bufferBeforeChunking {
			w.commit(-1)
		}
		return len(p), nil
	}
	switch w.framing {
	case undecided:
		if len(w.small)+len(p) <= bufferBeforeChunking {
			w.small = append(w.small, p...)
			w.written += int64(len(p))
			return len(p), nil
		}
		w.commit(-1)
		if err := w.writeChunk(w.small); err != nil {
			return 0, err
		}
		w.small = w.small[:0]
	case fixed:
		if w.written+int64(len(p)) > w.length {
			return 0, http.ErrContentLength
		}
		if _, err := w.c.bw.Write(p); err != nil {
			return 0, w.fail(err)
		}
		w.written += int64(len(p))
		return len(p), nil
	}
	if err := w.writeChunk(p); err != nil {
		return 0, err
	}
	w.written += int64(len(p))
	return len(p), nil
}

func (w *response) writeChunk(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	bw := w.c.bw
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(len(p)), 16))
	bw.WriteString("\r\n")
	bw.Write(p)
	if _, err := bw.WriteString("\r\n"); err != nil {
		return w.fail(err)
	}
	return nil
}

// FlushError sends what is buffered (http.ResponseController.Flush).
func (w *response) FlushError() error {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.framing == undecided {
		w.commit(-1)
		if err := w.writeChunk(w.small); err != nil {
			return err
		}
		w.small = w.small[:0]
	}
	return w.flush()
}

func (w *response) flush() error {
	if w.failed != nil {
		return w.failed
	}
	if err := w.c.bw.Flush(); err != nil {
		return w.fail(err)
	}
	return nil
}

func (w *response) fail(err error) error {
	if w.failed == nil {
		w.failed = err
	}
	w.closeAfter = true
	return err
}

// finish ends the response after the handler returned: the head if it was
// held back, the last chunk and trailers. It reports whether the
// connection can carry another request.
func (w *response) finish() bool {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	switch w.framing {
	case undecided:
		switch {
		case w.head:
			// As net/http: the length of what the handler wrote, if any.
			length := int64(-1)
			if w.written > 0 && !w.hasTrailers {
				length = w.written
			}
			w.commit(length)
		case w.hasTrailers:
			// As net/http: trailers announced make even a short body
			// chunked, so that they can follow it.
			w.commit(-1)
			w.writeChunk(w.small)
			w.endChunks()
		default:
			w.framing = fixed
			w.length = int64(len(w.small))
			w.commit(w.length)
			w.c.bw.Write(w.small)
		}
	case fixed:
		if !w.head && w.written != w.length {
			// The client waits for bytes that will not come: only closing
			// tells it (net/http does the same).
			w.closeAfter = true
		}
	case chunked:
		w.endChunks()
	}
	return w.failed == nil && !w.closeAfter
}

// endChunks writes the last chunk and the trailers: the names announced
// at WriteHeader, and the keys with http.TrailerPrefix, with the values
// they have now.
func (w *response) endChunks() {
	bw := w.c.bw
	bw.WriteString("0\r\n")
	for _, k := range w.trailers {
		for _, v := range w.hdr[k] {
			writeTrailer(bw, k, v)
		}
	}
	for k, vs := range w.hdr {
		if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			for _, v := range vs {
				writeTrailer(bw, http.CanonicalHeaderKey(name), v)
			}
		}
	}
	bw.WriteString("\r\n")
}

// ClientGone reports whether the client has closed its connection (the
// forwarder asks while an instance is slow to answer: nothing else watches
// the client during a request here).
func (w *response) ClientGone() bool { return sockio.PeerClosed(w.c.rwc) }

func writeTrailer(bw *bufio.Writer, k, v string) {
	if !validKey(k) {
		return
	}
	bw.Write(appendField(bw.AvailableBuffer(), k, v))
}

// validKey: a field name that can be written as is.
func validKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !isTokenChar(k[i]) {
			return false
		}
	}
	return true
}

// httpDate is the Date field value, formatted once a second.
func httpDate() string {
	now := time.Now().Unix()
	if d := cachedDate.Load(); d != nil && d.unix == now {
		return d.text
	}
	d := &dateText{unix: now, text: time.Unix(now, 0).UTC().Format(http.TimeFormat)}
	cachedDate.Store(d)
	return d.text
}

type dateText struct {
	unix int64
	text string
}

var cachedDate atomic.Pointer[dateText]
