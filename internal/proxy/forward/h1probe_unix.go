//go:build unix

package forward

import "syscall"

// alive reports whether a pooled connection can carry a request: the
// instance has not closed it (a FIN or RST has not arrived) and has sent
// nothing unasked (which would be read as the next answer). It costs one
// non-blocking recv(MSG_PEEK), where http.Transport keeps a goroutine
// blocked in a read on every idle connection.
func (c *h1Conn) alive() bool {
	if c.br.Buffered() > 0 {
		return false
	}
	if c.raw == nil {
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

// probe is the RawConn.Read callback of alive; it never waits.
func (c *h1Conn) probe(fd uintptr) bool {
	c.probeN, _, c.probeErr = syscall.Recvfrom(int(fd), c.probeBuf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	return true
}
