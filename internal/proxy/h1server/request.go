package h1server

import (
	"bytes"
	"net/http"
	"net/textproto"
	"net/url"

	"golang.org/x/net/http/httpguts"

	"trellis.dev/trellis/internal/proxy/forward"
)

// maxBody is the largest request body this server takes; a request with a
// larger one (or a body of unknown length) is left to net/http. It is the
// forwarder's fast-path limit (forward.maxFastBody), which reads bodies
// whole.
const maxBody = 32 << 10

// verdict is what parseHead decided about the bytes at the head of a
// connection.
type verdict int

const (
	// serve: a complete request this server handles.
	serve verdict = iota
	// handOff: anything else that may be valid HTTP (HTTP/1.0, chunked or
	// large bodies, Expect, Upgrade, CONNECT, h2c, obs-fold, bare LF,
	// unusual targets…): net/http serves the connection from here on, and
	// so also answers what is malformed with its own 400s.
	handOff
	// tooManyFields: more header fields than the limit; answered 431.
	tooManyFields
)

// parseHead parses one request head (request line and header fields, the
// final CRLF included) from head, which holds exactly that. It accepts a
// strict subset of HTTP/1.1 and says handOff for anything outside it,
// never guessing: what it returns is what net/http would have parsed,
// except that it does not add Cache-Control for Pragma: no-cache (a proxy
// passes headers through). remoteAddr becomes r.RemoteAddr. hdr, empty,
// becomes r.Header (the caller reuses maps). A head with more than
// maxFields header fields (Host included) is tooManyFields.
func parseHead(head []byte, remoteAddr string, hdr http.Header, maxFields int) (*http.Request, verdict) {
	line, rest, ok := cutLine(head)
	if !ok {
		return nil, handOff
	}
	method, target, ok := parseRequestLine(line)
	if !ok {
		return nil, handOff
	}
	r := &http.Request{
		Method:     method,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     hdr,
		Body:       http.NoBody,
		RemoteAddr: remoteAddr,
		RequestURI: target,
	}
	var hosts, lengths, fields int
	for {
		line, rest, ok = cutLine(rest)
		if !ok {
			return nil, handOff
		}
		if len(line) == 0 {
			break // the empty line ending the head
		}
		if fields++; fields > maxFields {
			return nil, tooManyFields
		}
		name, value, ok := parseField(line)
		if !ok {
			return nil, handOff
		}
		key := canonicalKey(name)
		switch key {
		case "Host":
			hosts++
			r.Host = string(value)
			continue // net/http keeps Host in r.Host only
		case "Content-Length":
			lengths++
			n, ok := parseLength(value)
			if !ok {
				return nil, handOff
			}
			r.ContentLength = n
		case "Transfer-Encoding", "Expect", "Upgrade", "Trailer":
			return nil, handOff
		case "Connection":
			if hasToken(value, "close") {
				r.Close = true
			}
		}
		hdr[key] = append(hdr[key], string(value))
	}
	// HTTP/1.1 requires exactly one Host; net/http answers 400 otherwise.
	if hosts != 1 || lengths > 1 || r.ContentLength > maxBody {
		return nil, handOff
	}
	u, err := url.ParseRequestURI(target)
	if err != nil {
		return nil, handOff
	}
	r.URL = u
	if u.Host != "" {
		// Absolute form (a client using us as its HTTP proxy): as in
		// net/http, the target's host wins over the Host field.
		r.Host = u.Host
	}
	if !forward.PlainHost(r.Host) { // what the forwarder's fast path takes
		return nil, handOff
	}
	return r, serve
}

// cutLine splits b at the first CRLF. A bare LF (which net/http tolerates)
// is not a line end here, and so ends in handOff.
func cutLine(b []byte) (line, rest []byte, ok bool) {
	i := bytes.IndexByte(b, '\n')
	if i < 1 || b[i-1] != '\r' {
		return nil, nil, false
	}
	line = b[:i-1]
	if bytes.IndexByte(line, '\r') >= 0 {
		return nil, nil, false
	}
	return line, b[i+1:], true
}

// parseRequestLine accepts "METHOD SP target SP HTTP/1.1" with a token
// method other than CONNECT and PRI (CONNECT tunnels and the h2c preface
// go to net/http) and an origin-form ("/…") or absolute http:// target of
// visible ASCII.
func parseRequestLine(line []byte) (method, target string, ok bool) {
	sp1 := bytes.IndexByte(line, ' ')
	if sp1 < 1 {
		return "", "", false
	}
	m := line[:sp1]
	rest := line[sp1+1:]
	sp2 := bytes.IndexByte(rest, ' ')
	if sp2 < 1 || string(rest[sp2+1:]) != "HTTP/1.1" {
		return "", "", false
	}
	t := rest[:sp2]
	for _, c := range m {
		if !isTokenChar(c) {
			return "", "", false
		}
	}
	for _, c := range t {
		if c <= ' ' || c >= 0x7f {
			return "", "", false
		}
	}
	if t[0] != '/' && !hasHTTPScheme(t) {
		return "", "", false
	}
	method = internMethod(m)
	if method == http.MethodConnect || method == "PRI" {
		return "", "", false
	}
	return method, string(t), true
}

func hasHTTPScheme(t []byte) bool {
	const scheme = "http://"
	return len(t) > len(scheme) && bytes.EqualFold(t[:len(scheme)], []byte(scheme))
}

// parseField splits "name: value" into a token name and a value without
// its surrounding spaces and tabs. A value may hold visible ASCII, obs-text,
// spaces and tabs, no other control byte; a line starting with space or
// tab (obs-fold) or a space before the colon is refused.
func parseField(line []byte) (name, value []byte, ok bool) {
	colon := bytes.IndexByte(line, ':')
	if colon < 1 {
		return nil, nil, false
	}
	name = line[:colon]
	for _, c := range name {
		if !isTokenChar(c) {
			return nil, nil, false
		}
	}
	value = line[colon+1:]
	for _, c := range value {
		if c < ' ' && c != '\t' || c == 0x7f {
			return nil, nil, false
		}
	}
	return name, bytes.Trim(value, " \t"), true
}

// parseLength is a Content-Length of digits only, at most 10 of them.
func parseLength(v []byte) (int64, bool) { return parseDigits(v, 10) }

// parseDigits is v as a decimal number of at most max digits (max ≤ 18:
// no overflow), digits only.
func parseDigits(v []byte, max int) (int64, bool) {
	if len(v) == 0 || len(v) > max {
		return 0, false
	}
	var n int64
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// hasToken reports whether the comma-separated list v holds token, in any
// ASCII case (token is lower case). Not bytes.EqualFold: it folds Unicode
// too ("cloſe" would be close), and net/http does not.
func hasToken(v []byte, token string) bool {
	for len(v) > 0 {
		var t []byte
		if i := bytes.IndexByte(v, ','); i >= 0 {
			t, v = v[:i], v[i+1:]
		} else {
			t, v = v, nil
		}
		if equalASCIIFold(bytes.Trim(t, " \t"), token) {
			return true
		}
	}
	return false
}

// equalASCIIFold reports whether b is lower, ignoring the case of ASCII
// letters only.
func equalASCIIFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// isTokenChar: RFC 9110 tchar (httpguts' table, as net/http uses).
func isTokenChar(c byte) bool { return httpguts.IsTokenRune(rune(c)) }

// methods are interned so that the common ones cost no allocation.
var methods = map[string]string{}

func init() {
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PRI"} {
		methods[m] = m
	}
}

func internMethod(b []byte) string {
	if m, ok := methods[string(b)]; ok { // no allocation for the lookup
		return m
	}
	return string(b)
}

// commonKeys are canonical header names seen on most requests, so that
// their keys cost no allocation (textproto does the same internally, but
// only for its own reader).
var commonKeys = map[string]string{}

func init() {
	for _, k := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Authorization",
		"Cache-Control", "Connection", "Content-Length", "Content-Type", "Cookie", "Date",
		"Expect", "Forwarded", "Host", "If-Modified-Since", "If-None-Match", "Keep-Alive",
		"Origin", "Pragma", "Proxy-Authorization", "Proxy-Connection", "Referer", "Te",
		"Trailer", "Transfer-Encoding", "Upgrade", "User-Agent", "Via", "X-Forwarded-For",
		"X-Forwarded-Host", "X-Forwarded-Proto", "X-Request-Id", "Traceparent", "Tracestate",
		"X-B3-Traceid", "X-B3-Spanid", "X-B3-Parentspanid", "X-B3-Sampled", "X-Trellis-Service",
		"X-Trellis-Version", "Accept-Ranges", "Range", "If-Match", "Content-Encoding",
	} {
		commonKeys[k] = k
	}
}

// canonicalKey is textproto.CanonicalMIMEHeaderKey of name (which is all
// token characters), without an allocation when name is already canonical
// and common.
func canonicalKey(name []byte) string {
	if k, ok := commonKeys[string(name)]; ok {
		return k
	}
	return textproto.CanonicalMIMEHeaderKey(string(name))
}
