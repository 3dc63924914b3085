package forward

import (
	"bufio"
	"context"
	"errors"
	"log/slog"
	"math"
	"net"
	"sync"
	"syscall"
	"time"
	"trellis.dev/trellis/internal/proxy/sockio"
)

// maxResponseHeaderBytes bounds a response head, as
// http.Transport.MaxResponseHeaderBytes' default does.
const maxResponseHeaderBytes = 10 << 20

const noLimit = math.MaxInt64

// h1Pool keeps the fast path's keep-alive connections, by instance
// address, as http.Transport's pool does for the other path: at most
// maxIdleConnsPerHost idle per address, each closed after idleConnTimeout
// unused. Being keyed by address, it outlives config snapshots.
//
// http.Transport has a goroutine reading every idle connection, so that it
// notices at once when the instance closes one. The fast path has none
// (that hand-off is what it saves); instead a connection taken from the
// pool is probed with a non-blocking peek, which sees a close that has
// arrived, and exchange sends a replayable request again when the close
// crosses the request on the wire. The probe is a system call per request
// at full speed, so a connection back in the pool for less than
// probeAfter is not probed: an instance closes a keep-alive connection
// after seconds idle (or when it shuts down, which a request may cross
// anyway), not within milliseconds of answering on it.
type h1Pool struct {
	dialer       *net.Dialer
	maxFallbacks int
	log          *slog.Logger
	probeAfter   time.Duration

	mu      sync.Mutex
	idle    map[string][]*h1Conn // by address; the most recently used last
	pruning bool                 // a prune is scheduled
}

func newH1Pool(maxFallbacks int, log *slog.Logger) *h1Pool {
	return &h1Pool{
		dialer:       &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second},
		maxFallbacks: maxFallbacks,
		log:          log,
		probeAfter:   100 * time.Millisecond,
		idle:         map[string][]*h1Conn{},
	}
}

// get returns an open connection to t.Addr, pooled or new. When connecting
// fails it tries t's fallbacks, as Transport.RoundTrip does, with the same
// errors.
func (p *h1Pool) get(ctx context.Context, t *Target) (*h1Conn, error) {
	addr := t.Addr
	var fallbacks []string
	for attempts := 1; ; attempts++ {
		if c := p.takeIdle(addr); c != nil {
			return c, nil
		}
		c, err := p.dial(ctx, addr)
		if err == nil {
			return c, nil
		}
		if !isConnectError(err) || ctx.Err() != nil {
			return nil, err
		}
		t.connectFailedAt(addr)
		if attempts == 1 && t.Fallbacks != nil {
			fallbacks = t.Fallbacks.Instances()
			if len(fallbacks) > p.maxFallbacks {
				fallbacks = fallbacks[:p.maxFallbacks]
			}
		}
		if len(fallbacks) == 0 {
			return nil, connectFailed(err, t, attempts, addr)
		}
		p.log.Debug("connect failed, trying another instance", "addr", addr, "next", fallbacks[0], "error", rootCause(err))
		addr, fallbacks = fallbacks[0], fallbacks[1:]
	}
}

// takeIdle pops the most recently used idle connection to addr that is
// still open.
func (p *h1Pool) takeIdle(addr string) *h1Conn {
	for {
		p.mu.Lock()
		l := p.idle[addr]
		if len(l) == 0 {
			p.mu.Unlock()
			return nil
		}
		c := l[len(l)-1]
		l[len(l)-1] = nil
		p.idle[addr] = l[:len(l)-1]
		p.mu.Unlock()
		if c.alive(p.probeAfter) {
			c.reused = true
			return c
		}
		c.close()
	}
}

func (p *h1Pool) dial(ctx context.Context, addr string) (*h1Conn, error) {
	nc, err := p.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return newH1Conn(nc, addr), nil
}

// put keeps c for the next request to its address.
func (p *h1Pool) put(c *h1Conn) {
	c.idleSince = time.Now()
	p.mu.Lock()
	l := p.idle[c.addr]
	if len(l) >= maxIdleConnsPerHost {
		p.mu.Unlock()
		c.close()
		return
	}
	p.idle[c.addr] = append(l, c)
	if !p.pruning {
		p.pruning = true
		time.AfterFunc(idleConnTimeout/2, p.prune)
	}
	p.mu.Unlock()
}

// prune closes the connections idle for longer than idleConnTimeout, and
// runs again while any are left.
func (p *h1Pool) prune() {
	cutoff := time.Now().Add(-idleConnTimeout)
	var old []*h1Conn
	p.mu.Lock()
	for addr, l := range p.idle {
		n := 0 // oldest first: l is in the order the connections were put
		for n < len(l) && l[n].idleSince.Before(cutoff) {
			n++
		}
		old = append(old, l[:n]...)
		if n == len(l) {
			delete(p.idle, addr)
		} else if n > 0 {
			p.idle[addr] = append([]*h1Conn(nil), l[n:]...)
		}
	}
	p.pruning = len(p.idle) > 0
	if p.pruning {
		time.AfterFunc(idleConnTimeout/2, p.prune)
	}
	p.mu.Unlock()
	for _, c := range old {
		c.close()
	}
}

// CloseIdleConnections closes every idle connection.
func (p *h1Pool) CloseIdleConnections() {
	p.mu.Lock()
	idle := p.idle
	p.idle = map[string][]*h1Conn{}
	p.mu.Unlock()
	for _, l := range idle {
		for _, c := range l {
			c.close()
		}
	}
}

// h1Conn is one keep-alive connection to an instance.
type h1Conn struct {
	conn      net.Conn
	raw       syscall.RawConn // for the probe; nil when the conn has none
	addr      string
	br        *bufio.Reader // reads through limit
	bw        *bufio.Writer
	reused    bool // taken from the pool, not dialled for this request
	idleSince time.Time
	limit     int64 // bytes the next reads may return (the response head's bound)

	// stopAbort unregisters the request's context.AfterFunc(abortFn).
	// abortFn and probeFn are method values made once per connection, not
	// per request.
	stopAbort func() bool
	abortFn   func()
	probeFn   func(fd uintptr) bool
	probeN    int
	probeErr  error
	probeBuf  [1]byte
}

func newH1Conn(nc net.Conn, addr string) *h1Conn {
	var raw syscall.RawConn
	if sc, ok := nc.(syscall.Conn); ok {
		raw, _ = sc.SyscallConn()
	}
	c := &h1Conn{conn: sockio.Wrap(nc), raw: raw, addr: addr, limit: noLimit}
	c.br = bufio.NewReaderSize(limitedConn{c}, 4<<10)
	c.bw = bufio.NewWriterSize(c.conn, 4<<10)
	c.abortFn = c.abort
	c.probeFn = c.probe
	return c
}

// limitedConn reads c.conn, failing once c.limit bytes were read.
type limitedConn struct{ c *h1Conn }

func (l limitedConn) Read(p []byte) (int, error) {
	c := l.c
	if c.limit <= 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > c.limit {
		p = p[:c.limit]
	}
	n, err := c.conn.Read(p)
	if c.limit != noLimit {
		c.limit -= int64(n)
	}
	return n, err
}

var errHeadTooLarge = errors.New("response head larger than 10 MiB")

func (c *h1Conn) abort() { _ = c.conn.SetDeadline(aLongTimeAgo) }

// done ends the request's hold on c: it unregisters the abort hook and
// reports whether the hook had not fired (c's deadline is untouched).
func (c *h1Conn) done() bool {
	if c.stopAbort == nil {
		return true
	}
	stopped := c.stopAbort()
	c.stopAbort = nil
	return stopped
}

func (c *h1Conn) close() { _ = c.conn.Close() }
