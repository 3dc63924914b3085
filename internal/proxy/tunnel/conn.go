package tunnel

import (
	"bufio"
	"net"
	"sync"
	"sync/atomic"
)

// conn is a hijacked CONNECT connection. Reads go through the bufio.Reader
// of the hijack, which holds the bytes sniffing peeked at (and any the
// client sent right after its CONNECT).
type conn struct {
	net.Conn
	r      *bufio.Reader
	target string
	server *Server

	closeOnce sync.Once
	closeErr  error
	closed    chan struct{} // closed by Close; ends the one-connection listener
}

func newConn(raw net.Conn, r *bufio.Reader, target string, s *Server) *conn {
	return &conn{Conn: raw, r: r, target: target, server: s, closed: make(chan struct{})}
}

func (c *conn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *conn) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.Conn.Close()
		close(c.closed)
		c.server.conns.Untrack(c)
	})
	return c.closeErr
}

// oneConnListener hands one connection to http.Server.Serve, then reports
// itself closed once that connection is, so Serve returns.
type oneConnListener struct {
	c        *conn
	accepted atomic.Bool
	stop     chan struct{}
	stopOnce sync.Once
}

func newOneConnListener(c *conn) *oneConnListener {
	return &oneConnListener{c: c, stop: make(chan struct{})}
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	if l.accepted.CompareAndSwap(false, true) {
		return l.c, nil
	}
	select {
	case <-l.c.closed:
	case <-l.stop:
	}
	return nil, net.ErrClosed
}

// Close stops Accept; the connection already handed out stays open (the
// http.Server owns it now).
func (l *oneConnListener) Close() error {
	l.stopOnce.Do(func() { close(l.stop) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return l.c.LocalAddr() }
