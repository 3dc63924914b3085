package forward

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"testing"
	"time"
)

// FuzzH1Response feeds an instance's answer, byte for byte, to the fast
// path's response side — roundTrip (the 1xx loop over http.ReadResponse,
// under the head's size limit) and relay (hop-by-hop headers, trailers,
// the body, whether the connection goes back to the pool) — and holds what
// the client gets to net/http's own reading of the same bytes
// (referenceResponse: http.ReadResponse, informational answers skipped,
// the body read to its end):
//   - nothing panics but relay's deliberate http.ErrAbortHandler, and
//     that only when the reference could not read the body whole: a body
//     cut short or malformed is never passed on as complete;
//   - a response the fast path answers, the reference reads too, with the
//     same 1xx, status, headers (less the hop-by-hop ones), body and
//     trailers; one it refuses, the reference refuses;
//   - a connection given back to the pool ends exactly where the
//     reference's response ends, and that response had a framing (a
//     length, chunked, or no body), so that the next answer read there is
//     the next response and not the rest of this one.
//
// Differences from net/http found and kept: none in what is read (the
// fast path reads with http.ReadResponse). As http.Transport, a 204 or 304
// (or an answer to HEAD) that carries a Content-Length has no body here,
// and bytes an instance sends after it anyway are read as the next
// response on the pooled connection (Transport does the same); an answer
// without framing is read to the connection's end and the connection is
// not reused.
func FuzzH1Response(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n2\r\nhi\r\n0\r\nX-Sum: 1\r\nX-Late: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
		"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\nabc",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\nhello",
		"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n",
		"HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\n\r\nuntil the end",
		"HTTP/1.0 200 OK\r\n\r\nold",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
		"HTTP/1.1 200 OK\nContent-Length: 1\n\nx",
		"HTTP/1.1 999 Whatever\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: x\n\n",
		"",
		"HTTP/1.1",
	} {
		for _, m := range []uint8{0, 1, 2} {
			f.Add(m, []byte(s))
		}
	}
	fw := New(Options{})
	f.Fuzz(func(t *testing.T, m uint8, b []byte) {
		method := []string{http.MethodGet, http.MethodHead, http.MethodPost}[int(m)%3]
		req, err := http.NewRequest(method, "http://reviews/x", nil)
		if err != nil {
			t.Fatal(err)
		}
		want, wantErr := referenceResponse(b, req)

		conn := &scriptConn{r: bytes.NewReader(b)}
		c := newH1Conn(conn, "fuzz")
		w := &recorder{h: http.Header{}}
		res, err := fw.roundTrip(w, req, c, nil)
		if err != nil {
			if wantErr == nil || want.status != 0 {
				t.Fatalf("fast path refused the head (%v), net/http read %+v", err, want)
			}
			return
		}
		if want.status == 0 {
			t.Fatalf("fast path read a head (%d) that net/http refused: %v", res.StatusCode, wantErr)
		}
		aborted := relayed(fw, w, req, c, res)
		consumed := len(b) - conn.r.Len() - c.br.Buffered()
		pooled := fw.pool.takeIdle("fuzz") != nil

		if want.status == http.StatusSwitchingProtocols {
			// Nothing asked for an upgrade (those requests take the
			// ReverseProxy path): relay refuses it with a mesh error.
			if w.code != http.StatusBadGateway || pooled {
				t.Fatalf("an unasked 101 answered %d, pooled %v", w.code, pooled)
			}
			return
		}
		if !slices.Equal(w.info, want.info) || w.code != want.status {
			t.Fatalf("fast path answered %v then %d, net/http read %v then %d", w.info, w.code, want.info, want.status)
		}
		if aborted {
			if wantErr == nil {
				t.Fatalf("fast path aborted a response net/http read whole: %+v", want)
			}
			return
		}
		if wantErr != nil {
			t.Fatalf("fast path passed on a whole response, net/http failed reading it: %v", wantErr)
		}
		if got := w.body.String(); got != want.body {
			t.Fatalf("body %q, net/http read %q", got, want.body)
		}
		gotHeader := w.snap.Clone()
		delete(gotHeader, "Trailer")
		if !equalHeaders(gotHeader, want.header) {
			t.Fatalf("headers %q, net/http read %q (less hop-by-hop)", gotHeader, want.header)
		}
		for k, vs := range want.trailer {
			if got := w.trailer(k); len(vs) > 0 && !slices.Equal(got, vs) {
				t.Fatalf("trailer %s: %q, net/http read %q", k, got, vs)
			}
		}
		if pooled {
			if !want.framed {
				t.Fatalf("connection reused after a response without framing: %+v", want)
			}
			if consumed != want.consumed {
				t.Fatalf("connection reused at byte %d, the response ended at %d", consumed, want.consumed)
			}
		}
	})
}

// relayed runs relay, reporting whether it aborted the client's response
// (http.ErrAbortHandler: the body failed after the head went out).
func relayed(fw *Forwarder, w http.ResponseWriter, req *http.Request, c *h1Conn, res *http.Response) (aborted bool) {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				panic(p)
			}
			aborted = true
		}
	}()
	fw.relay(w, req, &Target{Addr: "fuzz"}, c, res, make([]byte, 512))
	return false
}

// reference is net/http's reading of an answer.
type reference struct {
	info     []int // informational statuses before the final one
	status   int   // 0: no final head
	header   http.Header
	body     string
	trailer  http.Header
	framed   bool // the body's end is known without the connection's
	consumed int  // bytes up to the end of the final response
}

func referenceResponse(b []byte, req *http.Request) (reference, error) {
	var ref reference
	r := bytes.NewReader(b)
	br := bufio.NewReader(r)
	var res *http.Response
	for n := 0; ; n++ {
		var err error
		if res, err = http.ReadResponse(br, req); err != nil {
			return ref, err
		}
		if res.StatusCode < 100 || res.StatusCode > 199 || res.StatusCode == http.StatusSwitchingProtocols {
			break
		}
		if n == max1xx {
			return ref, errors.New("too many 1xx")
		}
		ref.info = append(ref.info, res.StatusCode)
	}
	if res.StatusCode < 100 {
		// Read, but no ResponseWriter can answer it (WriteHeader takes
		// 100 to 999): the proxy must refuse it.
		return ref, errors.New("status below 100")
	}
	ref.status = res.StatusCode
	ref.header = res.Header.Clone()
	removeHopByHopHeaders(ref.header)
	chunked := len(res.TransferEncoding) > 0 && res.TransferEncoding[0] == "chunked"
	ref.framed = !res.Close && (res.Body == http.NoBody || res.ContentLength >= 0 || chunked)
	body, err := io.ReadAll(res.Body)
	ref.body = string(body)
	ref.trailer = res.Trailer
	ref.consumed = len(b) - r.Len() - br.Buffered()
	return ref, err
}

func equalHeaders(a, b http.Header) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// recorder is an http.ResponseWriter that keeps informational answers
// apart (httptest.ResponseRecorder takes a 1xx for the final status).
type recorder struct {
	h    http.Header
	info []int
	code int
	snap http.Header // h when the final head was written
	body bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.h }

func (r *recorder) WriteHeader(code int) {
	if r.code != 0 {
		return
	}
	if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
		r.info = append(r.info, code)
		return
	}
	r.code, r.snap = code, r.h.Clone()
}

func (r *recorder) Write(p []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(p)
}

func (r *recorder) Flush() { r.WriteHeader(http.StatusOK) }

// trailer is what the handler set for trailer k after the head: values
// added under an announced name, or under http.TrailerPrefix.
func (r *recorder) trailer(k string) []string {
	if vs := r.h[http.TrailerPrefix+k]; len(vs) > 0 {
		return vs
	}
	return r.h[k][len(r.snap[k]):]
}

// scriptConn is an instance connection that answers with fixed bytes and
// then reports the end of the stream; what is written to it is dropped.
type scriptConn struct{ r *bytes.Reader }

func (c *scriptConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// An instance answering with a status below 100 ("HTTP/1.1 000", which
// http.ReadResponse takes and ResponseWriter.WriteHeader panics on) gets
// the client a 502 on both paths, not a handler panic and a dropped
// connection (found by FuzzH1Response).
func TestStatusBelow100Is502(t *testing.T) {
	for _, noFast := range []bool{false, true} {
		addr := rawInstance(t, func(c net.Conn, br *bufio.Reader) {
			readRequest(t, br)
			io.WriteString(c, "HTTP/1.1 099 Nope\r\nContent-Length: 2\r\n\r\nno")
		})
		f := New(Options{NoFastPath: noFast})
		t.Cleanup(f.CloseIdleConnections)
		proxy := proxyWith(t, f, &Target{Addr: addr})
		res, err := http.Get("http://" + proxy + "/")
		if err != nil {
			t.Fatalf("NoFastPath %v: %v", noFast, err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadGateway {
			t.Fatalf("NoFastPath %v: status %d, want 502", noFast, res.StatusCode)
		}
	}
}
