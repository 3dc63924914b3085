//go:build linux

// Package sockio reads and writes the proxy's TCP connections with raw
// system calls, still waiting for readiness through Go's netpoller.
//
// Why: net.Conn's Read and Write go through syscall.Syscall, whose
// entersyscall/exitsyscall tell the scheduler the goroutine may block.
// On a proxy pinned to one core (GOMAXPROCS 1) that costs more than the
// I/O saves: a loopback write runs the receiver's TCP path and wake-up
// inline and lasts long enough for sysmon to take the P away and hand it
// to another thread (a futex wake, a context switch, and another to get
// it back), and every syscall after an idle moment wakes sysmon itself.
// At 1,000 requests/s strace counted 2.7 nanosleeps and 1.1 futex calls
// per request on top of 5 socket calls, and perf put 15-20 % of the
// proxy's CPU in that scheduling. The sockets are non-blocking, so a raw
// read or write never blocks: EAGAIN hands the wait to the netpoller
// through syscall.RawConn, deadlines and Close included, exactly as
// net.Conn does.
//
// The race detector does not see a raw system call's memory accesses, so
// under -race (sockio_race.go) the reads and writes go through
// syscall.Read and syscall.Write instead, which tell it about them.
package sockio

import (
	"io"
	"net"
	"sync"
	"syscall"
	"unsafe"
)

// Conn is a net.Conn whose Read and Write use raw system calls. Like a
// net.Conn, it is safe for concurrent use: Reads are serialised by rmu and
// Writes by wmu, as net.Conn serialises them, so a Read and a Write still
// run at the same time. The locks cover the whole call, not only the
// system call: a call's state lives in fields shared by every call of its
// kind, set before RawConn.Read/Write and read after it. (net/http does
// overlap two Writes: on a 101 upgrade the Transport's writeLoop can still
// be returning from writing the request when ReverseProxy starts copying
// the client's bytes to the connection.)
type Conn struct {
	net.Conn
	rc syscall.RawConn

	// Read's state, used by readFn (a method value made once, so that a
	// Read allocates nothing); guarded by rmu.
	rmu    sync.Mutex
	rbuf   []byte
	rn     int
	rerr   syscall.Errno
	readFn func(fd uintptr) bool

	// Write's state, used by writeFn; guarded by wmu.
	wmu     sync.Mutex
	wbuf    []byte
	wn      int
	werr    syscall.Errno
	writeFn func(fd uintptr) bool
}

// Wrap returns c reading and writing with raw system calls when it is a
// socket (a *net.TCPConn or *net.UnixConn), else c itself.
func Wrap(c net.Conn) net.Conn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return c
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return c
	}
	s := &Conn{Conn: c, rc: rc}
	s.readFn = s.read
	s.writeFn = s.write
	return s
}

// Read reads into p, waiting in the netpoller while there is nothing to
// read.
func (c *Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	c.rbuf, c.rn, c.rerr = p, 0, 0
	err := c.rc.Read(c.readFn)
	c.rbuf = nil
	if err != nil {
		return 0, err // deadline, closed: already a *net.OpError
	}
	if c.rerr != 0 {
		return 0, c.opError("read", c.rerr)
	}
	if c.rn == 0 {
		return 0, io.EOF
	}
	return c.rn, nil
}

// read is the RawConn.Read callback: false means "not ready, wait".
func (c *Conn) read(fd uintptr) bool {
	for {
		n, e := sysRead(fd, c.rbuf)
		switch e {
		case 0:
			c.rn = n
			return true
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		default:
			c.rerr = e
			return true
		}
	}
}

// Write writes all of p, waiting in the netpoller while the socket's send
// buffer is full.
func (c *Conn) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.wbuf, c.wn, c.werr = p, 0, 0
	err := c.rc.Write(c.writeFn)
	n := c.wn
	c.wbuf = nil
	if err != nil {
		return n, err
	}
	if c.werr != 0 {
		return n, c.opError("write", c.werr)
	}
	return n, nil
}

// write is the RawConn.Write callback: it writes until all is written
// (true), an error (true), or the buffer is full (false: wait).
func (c *Conn) write(fd uintptr) bool {
	for c.wn < len(c.wbuf) {
		rest := c.wbuf[c.wn:]
		n, e := sysWrite(fd, rest)
		switch e {
		case 0:
			c.wn += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			c.werr = e
			return true
		}
	}
	return true
}

// CloseWrite shuts down the writing side when the connection can (a TCP
// connection): net/http uses it to close gracefully.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

func (c *Conn) opError(op string, e syscall.Errno) error {
	return &net.OpError{Op: op, Net: c.LocalAddr().Network(), Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: e}
}

// PeerClosed reports, without waiting, whether the peer of c (a socket
// connection: a *net.TCPConn, or a Conn from Wrap) has closed it or reset
// it: a recv(MSG_PEEK|MSG_DONTWAIT) that finds the end of the stream.
// Bytes waiting to be read (a pipelined request) mean it is still there.
// A connection that is not a socket reports false.
//
// The peek goes through RawConn.Control, not RawConn.Read: Read would
// fail at once when c's read deadline has passed (a handler running longer
// than the idle timeout set before its request was read), reporting a
// client that is still there as gone, and would wait for a Read in
// progress on another goroutine.
func PeerClosed(c net.Conn) bool {
	if w, ok := c.(*Conn); ok {
		c = w.Conn
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var buf [1]byte
	var n uintptr
	var e syscall.Errno
	if err := rc.Control(func(fd uintptr) {
		for {
			n, _, e = syscall.RawSyscall6(syscall.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&buf[0])), 1,
				syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
			if e != syscall.EINTR {
				return
			}
		}
	}); err != nil {
		return true // closed here
	}
	switch e {
	case 0:
		return n == 0
	case syscall.EAGAIN:
		return false
	default:
		return true // ECONNRESET and the like
	}
}
