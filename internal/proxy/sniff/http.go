package sniff

import (
	"bytes"

	"golang.org/x/net/http/httpguts"
)

// h2Preface opens every HTTP/2 connection with prior knowledge (RFC 9113 §3.4).
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// SniffHTTP2 recognises the HTTP/2 client connection preface.
func SniffHTTP2(b []byte) Verdict {
	if len(b) >= len(h2Preface) {
		if bytes.HasPrefix(b, h2Preface) {
			return Match
		}
		return NoMatch
	}
	if bytes.HasPrefix(h2Preface, b) {
		return NeedMore
	}
	return NoMatch
}

// maxMethod bounds a request method's length: longer tokens are not HTTP
// for sniffing (the longest registered method, UPDATEREDIRECTREF, is 17).
const maxMethod = 20

// SniffHTTP1 recognises an HTTP/1.x request line (RFC 9112 §3): a method
// token, SP, a request target of visible characters, SP, HTTP/1.<digit>,
// and CRLF (or a bare LF, which servers accept). It matches only once the
// whole line is there.
func SniffHTTP1(b []byte) Verdict {
	i := 0
	for ; i < len(b) && isToken(b[i]); i++ {
		if i == maxMethod {
			return NoMatch
		}
	}
	switch {
	case i == len(b):
		return NeedMore
	case i == 0 || b[i] != ' ':
		return NoMatch
	}
	i++ // SP
	start := i
	for ; i < len(b) && b[i] > ' ' && b[i] != 0x7f; i++ {
	}
	switch {
	case i == len(b):
		return NeedMore
	case i == start || b[i] != ' ':
		return NoMatch
	}
	i++ // SP
	rest := b[i:]
	const version = "HTTP/1."
	if len(rest) < len(version) {
		if string(rest) == version[:len(rest)] {
			return NeedMore
		}
		return NoMatch
	}
	if string(rest[:len(version)]) != version {
		return NoMatch
	}
	rest = rest[len(version):]
	switch {
	case len(rest) == 0:
		return NeedMore
	case rest[0] < '0' || rest[0] > '9':
		return NoMatch
	}
	rest = rest[1:]
	switch {
	case len(rest) == 0:
		return NeedMore
	case rest[0] == '\n':
		return Match
	case rest[0] != '\r':
		return NoMatch
	case len(rest) == 1:
		return NeedMore
	case rest[1] == '\n':
		return Match
	}
	return NoMatch
}

// isToken reports whether c is a tchar (RFC 9110 §5.6.2).
func isToken(c byte) bool { return httpguts.IsTokenRune(rune(c)) }
