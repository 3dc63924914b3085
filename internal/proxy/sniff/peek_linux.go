//go:build linux

package sniff

import (
	"io"
	"net"
	"syscall"
	"time"
	"unsafe"
)

// DetectPeek is Detect for a TCP connection that is to be handed on exactly
// as it was accepted: it reads nothing. It peeks at the socket's receive
// queue (recv with MSG_PEEK) into buf, so whoever takes the connection next
// reads every byte from the socket itself — the inbound listener hands an
// HTTP connection to h1server, which reads it with raw system calls
// (package sockio), and a relay reads it like any connection. Waits,
// deadlines and verdicts are Detect's: up to first for the first byte (none
// is TCP), then until total has passed since the call for enough bytes to
// decide; a full buf is TCP. A client that sent some bytes and then its end
// of stream is TCP at once (Linux: the socket's state says the FIN came).
//
// c must be a socket connection (syscall.Conn); otherwise the error is
// ErrNotSocket and nothing was peeked. Otherwise the error is only ever the
// connection's own (closed or reset before any byte came). c's read
// deadline is cleared on return.
func DetectPeek(c net.Conn, buf []byte, first, total time.Duration) (Result, error) {
	sc, ok := c.(syscall.Conn)
	if !ok || len(buf) == 0 {
		return Result{}, ErrNotSocket
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return Result{}, ErrNotSocket
	}
	start := time.Now()
	if err := c.SetReadDeadline(start.Add(first)); err != nil {
		return Result{}, err
	}
	defer c.SetReadDeadline(time.Time{})
	pk := peeker{rc: rc, buf: buf}
	pk.fn = pk.peek
	for {
		n, err := pk.more()
		if n > 0 && pk.seen == 0 {
			c.SetReadDeadline(start.Add(total))
		}
		b := buf[:n]
		if n > 0 {
			p, v := Sniff(b)
			switch {
			case v == Match && p == TLS:
				return pk.clientHello(b), nil
			case v == Match:
				return Result{Protocol: p}, nil
			case v == NoMatch:
				return Result{Protocol: TCP}, nil
			}
		}
		if err != nil {
			if n == 0 && !isTimeout(err) {
				return Result{}, err
			}
			// Silence within the first wait, undecided at the deadline,
			// or bytes and then the end: TCP.
			return Result{Protocol: TCP, Silent: n == 0}, nil
		}
		if n == len(buf) {
			return Result{Protocol: TCP}, nil
		}
		pk.seen = n
	}
}

// peeker peeks at a socket's receive queue, waiting in the netpoller
// (deadlines included) for more bytes than seen.
type peeker struct {
	rc   syscall.RawConn
	buf  []byte
	seen int // bytes peeked so far: wait for more than these

	n   int
	eof bool
	err syscall.Errno
	fn  func(fd uintptr) bool
}

// more waits until the queue holds more than seen bytes (or the peer ended
// its stream, or the deadline passed) and returns how many it holds, up to
// len(buf). Bytes and then the end of stream return io.EOF with them.
func (p *peeker) more() (int, error) {
	p.n, p.eof, p.err = 0, false, 0
	if err := p.rc.Read(p.fn); err != nil {
		return p.n, err // deadline, closed
	}
	switch {
	case p.err != 0:
		return p.n, p.err
	case p.eof:
		return p.n, io.EOF
	}
	return p.n, nil
}

// peek is the RawConn.Read callback: true when there is something new to
// look at. The netpoller is edge-triggered, so "false" waits for the next
// arrival (or the FIN, or the deadline) even while older bytes are queued;
// at most one wake-up is spurious (a readiness already signalled).
func (p *peeker) peek(fd uintptr) bool {
	for {
		n, _, err := syscall.Recvfrom(int(fd), p.buf, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch err {
		case nil:
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			p.err = err.(syscall.Errno)
			return true
		}
		p.n = n
		switch {
		case n == 0: // the end of stream, nothing before it
			p.eof = true
			return true
		case n > p.seen || n == len(p.buf):
			return true
		case peerFinished(int(fd)):
			p.eof = true
			return true
		}
		return false
	}
}

// clientHello peeks the whole first TLS record (as much of it as fits in
// buf, within the deadline already set) and parses its ClientHello.
func (p *peeker) clientHello(b []byte) Result {
	res := Result{Protocol: TLS}
	want := min(recordHeaderLen+(int(b[3])<<8|int(b[4])), len(p.buf))
	for len(b) < want {
		p.seen = len(b)
		n, err := p.more()
		b = p.buf[:n]
		if err != nil {
			break // on a timeout or the end, what came is parsed
		}
	}
	if h, ok := ParseClientHello(b); ok {
		res.SNI, res.ALPN = h.ServerName, h.ALPN
	}
	return res
}

// peerFinished reports whether the peer has sent its FIN (the socket is in
// CLOSE_WAIT): bytes still queued are then all there will be.
func peerFinished(fd int) bool {
	// struct tcp_info starts with the state byte; 104 bytes is the size of
	// its oldest layout, which every kernel fills.
	var info [104]byte
	l := uint32(len(info))
	_, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), syscall.IPPROTO_TCP, syscall.TCP_INFO,
		uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&l)), 0)
	const tcpCloseWait = 8
	return e == 0 && info[0] == tcpCloseWait
}
