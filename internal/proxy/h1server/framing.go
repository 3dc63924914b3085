package h1server

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"

	"trellis.dev/trellis/internal/proxy/mesherr"
)

// HTTP/1.1 framing (RFC 9112 §6). A request whose body length is
// ambiguous or invalid is refused with 400 bad_request and its connection
// closed before any of it reaches the instance: a proxy and the server
// behind it that read such a request differently are how requests are
// smuggled. The own loop serves only strictly framed requests (a single
// Content-Length, no Transfer-Encoding) and checks, with checkHead, every
// head it hands off. net/http then reads the connection on its own — and
// would take Content-Length with Transfer-Encoding: chunked (it drops the
// length and keeps the connection), or Transfer-Encoding on HTTP/1.0 (it
// ignores the coding) — so a handed-off connection is read through a
// framer: it checks every request head before net/http sees it, follows
// the bodies to find the next head, and puts a marked request in place of
// a refused one, which the Fallback handler answers 400 (refuseMarked);
// nothing after the refused head is read.

// headFraming is how a request's body is delimited.
type headFraming int

const (
	bodyNone    headFraming = iota // no body
	bodyLength                     // Content-Length bytes
	bodyChunked                    // chunked coding
	bodyOpaque                     // the connection is something else from here on (h2c, CONNECT, Upgrade)
)

// headInfo is what checkHead found.
type headInfo struct {
	end     int // the head's length; 0 when the buffer does not hold a whole head yet
	framing headFraming
	length  int64 // of a bodyLength body
	upgrade bool  // an Upgrade field: after the body, another protocol may follow
	reason  string
}

// checkHead finds the first request head in buf as net/http delimits it
// (lines end in LF, optionally preceded by CR; the head ends at the first
// empty line) and judges its framing: for a head to refuse, reason says
// why (empty when the head is acceptable).
func checkHead(buf []byte) (h headInfo) {
	// The request line is judged as soon as it is whole (net/http answers
	// a bad one without waiting for the rest); the fields once the head is.
	first := bytes.IndexByte(buf, '\n')
	if first < 0 {
		return headInfo{}
	}
	line, _ := nextLine(buf[:first+1])
	// As net/http's parseRequestLine: method SP target SP version.
	method, tail, ok1 := bytes.Cut(line, []byte(" "))
	target, proto, ok2 := bytes.Cut(tail, []byte(" "))
	major, minor, ok3 := http.ParseHTTPVersion(string(proto))
	switch {
	case len(line) == 0:
		h.reason = "empty request line"
	case bytes.IndexByte(line, '\r') >= 0:
		h.reason = "bare CR in the request line"
	case !ok1 || !ok2 || !ok3 || len(method) == 0:
		h.reason = "malformed request line"
	}
	if h.reason != "" {
		h.end = first + 1
		return h
	}
	for i := first + 1; ; {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			return headInfo{}
		}
		l := buf[i : i+j]
		i += j + 1
		if len(l) == 0 || len(l) == 1 && l[0] == '\r' {
			h.end = i
			break
		}
	}
	rest := buf[first+1 : h.end]
	if string(method) == "PRI" && string(target) == "*" && major == 2 && minor == 0 {
		h.framing = bodyOpaque // the h2c preface: net/http's
		return h
	}
	old := major == 0 || major == 1 && minor == 0
	var te [][]byte
	var cl []byte
	var sawCL, differentCL bool
	for len(rest) > 0 {
		line, rest = nextLine(rest)
		if len(line) == 0 {
			break // the empty line ending the head
		}
		if line[0] == ' ' || line[0] == '\t' {
			h.reason = "obs-fold (a field line starting with whitespace)"
			return h
		}
		colon := bytes.IndexByte(line, ':')
		if colon < 0 {
			h.reason = "header field without a colon"
			return h
		}
		name, value := line[:colon], line[colon+1:]
		for _, c := range name {
			if c == ' ' || c == '\t' {
				h.reason = "whitespace before the colon of a header field"
				return h
			}
			if !isTokenChar(c) {
				h.reason = "invalid header field name"
				return h
			}
		}
		for _, c := range value {
			if c == '\r' {
				h.reason = "bare CR in a header field"
				return h
			}
			if c < ' ' && c != '\t' || c == 0x7f {
				h.reason = "control byte in a header field"
				return h
			}
		}
		value = bytes.Trim(value, " \t")
		switch {
		case equalASCIIFold(name, "content-length"):
			if !sawCL {
				cl, sawCL = value, true
			} else if !bytes.Equal(cl, value) {
				differentCL = true
			}
		case equalASCIIFold(name, "transfer-encoding"):
			te = append(te, value)
		case equalASCIIFold(name, "upgrade"):
			h.upgrade = true
		}
	}
	switch {
	case len(te) > 0 && old:
		h.reason = "Transfer-Encoding in an HTTP/1.0 request"
	case len(te) > 0 && sawCL:
		h.reason = "both Content-Length and Transfer-Encoding"
	case len(te) > 0 && (len(te) != 1 || !equalASCIIFold(te[0], "chunked")):
		h.reason = fmt.Sprintf("Transfer-Encoding %q: only chunked is accepted", bytes.Join(te, []byte(", ")))
	case len(te) > 0:
		h.framing = bodyChunked
	case differentCL:
		h.reason = "differing Content-Length values"
	case sawCL:
		n, ok := parseLength19(cl)
		if !ok {
			h.reason = fmt.Sprintf("invalid Content-Length %q", cl)
		} else if n > 0 {
			h.framing, h.length = bodyLength, n
		}
	}
	if h.reason == "" && string(method) == http.MethodConnect {
		h.framing = bodyOpaque
	}
	return h
}

// nextLine cuts b after its first LF and returns the line without its LF
// and one CR before it.
func nextLine(b []byte) (line, rest []byte) {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return b, nil
	}
	line, rest = b[:i], b[i+1:]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, rest
}

// parseLength19 is a Content-Length as net/http takes it: digits only,
// below 2^63.
func parseLength19(v []byte) (int64, bool) { return parseDigits(v, 18) }

// BadFraming is the refusal of a request head for reason.
func BadFraming(reason string) *mesherr.Error {
	return mesherr.New(mesherr.BadRequest, "malformed request framing: %s", reason)
}

// BadBody is the refusal of a request whose body turned out malformed.
func BadBody(reason string) *mesherr.Error {
	return mesherr.New(mesherr.BadRequest, "malformed request body: %s", reason)
}

// framer states.
const (
	fsHead   = iota // reading a request head
	fsLength        // passing a body of known length
	fsChunk         // in a chunked body (chunk.state says where)
	fsOpaque        // passing everything as it comes
	fsEnd           // returning out, then io.EOF for ever
)

// chunk states.
const (
	csSize      = iota // hex digits of the chunk size
	csExt              // after the size: whitespace or an extension, to LF
	csExtCR            // a CR ending the size line: LF must follow
	csData             // chunk data
	csDataCR           // the CR after the data
	csDataLF           // the LF after the data
	csTrailer          // at the start of a trailer line (or the final empty line)
	csTrailerL         // inside a trailer line, to LF
	csTrailerCR        // a CR in a trailer line: LF must follow
	csLastCR           // a CR at the start of a trailer line: the end, if LF follows
)

// chunkState is where a chunked body is.
type chunkState struct {
	state int

	size    int64
	digits  int
	lineLen int
	ext     bool // a chunk extension (after ';') is being read
}

// sizeLineEnd: a chunk-size line ended; its data or the trailers follow.
func (c *chunkState) sizeLineEnd(f *framer) {
	c.lineLen = 0
	if c.size == 0 {
		c.state = csTrailer
	} else {
		c.state, f.left = csData, c.size
	}
}

// maxChunkLine bounds a chunk-size line (net/http's limit is 4 KiB).
const maxChunkLine = 4 << 10

// framer reads a handed-off connection for net/http (see the top of this
// file). Not safe for concurrent Reads (nor is net/http's reading).
type framer struct {
	src     io.Reader
	maxHead int    // a head longer than this is net/http's to refuse (431)
	marker  string // the header name of a refused request's stand-in

	state       int
	left        int64 // bytes of the body (fsLength) or chunk (csData) still to pass
	chunk       chunkState
	opaqueAfter bool // go fsOpaque after this body (an Upgrade request)

	rbuf   []byte // what src is read into
	in     []byte // read from src, not yet looked at
	out    []byte // looked at, not yet returned
	head   []byte // a head being collected
	scan   int    // head[:scan] has no head end
	lineOK bool   // the head's request line was checked

	refused string // why a head was refused, for logs
}

func newFramer(src io.Reader, maxHead int, marker string) *framer {
	return &framer{src: src, maxHead: maxHead, marker: marker}
}

func (f *framer) Read(p []byte) (int, error) {
	for {
		if len(f.out) > 0 {
			n := copy(p, f.out)
			f.out = f.out[n:]
			return n, nil
		}
		switch f.state {
		case fsEnd:
			return 0, io.EOF
		case fsOpaque:
			if len(f.in) > 0 {
				n := copy(p, f.in)
				f.in = f.in[n:]
				return n, nil
			}
			return f.src.Read(p)
		}
		if len(f.in) == 0 {
			if f.state == fsHead && len(f.head) > 0 {
				// Collect the head directly: nothing of it goes out before
				// it is whole and judged.
				if err := f.readHead(); err != nil {
					return 0, err
				}
				continue
			}
			if f.rbuf == nil {
				f.rbuf = make([]byte, 4<<10)
			}
			n, err := f.src.Read(f.rbuf)
			f.in = f.rbuf[:n]
			if n == 0 {
				if err == nil {
					err = io.ErrNoProgress
				}
				return 0, err
			}
		}
		f.step()
	}
}

// readHead reads more of a head that has started into f.head.
func (f *framer) readHead() error {
	if len(f.head) == cap(f.head) {
		f.head = append(f.head, make([]byte, max(len(f.head), 1<<10))...)[:len(f.head)]
	}
	n, err := f.src.Read(f.head[len(f.head):cap(f.head)])
	if n > 0 {
		f.head = f.head[:len(f.head)+n]
		f.judgeHead()
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	if err == io.EOF && len(f.head) > 0 {
		// The client ended in the middle of a head: net/http sees it.
		f.out, f.head, f.state = f.head, nil, fsEnd
		return nil
	}
	return err
}

// step looks at f.in in the current state, moving what may go to net/http
// to f.out.
func (f *framer) step() {
	switch f.state {
	case fsHead:
		f.head = append(f.head[:0], f.in...)
		f.in, f.scan, f.lineOK = nil, 0, false
		f.judgeHead()
	case fsLength:
		n := int64(len(f.in))
		if n > f.left {
			n = f.left
		}
		f.out, f.in = f.in[:n], f.in[n:]
		if f.left -= n; f.left == 0 {
			f.bodyDone()
		}
	case fsChunk:
		f.stepChunk()
	}
}

// judgeHead checks f.head once it holds a whole head, and its request
// line as soon as that is whole. Each byte is looked at once while the
// head comes (f.scan), however slowly it comes.
func (f *framer) judgeHead() {
	end := headEnd(f.head, f.scan)
	if end == 0 {
		f.scan = max(len(f.head)-2, 0)
		if !f.lineOK {
			if i := bytes.IndexByte(f.head, '\n'); i >= 0 {
				if h := checkHead(f.head[:i+1]); h.reason != "" {
					f.refuse(h.reason)
					return
				}
				f.lineOK = true
			}
		}
		if len(f.head) > f.maxHead {
			// Too long for net/http, which answers 431 and closes.
			f.out, f.head, f.state = f.head, nil, fsEnd
		}
		return
	}
	h := checkHead(f.head[:end])
	if h.reason != "" {
		f.refuse(h.reason)
		return
	}
	f.out, f.in = f.head[:h.end], f.head[h.end:]
	f.head = nil // f.out and f.in keep the old buffer
	f.opaqueAfter = h.upgrade
	switch h.framing {
	case bodyNone:
		f.bodyDone()
	case bodyLength:
		f.state, f.left = fsLength, h.length
	case bodyChunked:
		f.state = fsChunk
		f.chunk = chunkState{}
	case bodyOpaque:
		f.state = fsOpaque
	}
}

// refuse puts the stand-in of a refused request in place of the rest of
// the connection.
func (f *framer) refuse(reason string) {
	f.refused = reason
	f.out = f.standIn(reason)
	f.head, f.in, f.state = nil, nil, fsEnd
}

// headEnd returns the length of the head at the start of buf, looking
// for its empty line from from on (0: not there yet). An empty first line
// is not an end (checkHead refuses it).
func headEnd(buf []byte, from int) int {
	for i := from; ; {
		j := bytes.IndexByte(buf[i:], '\n')
		if j < 0 {
			return 0
		}
		p := i + j
		if p >= 1 && buf[p-1] == '\n' || p >= 2 && buf[p-1] == '\r' && buf[p-2] == '\n' {
			return p + 1
		}
		i = p + 1
	}
}

// bodyDone: the request's body has passed; the next head follows.
func (f *framer) bodyDone() {
	if f.opaqueAfter {
		f.state = fsOpaque
		return
	}
	f.state = fsHead
}

// standIn is the request net/http reads in place of a refused one: the
// marker field (a name no client can guess) tells refuseMarked to answer
// it 400 with the reason.
func (f *framer) standIn(reason string) []byte {
	return []byte("GET / HTTP/1.1\r\nHost: bad-request.invalid\r\nConnection: close\r\n" +
		f.marker + ": " + reason + "\r\n\r\n")
}

// stepChunk follows a chunked body through f.in. A malformed body is
// passed up to the byte that shows it, and nothing after (fsEnd): net/http
// then fails reading the body, which is the client's fault (forward).
func (f *framer) stepChunk() {
	c := &f.chunk
	in := f.in
	i := 0
	bad := func() {
		f.out, f.in, f.state = in[:i+1], nil, fsEnd
	}
	for i < len(in) {
		b := in[i]
		switch c.state {
		case csSize:
			c.lineLen++
			if v, ok := unhex(b); ok && c.digits < 16 {
				c.size = c.size<<4 | int64(v)
				c.digits++
				break
			}
			if c.digits == 0 {
				bad()
				return
			}
			c.state = csExt
			continue // look at b again
		case csExt:
			c.lineLen++
			switch {
			case c.lineLen > maxChunkLine:
				bad()
				return
			case b == '\n':
				c.sizeLineEnd(f)
			case b == '\r':
				c.state = csExtCR
			case b < ' ' && b != '\t' || b == 0x7f:
				bad()
				return
			case c.ext:
			case b == ';':
				c.ext = true
			case b != ' ' && b != '\t':
				bad()
				return
			}
		case csData:
			n := int64(len(in) - i)
			if n > f.left {
				n = f.left
			}
			i += int(n)
			if f.left -= n; f.left == 0 {
				c.state = csDataCR
			}
			continue
		case csExtCR:
			if b != '\n' {
				bad()
				return
			}
			c.sizeLineEnd(f)
		case csDataCR:
			if b != '\r' {
				bad()
				return
			}
			c.state = csDataLF
		case csDataLF:
			if b != '\n' {
				bad()
				return
			}
			c.state, c.size, c.digits, c.ext = csSize, 0, 0, false
		case csTrailer:
			switch b {
			case '\n':
				f.out, f.in = in[:i+1], in[i+1:]
				f.bodyDone()
				return
			case '\r':
				c.state = csLastCR
			default:
				c.state, c.lineLen = csTrailerL, 1
			}
		case csLastCR:
			if b != '\n' {
				bad()
				return
			}
			f.out, f.in = in[:i+1], in[i+1:]
			f.bodyDone()
			return
		case csTrailerL:
			if c.lineLen++; c.lineLen > maxChunkLine*16 {
				bad()
				return
			}
			switch b {
			case '\n':
				c.state = csTrailer
			case '\r':
				c.state = csTrailerCR
			}
		case csTrailerCR:
			if b != '\n' {
				bad()
				return
			}
			c.state = csTrailer
		}
		i++
	}
	f.out, f.in = in, nil
}

func unhex(b byte) (byte, bool) {
	switch {
	case '0' <= b && b <= '9':
		return b - '0', true
	case 'a' <= b && b <= 'f':
		return b - 'a' + 10, true
	case 'A' <= b && b <= 'F':
		return b - 'A' + 10, true
	}
	return 0, false
}

// newMarker is a header name no client can guess, for stand-in requests.
func newMarker() string {
	var b [12]byte
	rand.Read(b[:])
	return http.CanonicalHeaderKey("X-Trellis-Refused-" + hex.EncodeToString(b[:]))
}

// refuseMarked answers the stand-ins of refused heads (400 bad_request,
// connection closed) and serves the other requests with h. An HTTP/1
// request that asked to switch protocols (Upgrade, CONNECT) and did not
// gets Connection: close: the framer stopped following that connection.
func (s *Server) refuseMarked(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 1 {
			h.ServeHTTP(w, r)
			return
		}
		if v := r.Header[s.marker]; len(v) > 0 {
			s.badRequest()
			if s.Log != nil {
				s.Log.Debug("request refused", "code", mesherr.BadRequest, "reason", v[0], "remote", r.RemoteAddr)
			}
			w.Header().Set("Connection", "close")
			mesherr.Write(w, r, BadFraming(v[0]))
			return
		}
		if r.Method == http.MethodConnect || r.Header["Upgrade"] != nil {
			w = &closeUnlessSwitched{ResponseWriter: w, connect: r.Method == http.MethodConnect}
		}
		h.ServeHTTP(w, r)
	})
}

// closeUnlessSwitched adds Connection: close to an answer that does not
// switch protocols (101, or 2xx to CONNECT).
type closeUnlessSwitched struct {
	http.ResponseWriter
	connect bool
	wrote   bool
}

func (w *closeUnlessSwitched) WriteHeader(code int) {
	if !w.wrote && code >= 200 {
		w.wrote = true
		if !(code == http.StatusSwitchingProtocols || w.connect && code < 300) {
			w.Header().Set("Connection", "close")
		}
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *closeUnlessSwitched) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(p)
}

func (w *closeUnlessSwitched) Unwrap() http.ResponseWriter { return w.ResponseWriter }
