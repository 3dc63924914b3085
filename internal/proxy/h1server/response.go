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
	undecided framing = iota // head held back, body buffered in small
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
	framing     framing
	length      int64 // Content-Length when fixed
	written     int64 // body bytes written
	small       []byte
	trailers    []string // names announced in Trailer when the head was written
	closeAfter  bool     // answer with Connection: close and close the connection
	failed      error    // a write to the client failed
}

var errBodyNotAllowed = http.ErrBodyNotAllowed

func (w *response) Header() http.Header { return w.hdr }

// WriteHeader writes an informational response at once, or records the
// final status; the final head goes out with the first Flush, with the
// body when it has a Content-Length, or when the handler returns.
func (w *response) WriteHeader(code int) {
	if w.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.writeHead(code, false)
		w.flush()
		return
	}
	w.wroteHeader = true
	w.status = code
	switch {
	case w.req.Method == http.MethodHead || code == http.StatusNoContent ||
		code == http.StatusNotModified || code < 200:
		w.framing = noBody
	case w.hasLength():
		w.framing = fixed
	default:
		w.framing = undecided
		return
	}
	w.commit()
}

// hasLength reads a valid Content-Length from the handler's header.
func (w *response) hasLength() bool {
	v := w.hdr["Content-Length"]
	if len(v) != 1 {
		return false
	}
	n, ok := parseLength([]byte(v[0]))
	if !ok {
		return false
	}
	w.length = n
	return true
}

// commit writes the final head with the framing decided.
func (w *response) commit() {
	if w.framing == undecided {
		w.framing = chunked
	}
	if w.framing == chunked {
		// Names announced now may carry trailers at the end.
		for _, v := range w.hdr["Trailer"] {
			for t := range strings.SplitSeq(v, ",") {
				if t = strings.TrimSpace(t); t != "" {
					w.trailers = append(w.trailers, http.CanonicalHeaderKey(t))
				}
			}
		}
	}
	w.writeHead(w.status, true)
}

// writeHead writes a status line and the handler's header fields, with the
// framing ones of this server when final.
func (w *response) writeHead(code int, final bool) {
	bw := w.c.bw
	bw.WriteString("HTTP/1.1 ")
	bw.Write(strconv.AppendInt(bw.AvailableBuffer(), int64(code), 10))
	bw.WriteByte(' ')
	bw.WriteString(http.StatusText(code))
	bw.WriteString("\r\n")
	for k, vs := range w.hdr {
		if !final && k == "Content-Length" || k == "Transfer-Encoding" || k == "Connection" ||
			strings.HasPrefix(k, http.TrailerPrefix) || !validKey(k) {
			continue
		}
		if final && w.framing == chunked && k == "Content-Length" {
			continue
		}
		for _, v := range vs {
			bw.WriteString(k)
			bw.WriteString(": ")
			writeValue(bw, v)
			bw.WriteString("\r\n")
		}
	}
	if final {
		if _, ok := w.hdr["Date"]; !ok {
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
	}
	bw.WriteString("\r\n")
}

func (w *response) Write(p []byte) (int, error) {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if w.failed != nil {
		return 0, w.failed
	}
	switch w.framing {
	case noBody:
		return 0, errBodyNotAllowed
	case undecided:
		if len(w.small)+len(p) <= bufferBeforeChunking {
			w.small = append(w.small, p...)
			w.written += int64(len(p))
			return len(p), nil
		}
		w.commit()
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
		w.commit()
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
		w.framing = fixed
		w.length = int64(len(w.small))
		w.hdr["Content-Length"] = []string{strconv.Itoa(len(w.small))}
		w.writeHead(w.status, true)
		w.c.bw.Write(w.small)
	case fixed:
		if w.written != w.length {
			// The client waits for bytes that will not come: only closing
			// tells it (net/http does the same).
			w.closeAfter = true
		}
	case chunked:
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
	return w.failed == nil && !w.closeAfter
}

// ClientGone reports whether the client has closed its connection (the
// forwarder asks while an instance is slow to answer: nothing else watches
// the client during a request here).
func (w *response) ClientGone() bool { return sockio.PeerClosed(w.c.rwc) }

func writeTrailer(bw *bufio.Writer, k, v string) {
	if !validKey(k) {
		return
	}
	bw.WriteString(k)
	bw.WriteString(": ")
	writeValue(bw, v)
	bw.WriteString("\r\n")
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

// writeValue writes v with CR and LF turned into spaces, as net/http does,
// so that no value can split the response.
func writeValue(bw *bufio.Writer, v string) {
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	bw.WriteString(v)
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
