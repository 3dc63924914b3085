//go:build unix

package forward

import (
	"syscall"
	"time"
	"unsafe"
)

// alive reports whether a pooled connection can carry a request: the
// instance has not closed it (a FIN or RST has not arrived) and has sent
// nothing unasked (which would be read as the next answer). It costs one
// non-blocking recv(MSG_PEEK), where http.Transport keeps a goroutine
// blocked in a read on every idle connection. A connection idle for less
// than probeAfter is not probed (see h1Pool).
func (c *h1Conn) alive(probeAfter time.Duration) bool {
	if c.br.Buffered() > 0 {
		return false
	}
	if c.raw == nil || time.Since(c.idleSince) < probeAfter {
		return true
	}
	c.probeN, c.probeErr = 0, nil
	if err := c.raw.Read(c.probeFn); err != nil {
		return false
	}
	// EAGAIN: nothing to read, still open. n == 0 without error: closed by
	// the instance. n > 0: unasked bytes.
	return c.probeErr == syscall.EAGAIN || c.probeErr == syscall.EWOULDBLOCK
}

// probe is the RawConn.Read callback of alive; it never waits. A raw
// system call, for the reason package sockio gives.
func (c *h1Conn) probe(fd uintptr) bool {
	n, _, e := syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&c.probeBuf[0])), 1,
		syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
	c.probeN, c.probeErr = int(n), nil
	if e != 0 {
		c.probeErr = e
	}
	return true
}
