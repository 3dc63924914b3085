package proxy

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"trellis.dev/trellis/internal/proxy/h1server"
	"trellis.dev/trellis/internal/proxy/sniff"
	"trellis.dev/trellis/internal/proxy/stats"
	"trellis.dev/trellis/internal/proxy/tunnel"
)

// The app protocols a sidecar may declare (Config.AppProtocol,
// --app-protocol). Empty means detect.
const (
	AppProtocolHTTP  = "http"
	AppProtocolHTTP2 = "http2"
	AppProtocolGRPC  = "grpc"
	AppProtocolTCP   = "tcp"
	AppProtocolTLS   = "tls"
)

// AppProtocols lists the declarable app protocols.
var AppProtocols = []string{AppProtocolHTTP, AppProtocolHTTP2, AppProtocolGRPC, AppProtocolTCP, AppProtocolTLS}

func validAppProtocol(p string) bool { return p == "" || slices.Contains(AppProtocols, p) }

const (
	// InboundFirstByteWait is how long the inbound listener waits for a
	// peer's first bytes before it takes the connection for a protocol
	// where the server speaks first (MySQL, SMTP, …) and relays it to the
	// app as TCP. Longer than the outbound side's tunnel.FirstByteWait
	// (200 ms): the bytes come from another host, after the peer
	// sidecar's own connect, and a client-first connection taken for TCP
	// by mistake loses the mesh's HTTP handling (routing headers,
	// per-request metrics), which costs more than 100 ms more on a
	// server-first greeting. HTTP, h2 and TLS clients send at once: this
	// wait only ever delays server-first protocols, once per connection.
	// Declare the protocol (--app-protocol tcp) to skip it.
	InboundFirstByteWait = 300 * time.Millisecond
	// inboundSniffTimeout bounds the wait for enough bytes to decide once
	// some came; still undecided then is TCP.
	inboundSniffTimeout = time.Second
	// inboundPeekSize is how many bytes detection looks at, at most: an
	// HTTP request line or a ClientHello fits.
	inboundPeekSize = 4 << 10
	// appDialTimeout bounds a relay's connect to the app on loopback.
	appDialTimeout = time.Second
)

var peekBufs = sync.Pool{New: func() any { b := make([]byte, inboundPeekSize); return &b }}

// inboundServer serves the inbound listener. Each connection is classified
// before anything reads it: HTTP/1.x and h2c go to the HTTP server (h1server,
// then net/http for what it hands off), untouched — detection only peeks at
// the socket's queue (sniff.DetectPeek), so h1server reads every byte from
// the socket itself, with its raw system calls, as without detection; TLS,
// bytes that are not HTTP, and silence (a server-first protocol) are
// relayed to the app as TCP. A declared app protocol skips detection:
// http, http2 and grpc serve HTTP only (h1server on the listener itself, as
// before detection existed); tcp and tls relay every connection.
type inboundServer struct {
	http     *h1server.Server
	declared string // Config.AppProtocol
	app      string // 127.0.0.1:AppPort
	idle     time.Duration
	metrics  *stats.Metrics
	log      *slog.Logger

	conns tunnel.Tracker[net.Conn] // being classified or relayed, and the relays running
}

func (p *Proxy) newInboundServer(h *h1server.Server) *inboundServer {
	return &inboundServer{http: h, declared: p.cfg.AppProtocol, app: appAddr(&p.cfg),
		idle: tunnel.DefaultIdleTimeout, metrics: p.metrics, log: p.log.With("listener", stats.Inbound)}
}

func appAddr(c *Config) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(c.AppPort)) }

// opaque reports whether every connection is relayed without detection.
func (s *inboundServer) opaque() bool {
	return s.declared == AppProtocolTCP || s.declared == AppProtocolTLS
}

// Serve serves ln until Shutdown or Close.
func (s *inboundServer) Serve(ln net.Listener) error {
	if s.declared != "" && !s.opaque() {
		return s.http.Serve(ln) // declared HTTP: exactly as without detection
	}
	return s.http.Serve(newDetectListener(ln, s))
}

// serveConn classifies c and hands it on: to the HTTP server through l, or
// to a relay to the app.
func (s *inboundServer) serveConn(l *detectListener, c net.Conn) {
	if !s.conns.Track(c) {
		c.Close()
		return
	}
	defer s.conns.Untrack(c)
	if s.opaque() {
		s.metrics.InboundConnection(s.declared, "declared")
		s.relay(c, sniff.Result{})
		return
	}
	bp := peekBufs.Get().(*[]byte)
	res, err := sniff.DetectPeek(c, *bp, InboundFirstByteWait, inboundSniffTimeout)
	peekBufs.Put(bp)
	switch {
	case errors.Is(err, sniff.ErrNotSocket):
		l.push(c) // cannot peek (not Linux): HTTP, as without detection
		return
	case err != nil:
		c.Close() // the peer left before sending anything
		return
	}
	by := "sniffed"
	if res.Silent {
		by = "silence"
	}
	s.metrics.InboundConnection(res.Protocol.String(), by)
	if res.Protocol.IsHTTP() {
		l.push(c)
		return
	}
	s.relay(c, res)
}

// relay connects to the app and relays c to it as TCP until either side
// ends (half-close passed on) or the relay is idle for s.idle. When the
// app does not accept the connection, c is reset: a TCP peer has no other
// way to hear that nothing reached the app.
func (s *inboundServer) relay(c net.Conn, res sniff.Result) {
	defer s.conns.RelayStarted()()
	up, err := net.DialTimeout("tcp", s.app, appDialTimeout)
	if err != nil {
		s.log.Info("inbound relay: connect to the app failed; connection reset", "app", s.app,
			"peer", c.RemoteAddr().String(), "error", err)
		if l, ok := c.(interface{ SetLinger(int) error }); ok {
			l.SetLinger(0)
		}
		c.Close()
		return
	}
	s.log.Debug("inbound relay open", "peer", c.RemoteAddr().String(), "protocol", res.Protocol,
		"sni", res.SNI, "alpn", strings.Join(res.ALPN, ","), "declared", s.declared)
	received, sent, err := tunnel.Relay(c, up, s.idle)
	s.metrics.InboundRelayed(received, sent)
	if err != nil && !errors.Is(err, net.ErrClosed) {
		s.log.Debug("inbound relay ended", "peer", c.RemoteAddr().String(), "error", err)
	}
}

// Shutdown shuts the HTTP server down gracefully (which closes the
// listener), then waits for the relays to end — they cannot be told to —
// until ctx does: then it returns ctx's error, and Close ends them.
func (s *inboundServer) Shutdown(ctx context.Context) error {
	s.conns.Stop()
	if err := s.http.Shutdown(ctx); err != nil {
		return err
	}
	return s.conns.WaitRelays(ctx)
}

// Close closes the listener and every connection at once.
func (s *inboundServer) Close() error {
	s.conns.Stop()
	err := s.http.Close()
	s.conns.CloseAll()
	return err
}

// detectListener is what the HTTP server accepts from: its own loop
// accepts from the inbound socket and classifies each connection on a
// goroutine of its own (a silent peer must not hold up the next), and
// Accept returns those found to speak HTTP.
type detectListener struct {
	net.Listener
	s      *inboundServer
	conns  chan net.Conn
	errs   chan error
	closed chan struct{}

	startOnce, closeOnce sync.Once
}

func newDetectListener(ln net.Listener, s *inboundServer) *detectListener {
	return &detectListener{Listener: ln, s: s, conns: make(chan net.Conn), errs: make(chan error),
		closed: make(chan struct{})}
}

// Accept returns the next connection that speaks HTTP, or the inner
// listener's error.
func (l *detectListener) Accept() (net.Conn, error) {
	l.startOnce.Do(func() { go l.acceptLoop() })
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errs:
		return nil, err
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// acceptLoop accepts until the inner listener fails for good. Its errors
// go to Accept's caller, one at a time: a temporary one (out of file
// descriptors) waits for the HTTP server to take it, which backs off
// before it accepts again, and so does this loop.
func (l *detectListener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			select {
			case l.errs <- err:
			case <-l.closed:
				return
			}
			var te interface{ Temporary() bool }
			if errors.As(err, &te) && te.Temporary() {
				continue
			}
			return
		}
		go l.s.serveConn(l, c)
	}
}

// push hands c to the HTTP server, or closes it when the listener closed.
func (l *detectListener) push(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	}
}

func (l *detectListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}
