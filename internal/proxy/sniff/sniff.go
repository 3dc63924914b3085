// Package sniff tells what a client speaks from the first bytes it sends,
// without consuming them: a TLS ClientHello (with its SNI and ALPN), the
// HTTP/2 connection preface, an HTTP/1.x request line, or else plain TCP.
//
// Each protocol has a sniffer that answers one of three states for the
// bytes seen so far (match, need more bytes, no match); Detect peeks more
// bytes while any sniffer needs more and none matched, and tries them in a
// fixed order (TLS, HTTP/2, HTTP/1.x). A client that sends nothing within a
// short wait is taken for a server-speaks-first protocol (SMTP, MySQL, …):
// TCP. Sniffers see bytes from an untrusted client: they only index within
// the slice they are given (FuzzSniff).
package sniff

import (
	"bufio"
	"errors"
	"net"
	"os"
	"time"
)

// Protocol is what a connection speaks.
type Protocol int

// The protocols Detect tells apart. TCP is the fallback: bytes no sniffer
// matches, or none at all within the first wait.
const (
	TCP Protocol = iota
	TLS
	HTTP2
	HTTP1
)

func (p Protocol) String() string {
	switch p {
	case TLS:
		return "tls"
	case HTTP2:
		return "h2"
	case HTTP1:
		return "http/1.1"
	}
	return "tcp"
}

// IsHTTP reports whether p is HTTP in clear (HTTP/1.x or h2 with prior
// knowledge): what the mesh can route request by request.
func (p Protocol) IsHTTP() bool { return p == HTTP1 || p == HTTP2 }

// Verdict is what a sniffer says about the bytes seen so far.
type Verdict int

// The three states of sniffing.
const (
	NoMatch  Verdict = iota // these bytes are not this protocol
	NeedMore                // a prefix of it; read more to know
	Match                   // this protocol
)

func (v Verdict) String() string {
	switch v {
	case NeedMore:
		return "need more"
	case Match:
		return "match"
	}
	return "no match"
}

// Result is what Detect found.
type Result struct {
	Protocol Protocol
	// SNI and ALPN of a TLS ClientHello, when it was read whole within the
	// reader's buffer (a ClientHello is usually one record well under
	// 4 KiB); empty otherwise.
	SNI  string
	ALPN []string
	// Silent: TCP because no byte came within the first wait (a protocol
	// where the server speaks first, or a client still silent).
	Silent bool
}

type sniffer struct {
	proto Protocol
	sniff func(b []byte) Verdict
}

// sniffers are tried in this fixed order; the first Match wins.
var sniffers = [...]sniffer{
	{TLS, SniffTLS},
	{HTTP2, SniffHTTP2},
	{HTTP1, SniffHTTP1},
}

// Sniff applies the sniffers to b: the protocol of the first that matches,
// or whether any still needs more bytes. With neither, b is TCP.
func Sniff(b []byte) (p Protocol, v Verdict) {
	undecided := false
	for _, s := range sniffers {
		switch s.sniff(b) {
		case Match:
			return s.proto, Match
		case NeedMore:
			undecided = true
		}
	}
	if undecided {
		return TCP, NeedMore
	}
	return TCP, NoMatch
}

// Detect peeks at the start of conn through r (nothing is consumed) until a
// sniffer matches or all say no. It waits up to first for the first byte:
// a client that sends nothing by then is TCP (a protocol where the server
// speaks first). Once bytes came, it waits until total has passed since the
// call for enough of them to decide; bytes still undecided then, or when
// r's buffer is full, are TCP too. A TLS ClientHello is then read whole, as
// far as r's buffer and total allow, for its SNI and ALPN.
//
// The error is only ever the connection's own (the client closed or reset
// it) before anything was sent; a client that sent some bytes and then
// closed its side is TCP, and its bytes are still in r.
func Detect(conn net.Conn, r *bufio.Reader, first, total time.Duration) (Result, error) {
	start := time.Now()
	if err := conn.SetReadDeadline(start.Add(first)); err != nil {
		return Result{}, err
	}
	defer conn.SetReadDeadline(time.Time{})
	n, waitingFirst := 1, true
	for {
		b, err := r.Peek(max(n, r.Buffered()))
		if len(b) > 0 && waitingFirst {
			waitingFirst = false
			conn.SetReadDeadline(start.Add(total))
		}
		p, v := Sniff(b)
		switch {
		case v == Match && p == TLS:
			return readClientHello(r, b), nil
		case v == Match:
			return Result{Protocol: p}, nil
		case v == NoMatch:
			return Result{Protocol: TCP}, nil
		}
		if err != nil {
			if len(b) == 0 && !isTimeout(err) {
				return Result{}, err
			}
			// Silence within the first wait, undecided at the deadline, a
			// full buffer, or bytes and then the end: TCP.
			return Result{Protocol: TCP, Silent: len(b) == 0}, nil
		}
		n = len(b) + 1
		if n > r.Size() {
			return Result{Protocol: TCP}, nil
		}
	}
}

// readClientHello peeks the whole first TLS record (as much of it as fits
// in r, within the deadline already set) and parses its ClientHello.
func readClientHello(r *bufio.Reader, b []byte) Result {
	res := Result{Protocol: TLS}
	want := min(recordHeaderLen+(int(b[3])<<8|int(b[4])), r.Size())
	if len(b) < want {
		b, _ = r.Peek(want) // on a timeout, what came is parsed
	}
	if h, ok := ParseClientHello(b); ok {
		res.SNI, res.ALPN = h.ServerName, h.ALPN
	}
	return res
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// ErrNotSocket is DetectPeek's answer for a connection it cannot peek at:
// not a socket (syscall.Conn), or not on Linux. Nothing was read.
var ErrNotSocket = errors.New("sniff: cannot peek at this connection")
