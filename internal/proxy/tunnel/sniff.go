package tunnel

import (
	"bufio"
	"bytes"
	"net"
	"time"
)

// Protocol is what a tunnel speaks inside.
type Protocol int

// Protocols a tunnel may carry. HTTP1 is the fallback: whatever is not
// recognised is handed to the HTTP/1.1 server, which answers 400 to garbage.
const (
	HTTP1 Protocol = iota
	HTTP2
)

func (p Protocol) String() string {
	if p == HTTP2 {
		return "h2"
	}
	return "http/1.1"
}

// Verdict is what a sniffer says about the bytes seen so far.
type Verdict int

// The three states of sniffing.
const (
	NoMatch  Verdict = iota // these bytes are not this protocol
	NeedMore                // a prefix of it; read more to know
	Match                   // this protocol
)

// sniffer recognises one protocol from the first bytes of a connection.
type sniffer struct {
	proto Protocol
	sniff func(b []byte) Verdict
}

// sniffers are tried in this fixed order; the first Match wins.
var sniffers = []sniffer{
	{HTTP2, SniffHTTP2},
}

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

// Detect peeks at the start of conn through r (nothing is consumed) until
// one sniffer matches or all say no, within timeout. A client that sends a
// prefix of the preface and then stalls gets an error, not a guess.
func Detect(conn net.Conn, r *bufio.Reader, timeout time.Duration) (Protocol, error) {
	if err := conn.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return HTTP1, err
	}
	defer conn.SetReadDeadline(time.Time{})
	n := 1
	for {
		b, err := r.Peek(max(n, r.Buffered()))
		undecided := false
		for _, s := range sniffers {
			switch s.sniff(b) {
			case Match:
				return s.proto, nil
			case NeedMore:
				undecided = true
			}
		}
		if !undecided {
			return HTTP1, nil
		}
		if err != nil {
			return HTTP1, err
		}
		n = len(b) + 1
	}
}
