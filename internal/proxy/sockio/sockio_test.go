//go:build linux

package sockio

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"trellis.dev/trellis/internal/testutil"
)

// safety bounds every wait: reached, it fails a test that would otherwise
// hang; no test relies on it passing.
const safety = 10 * time.Second

// tcpPair returns the two ends of a loopback TCP connection, closed when
// the test ends.
func tcpPair(t *testing.T) (a, b *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	l := <-accepted
	if l == nil {
		t.Fatal("accept failed")
	}
	for _, c := range []net.Conn{d, l} {
		c.SetDeadline(time.Now().Add(safety))
		t.Cleanup(func() { c.Close() })
	}
	return d.(*net.TCPConn), l.(*net.TCPConn)
}

func wrap(t *testing.T, c net.Conn) *Conn {
	t.Helper()
	w, ok := Wrap(c).(*Conn)
	if !ok {
		t.Fatalf("Wrap(%T) = %T, want *Conn", c, Wrap(c))
	}
	return w
}

func TestWrap(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if got := Wrap(a); got != a {
		t.Fatalf("Wrap(net.Pipe end) = %T, want it unchanged", got)
	}
	tc, _ := tcpPair(t)
	w := wrap(t, tc)
	if w.LocalAddr().String() != tc.LocalAddr().String() || w.RemoteAddr().String() != tc.RemoteAddr().String() {
		t.Fatal("addresses differ from the wrapped connection's")
	}
}

func TestReadWrite(t *testing.T) {
	a, b := tcpPair(t)
	w := wrap(t, a)
	if n, err := w.Write([]byte("ping")); n != 4 || err != nil {
		t.Fatalf("Write: %d %v", n, err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(b, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("peer read %q %v", buf, err)
	}
	if _, err := b.Write([]byte("pong!")); err != nil {
		t.Fatal(err)
	}
	buf = make([]byte, 16)
	n, err := io.ReadAtLeast(w, buf, 5)
	if err != nil || string(buf[:n]) != "pong!" {
		t.Fatalf("Read %q %v", buf[:n], err)
	}
	// Empty reads and writes do nothing and do not block.
	if n, err := w.Read(nil); n != 0 || err != nil {
		t.Fatalf("Read(nil): %d %v", n, err)
	}
	if n, err := w.Write(nil); n != 0 || err != nil {
		t.Fatalf("Write(nil): %d %v", n, err)
	}
	// A read smaller than what is there takes part of it.
	b.Write([]byte("abcdef"))
	small := make([]byte, 2)
	if _, err := io.ReadFull(w, small); err != nil || string(small) != "ab" {
		t.Fatalf("%q %v", small, err)
	}
	rest := make([]byte, 4)
	if _, err := io.ReadFull(w, rest); err != nil || string(rest) != "cdef" {
		t.Fatalf("%q %v", rest, err)
	}
}

func TestUnixConn(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c)
	}()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(safety))
	w := wrap(t, c)
	w.Write([]byte("echo"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(w, buf); err != nil || string(buf) != "echo" {
		t.Fatalf("%q %v", buf, err)
	}
}

// TestLargeTransfer moves several MiB each way through small socket
// buffers, so that writes fill them and wait for room (EAGAIN) and reads
// wait for data, many times.
func TestLargeTransfer(t *testing.T) {
	a, b := tcpPair(t)
	for _, c := range []*net.TCPConn{a, b} {
		c.SetReadBuffer(16 << 10)
		c.SetWriteBuffer(16 << 10)
	}
	wa, wb := wrap(t, a), wrap(t, b)
	data := make([]byte, 6<<20)
	rng := rand.NewChaCha8([32]byte{1})
	rng.Read(data)
	want := sha256.Sum256(data)

	for _, dir := range []struct {
		name string
		w, r net.Conn
	}{{"a to b", wa, wb}, {"b to a", wb, wa}} {
		t.Run(dir.name, func(t *testing.T) {
			written := make(chan error, 1)
			go func() {
				n, err := dir.w.Write(data) // one call: all of it or an error
				if err == nil && n != len(data) {
					err = io.ErrShortWrite
				}
				written <- err
			}()
			h := sha256.New()
			buf := make([]byte, 7000) // odd size: reads end anywhere
			got := 0
			for got < len(data) {
				n, err := dir.r.Read(buf)
				h.Write(buf[:n])
				got += n
				if err != nil {
					t.Fatalf("read after %d bytes: %v", got, err)
				}
			}
			if err := <-written; err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(h.Sum(nil), want[:]) {
				t.Fatal("data changed on the way")
			}
		})
	}
}

// TestConcurrentReadWrite: one Read and one Write at a time concurrently,
// as a net.Conn allows (for the race detector).
func TestConcurrentReadWrite(t *testing.T) {
	a, b := tcpPair(t)
	w := wrap(t, a)
	go io.Copy(b, b) // echo
	const total = 1 << 20
	done := make(chan error, 1)
	go func() {
		chunk := bytes.Repeat([]byte("0123456789abcdef"), 256)
		for sent := 0; sent < total; sent += len(chunk) {
			if _, err := w.Write(chunk); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	n, err := io.Copy(io.Discard, io.LimitReader(w, total))
	if err != nil || n != total {
		t.Fatalf("read %d: %v", n, err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestEOF(t *testing.T) {
	a, b := tcpPair(t)
	w := wrap(t, a)
	b.Write([]byte("last words"))
	b.Close()
	got, err := io.ReadAll(w) // ReadAll stops at io.EOF, and only there
	if err != nil || string(got) != "last words" {
		t.Fatalf("%q %v", got, err)
	}
	if n, err := w.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("read after EOF: %d %v", n, err)
	}
}

func TestHalfClose(t *testing.T) {
	a, b := tcpPair(t)
	w := wrap(t, a)
	b.CloseWrite()
	if n, err := w.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("read: %d %v", n, err)
	}
	// Writing still works after the peer's half-close.
	if _, err := w.Write([]byte("still here")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := io.ReadFull(b, buf); err != nil || string(buf) != "still here" {
		t.Fatalf("%q %v", buf, err)
	}
}

// reset closes c with an RST instead of a FIN.
func reset(t *testing.T, c *net.TCPConn) {
	t.Helper()
	if err := c.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	c.Close()
}

func TestConnectionReset(t *testing.T) {
	a, b := tcpPair(t)
	w := wrap(t, a)
	reset(t, b)
	_, err := w.Read(make([]byte, 8))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("Read: %v, want ECONNRESET", err)
	}
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "read" || op.Addr.String() != a.RemoteAddr().String() {
		t.Fatalf("Read: %#v, want a *net.OpError for read", err)
	}

	// Writes fail too once the reset is known.
	a, b = tcpPair(t)
	w = wrap(t, a)
	reset(t, b)
	testutil.Eventually(t, safety, "a write fails after the reset", func() bool {
		_, err := w.Write([]byte("x"))
		if err != nil && !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("Write: %v", err)
		}
		return err != nil
	})
}

func TestReadDeadline(t *testing.T) {
	a, _ := tcpPair(t)
	w := wrap(t, a)
	started := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		close(started)
		_, err := w.Read(make([]byte, 8)) // nothing comes
		result <- err
	}()
	<-started
	w.SetReadDeadline(time.Unix(1, 0))
	err := <-result
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read: %v, want a deadline error", err)
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("Read: %v is not a net.Error timeout", err)
	}
	// A deadline already past fails at once; a cleared one reads again.
	if _, err := w.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read: %v", err)
	}
}

func TestReadAfterDeadlineCleared(t *testing.T) {
	a, b := tcpPair(t)
	w := wrap(t, a)
	w.SetReadDeadline(time.Unix(1, 0))
	if _, err := w.Read(make([]byte, 8)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read: %v", err)
	}
	w.SetReadDeadline(time.Time{})
	b.Write([]byte("ok"))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(w, buf); err != nil || string(buf) != "ok" {
		t.Fatalf("%q %v", buf, err)
	}
}

func TestWriteDeadline(t *testing.T) {
	a, _ := tcpPair(t) // the peer never reads
	a.SetWriteBuffer(16 << 10)
	w := wrap(t, a)
	w.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
	n, err := w.Write(make([]byte, 64<<20)) // more than any socket buffer
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Write: %d %v, want a deadline error", n, err)
	}
	if n < 0 || n >= 64<<20 {
		t.Fatalf("Write reported %d bytes written", n)
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	a, _ := tcpPair(t)
	w := wrap(t, a)
	started := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		close(started)
		_, err := w.Read(make([]byte, 8))
		result <- err
	}()
	<-started
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-result; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read: %v, want net.ErrClosed", err)
	}
	if _, err := w.Write([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
}

func TestPeerClosed(t *testing.T) {
	a, b := tcpPair(t)
	if PeerClosed(a) {
		t.Fatal("open connection reported closed")
	}
	w := wrap(t, a)
	if PeerClosed(w) {
		t.Fatal("open connection (wrapped) reported closed")
	}
	// Bytes waiting to be read mean the peer is there, even after it
	// closed: they may be a request to answer. And they stay unread.
	b.Write([]byte("pipelined"))
	testutil.Eventually(t, safety, "the bytes arrive", func() bool { return readable(t, a) })
	if PeerClosed(w) {
		t.Fatal("connection with data waiting reported closed")
	}
	buf := make([]byte, 9)
	if _, err := io.ReadFull(w, buf); err != nil || string(buf) != "pipelined" {
		t.Fatalf("data consumed by PeerClosed: %q %v", buf, err)
	}

	b.Close()
	testutil.Eventually(t, safety, "peer close seen", func() bool { return PeerClosed(w) })

	// The read deadline does not matter: the question is the peer's.
	a, b = tcpPair(t)
	a.SetReadDeadline(time.Unix(1, 0))
	if PeerClosed(a) {
		t.Fatal("open connection reported closed after its read deadline passed")
	}
	a.SetReadDeadline(time.Time{})

	// A reset peer is gone too.
	reset(t, b)
	testutil.Eventually(t, safety, "peer reset seen", func() bool { return PeerClosed(a) })

	// Closed here: nothing to ask.
	c, _ := tcpPair(t)
	c.Close()
	if !PeerClosed(c) {
		t.Fatal("closed connection reported open")
	}

	p, q := net.Pipe()
	defer p.Close()
	defer q.Close()
	if PeerClosed(p) {
		t.Fatal("a pipe is not a socket: false")
	}
}

// readable reports whether c has bytes waiting to be read (FIONREAD).
func readable(t *testing.T, c *net.TCPConn) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var n int
	var e error
	raw.Control(func(fd uintptr) {
		var v int32
		if _, _, errno := syscall.Syscall(syscall.SYS_IOCTL, fd, syscall.TIOCINQ, uintptr(unsafe.Pointer(&v))); errno != 0 {
			e = errno
		}
		n = int(v)
	})
	if e != nil {
		t.Fatal(e)
	}
	return n > 0
}

// Writes from several goroutines at once (net/http overlaps two on an
// upgrade) each go out whole: no byte lost or doubled. Reads and writes
// keep their state per Conn, so they are serialised per direction.
func TestConcurrentWrites(t *testing.T) {
	a, b := tcpPair(t)
	w := wrap(t, a)
	const writers, per, size = 4, 2000, 64
	got := make(chan int64, 1)
	go func() { n, _ := io.Copy(io.Discard, b); got <- n }()
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			chunk := bytes.Repeat([]byte{byte('a' + i)}, size)
			for range per {
				if n, err := w.Write(chunk); n != size || err != nil {
					t.Errorf("Write = %d, %v", n, err)
					return
				}
			}
		})
	}
	wg.Wait()
	a.Close()
	if n := <-got; n != writers*per*size {
		t.Fatalf("peer read %d bytes, want %d", n, writers*per*size)
	}
}
