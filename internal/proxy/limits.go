package proxy

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"trellis.dev/trellis/internal/proxy/h1server"
	"trellis.dev/trellis/internal/proxy/mesherr"
	"trellis.dev/trellis/internal/proxy/stats"
)

// limitLogInterval: a listener logs an overload or a descriptor shortage at
// most once per interval, with the count since its last line.
const limitLogInterval = 10 * time.Second

// maxRefusing bounds the overload answers in progress on one listener (each
// holds its connection up to 1.5 s: h1server.Refuse); beyond it, a refused
// connection is closed without an answer (still counted).
const maxRefusing = 64

// limitListener caps the connections open at once on one traffic listener,
// and counts and logs what Accept cannot take:
//
//   - Over the cap, a new connection is answered "503 overloaded"
//     (x-trellis-error: overloaded, Connection: close) and closed, off the
//     accept loop; the connections already open go on being served.
//   - EMFILE/ENFILE from Accept (the process, or the system, is out of
//     file descriptors) is counted and logged, then returned: h1server
//     backs off (5 ms doubling to 1 s) and accepts again.
//
// A connection counts from Accept until its Close, whoever owns it then
// (h1server, net/http after a hand-off, a CONNECT tunnel).
type limitListener struct {
	net.Listener
	name string
	max  int64
	open atomic.Int64

	overloaded, fdExhausted prometheus.Counter
	overloadLog, fdLog      *intervalLog

	refusing chan struct{} // semaphore of the answers in progress
}

func newLimitListener(ln net.Listener, name string, max int, m *stats.Metrics, log *slog.Logger) *limitListener {
	l := &limitListener{
		Listener:    ln,
		name:        name,
		max:         int64(max),
		overloaded:  m.ConnectionsRejected(name, stats.ReasonOverloaded),
		fdExhausted: m.ConnectionsRejected(name, stats.ReasonFDExhausted),
		refusing:    make(chan struct{}, maxRefusing),
	}
	log = log.With("listener", name)
	l.overloadLog = &intervalLog{interval: limitLogInterval, log: func(n int, err error) {
		log.Warn("connection cap reached: new connections answered 503 overloaded",
			"max_connections", max, "refused", n)
	}}
	l.fdLog = &intervalLog{interval: limitLogInterval, log: func(n int, err error) {
		log.Error("out of file descriptors: accept fails, backing off", "error", err, "failures", n)
	}}
	m.TrackOpenConnections(name, l.open.Load)
	return l
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if isFDExhausted(err) {
				l.fdExhausted.Inc()
				l.fdLog.event(err)
			}
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			l.refuse(c)
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok {
			// Keeps *net.TCPConn's methods (SyscallConn for sockio,
			// CloseWrite, ReadFrom) by embedding it.
			return &countedTCPConn{TCPConn: tc, l: l}, nil
		}
		return &countedConn{Conn: c, l: l}, nil
	}
}

// refuse answers c "503 overloaded" and closes it, in its own goroutine.
func (l *limitListener) refuse(c net.Conn) {
	l.overloaded.Inc()
	l.overloadLog.event(nil)
	select {
	case l.refusing <- struct{}{}:
	default:
		c.Close()
		return
	}
	go func() {
		defer func() { <-l.refusing }()
		defer c.Close()
		h1server.Refuse(c, mesherr.New(mesherr.Overloaded,
			"the %s listener has %d connections open, its limit", l.name, l.max))
	}()
}

func (l *limitListener) release() { l.open.Add(-1) }

// countedTCPConn and countedConn give back their place under the cap on
// their first Close.
type countedTCPConn struct {
	*net.TCPConn
	l      *limitListener
	closed atomic.Bool
}

func (c *countedTCPConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.release()
	}
	return c.TCPConn.Close()
}

type countedConn struct {
	net.Conn
	l      *limitListener
	closed atomic.Bool
}

func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.release()
	}
	return c.Conn.Close()
}

// isFDExhausted reports whether err is EMFILE (the process is out of file
// descriptors) or ENFILE (the system is).
func isFDExhausted(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE)
}

// intervalLog logs an event at most once per interval: the first event at
// once, later ones at the first event after the interval, with how many
// there were since the last line (the last ones of a burst are logged with
// the next burst, and counted in the metrics meanwhile).
type intervalLog struct {
	interval time.Duration
	log      func(n int, err error)

	mu     sync.Mutex
	last   time.Time // of the last line
	unsaid int       // events since
}

func (l *intervalLog) event(err error) {
	l.mu.Lock()
	l.unsaid++
	now := time.Now()
	if !l.last.IsZero() && now.Sub(l.last) < l.interval {
		l.mu.Unlock()
		return
	}
	n := l.unsaid
	l.last, l.unsaid = now, 0
	l.mu.Unlock()
	l.log(n, err)
}
