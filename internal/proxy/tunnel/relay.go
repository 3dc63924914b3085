package tunnel

import (
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// relayBufSize is the copy buffer of each direction of a relay.
const relayBufSize = 32 << 10

var relayBufs = sync.Pool{New: func() any { b := make([]byte, relayBufSize); return &b }}

// relay is a TCP tunnel's two directions: client ↔ up. Each direction ends
// at its source's end of stream, which it passes on as a half-close
// (CloseWrite), so a client that shuts down its sending side still gets
// the answer; the relay ends when both did, when either fails, or when no
// byte went either way for idle. Then both connections are closed.
type relay struct {
	client net.Conn
	r      io.Reader // reads client: through a hijack's buffer, or client itself
	up     net.Conn
	idle   time.Duration
	last   atomic.Int64 // unix nanoseconds of the last byte either way

	closeOnce sync.Once
}

func newRelay(client net.Conn, r io.Reader, up net.Conn, idle time.Duration) *relay {
	rl := &relay{client: client, r: r, up: up, idle: idle}
	rl.last.Store(time.Now().UnixNano())
	return rl
}

// down copies up → client until up's end of stream or a failure.
func (rl *relay) down() (int64, error) { return rl.copy(rl.client, rl.up, rl.up) }

// upstream copies client → up, reading through r (for a hijacked tunnel,
// its buffer: the bytes sniffing peeked at come first).
func (rl *relay) upstream() (int64, error) { return rl.copy(rl.up, rl.client, rl.r) }

func (rl *relay) copy(dst, src net.Conn, r io.Reader) (int64, error) {
	bp := relayBufs.Get().(*[]byte)
	defer relayBufs.Put(bp)
	buf := *bp
	var n int64
	for {
		src.SetReadDeadline(time.Now().Add(rl.idle))
		nr, err := r.Read(buf)
		if nr > 0 {
			rl.touch()
			dst.SetWriteDeadline(time.Now().Add(rl.idle))
			nw, werr := dst.Write(buf[:nr])
			n += int64(nw)
			if werr != nil {
				return n, werr
			}
		}
		switch {
		case err == nil:
		case errors.Is(err, io.EOF):
			return n, closeWrite(dst)
		case isTimeout(err) && time.Since(time.Unix(0, rl.last.Load())) < rl.idle:
			// The other direction is busy: the tunnel is not idle.
		default:
			return n, err
		}
	}
}

// run runs both directions: up → client at once, client → up after before
// (sniffing, if not nil) returns, until both ended or either failed; then
// it closes both. err is the first failure, if any.
func (rl *relay) run(before func() error) (sent, received int64, err error) {
	recv := make(chan int64, 1)
	go func() {
		n, err := rl.down()
		if err != nil {
			rl.close()
		}
		recv <- n
	}()
	if before != nil {
		err = before()
	}
	if err == nil {
		sent, err = rl.upstream()
	}
	if err != nil {
		rl.close()
	}
	received = <-recv
	rl.close()
	return sent, received, err
}

// Relay relays client ↔ up until both directions ended, then closes both:
// each direction passes its source's end of stream on as a half-close
// (CloseWrite), so a client that shuts down its sending side still gets
// the answer; either side failing, or no byte either way for idle
// (DefaultIdleTimeout when zero), ends both. It returns the bytes relayed
// client → up (sent) and up → client (received), and the first failure
// (net.ErrClosed when the caller closed a connection to stop it).
func Relay(client, up net.Conn, idle time.Duration) (sent, received int64, err error) {
	if idle <= 0 {
		idle = DefaultIdleTimeout
	}
	return newRelay(client, client, up, idle).run(nil)
}

// touch marks activity.
func (rl *relay) touch() { rl.last.Store(time.Now().UnixNano()) }

// close ends both directions.
func (rl *relay) close() {
	rl.closeOnce.Do(func() {
		rl.client.Close()
		rl.up.Close()
	})
}

// closeWrite half-closes c when it can (a TCP connection, or one that
// wraps it), and closes it otherwise.
func closeWrite(c net.Conn) error {
	if tc, ok := c.(*conn); ok {
		c = tc.Conn
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}

func isTimeout(err error) bool {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
