package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/h1server"
	"trellis.dev/trellis/internal/proxy/model"
	"trellis.dev/trellis/internal/proxy/stats"
)

// limitsSafety bounds every wait in these tests; no test relies on it
// passing.
const limitsSafety = 10 * time.Second

// rawConn is one client connection that writes raw requests and reads
// responses.
type rawConn struct {
	t  *testing.T
	nc net.Conn
	br *bufio.Reader
}

func dialRaw(t *testing.T, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	nc.SetDeadline(time.Now().Add(limitsSafety))
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc, br: bufio.NewReader(nc)}
}

// roundTrip sends req (in the background: the proxy may answer before it
// reads all of it) and reads the answer.
func (c *rawConn) roundTrip(req string) (*http.Response, string, error) {
	go io.WriteString(c.nc, req)
	method, _, _ := strings.Cut(req, " ")
	res, err := http.ReadResponse(c.br, &http.Request{Method: method})
	if err != nil {
		return nil, "", err
	}
	body, err := io.ReadAll(res.Body)
	return res, string(body), err
}

// bigHead is a request head for host with a field of pad bytes and
// fields more fields, under proto ("HTTP/1.1" or "HTTP/1.0").
func bigHead(target, host, proto string, pad, fields int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s %s\r\nHost: %s\r\n", target, proto, host)
	for i := range fields {
		fmt.Fprintf(&b, "X-F-%03d: v\r\n", i)
	}
	if pad > 0 {
		b.WriteString("X-Pad: " + strings.Repeat("p", pad) + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// counterValue is the value of the series of name with labels in reg, 0
// when there is none.
func counterValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			for k, v := range labels {
				if got[k] != v {
					continue series
				}
			}
			if m.GetCounter() != nil {
				return m.GetCounter().GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

// TestHeaderLimitsOnEveryListener: on the gateway, outbound and inbound
// listeners, a 100 KiB header and 200 header fields are answered 431
// header_too_large (on the fast path and on connections net/http reads),
// counted as requests with code 431, and a head just under the limits is
// served.
func TestHeaderLimitsOnEveryListener(t *testing.T) {
	backend := startApp(t, "v1")
	snap := snapshot([]*model.VirtualHost{vhost("reviews", to("reviews|v1", 100))},
		map[string][]string{"reviews|v1": {backend.addr}})
	gw, _ := startProxy(t, Config{Role: meshxds.RoleGateway, GatewayAddr: "127.0.0.1:0"}, snap)
	out, _ := startProxy(t, Config{Role: meshxds.RoleSidecar}, snap)
	in := sidecar(t, "reviews", "v1", backend.addr)

	// Just under the limits, with room for what the proxies add on the
	// way (X-Forwarded-*) and the app's own limit aside.
	const under = DefaultMaxHeaderBytes - 1024
	for _, l := range []struct {
		name, addr, target string
		p                  *Proxy
	}{
		{stats.Gateway, gw.GatewayAddr(), "/x", gw},
		{stats.Outbound, out.OutboundAddr(), "http://reviews/x", out},
		{stats.Inbound, in.InboundAddr(), "/x", in},
	} {
		for _, tt := range []struct {
			name string
			req  string
			want int
		}{
			{"100 KiB header", bigHead(l.target, "reviews", "HTTP/1.1", 100<<10, 0), 431},
			{"100 KiB header, HTTP/1.0", bigHead(l.target, "reviews", "HTTP/1.0", 100<<10, 0), 431},
			{"200 fields", bigHead(l.target, "reviews", "HTTP/1.1", 0, 200), 431},
			{"200 fields, HTTP/1.0", bigHead(l.target, "reviews", "HTTP/1.0", 0, 200), 431},
			{"head just under the size limit", bigHead(l.target, "reviews", "HTTP/1.1", under, 0), 200},
			{"99 fields and Host", bigHead(l.target, "reviews", "HTTP/1.1", 0, 99), 200},
			{"99 fields and Host, HTTP/1.0", bigHead(l.target, "reviews", "HTTP/1.0", 0, 99), 200},
		} {
			t.Run(l.name+"/"+tt.name, func(t *testing.T) {
				before := counterValue(t, l.p.metrics.Registry, "trellis_proxy_requests_total",
					map[string]string{"direction": l.name, "code": "431"})
				c := dialRaw(t, l.addr)
				res, body, err := c.roundTrip(tt.req)
				if err != nil {
					t.Fatal(err)
				}
				if res.StatusCode != tt.want {
					t.Fatalf("got %d %q %q, want %d", res.StatusCode, res.Header, body, tt.want)
				}
				after := counterValue(t, l.p.metrics.Registry, "trellis_proxy_requests_total",
					map[string]string{"direction": l.name, "code": "431"})
				if tt.want == 200 {
					if after != before {
						t.Errorf("requests_total{code=431} went from %v to %v", before, after)
					}
					return
				}
				if res.Header.Get(meshxds.HeaderError) != "header_too_large" || !strings.HasPrefix(body, "header_too_large: ") {
					t.Errorf("got %q %q, want x-trellis-error: header_too_large", res.Header, body)
				}
				if _, err := c.br.ReadByte(); err != io.EOF {
					t.Errorf("connection not closed after the 431: %v", err)
				}
				if after != before+1 {
					t.Errorf("requests_total{direction=%s,code=431} went from %v to %v, want +1", l.name, before, after)
				}
			})
		}
	}
}

// TestHeaderLimitsInTunnel: the requests inside a CONNECT tunnel get the
// header limits too.
func TestHeaderLimitsInTunnel(t *testing.T) {
	backend := startApp(t, "v1")
	out, _ := startProxy(t, Config{Role: meshxds.RoleSidecar}, snapshot(
		[]*model.VirtualHost{vhost("reviews", to("reviews|v1", 100))},
		map[string][]string{"reviews|v1": {backend.addr}}))
	c := dialRaw(t, out.OutboundAddr())
	io.WriteString(c.nc, "CONNECT reviews:80 HTTP/1.1\r\nHost: reviews:80\r\n\r\n")
	res, err := http.ReadResponse(c.br, &http.Request{Method: http.MethodConnect})
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", res, err)
	}
	if _, body, err := c.roundTrip(bigHead("/x", "reviews", "HTTP/1.1", 0, 99)); err != nil || !strings.HasPrefix(body, "v1 ") {
		t.Fatalf("in the tunnel, 99 fields and Host: %q %v", body, err)
	}
	res, body, err := c.roundTrip(bigHead("/x", "reviews", "HTTP/1.1", 0, 200))
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != 431 || res.Header.Get(meshxds.HeaderError) != "header_too_large" {
		t.Fatalf("got %d %q %q, want 431 header_too_large", res.StatusCode, res.Header, body)
	}
}

// TestConnectionCap: with a cap of 8 connections on the gateway, a flood
// of new connections is answered 503 overloaded and counted, while a
// keep-alive client already connected goes on being served; when a
// connection closes, a new one is served again.
func TestConnectionCap(t *testing.T) {
	const max, flood = 8, 24
	backend := startApp(t, "v1")
	var logs logRecorder
	gw, _ := startProxy(t, Config{Role: meshxds.RoleGateway, GatewayAddr: "127.0.0.1:0", MaxConnections: max,
		Logger: slog.New(&logs)}, snapshot(
		[]*model.VirtualHost{vhost("reviews", to("reviews|v1", 100))},
		map[string][]string{"reviews|v1": {backend.addr}}))
	addr := gw.GatewayAddr()
	get := "GET /x HTTP/1.1\r\nHost: reviews\r\n\r\n"
	served := func(c *rawConn, what string) {
		t.Helper()
		res, body, err := c.roundTrip(get)
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if res.StatusCode != 200 {
			t.Fatalf("%s: got %d %q", what, res.StatusCode, body)
		}
	}
	// max keep-alive connections, each served once: all accepted.
	conns := make([]*rawConn, max)
	for i := range conns {
		conns[i] = dialRaw(t, addr)
		served(conns[i], fmt.Sprintf("connection %d", i))
	}
	keepAlive := conns[0]

	var wg sync.WaitGroup
	var overloaded atomic.Int32
	errs := make(chan string, flood)
	for i := range flood {
		wg.Go(func() {
			c := dialRaw(t, addr)
			res, body, err := c.roundTrip(get)
			switch {
			case err != nil:
				errs <- fmt.Sprintf("flood %d: %v", i, err)
			case res.StatusCode != 503 || res.Header.Get(meshxds.HeaderError) != "overloaded" ||
				!strings.HasPrefix(body, "overloaded: ") || !res.Close:
				errs <- fmt.Sprintf("flood %d: got %d %q %q, want 503 overloaded, Connection: close", i, res.StatusCode, res.Header, body)
			default:
				overloaded.Add(1)
			}
		})
		if i == flood/2 {
			served(keepAlive, "the keep-alive client during the flood")
		}
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	served(keepAlive, "the keep-alive client after the flood")

	reg := gw.metrics.Registry
	if n := counterValue(t, reg, "trellis_proxy_connections_rejected_total",
		map[string]string{"listener": "gateway", "reason": "overloaded"}); n != flood {
		t.Errorf("connections_rejected_total{gateway,overloaded} = %v, want %d", n, flood)
	}
	if n := counterValue(t, reg, "trellis_proxy_connections_open", map[string]string{"listener": "gateway"}); n != max {
		t.Errorf("connections_open{gateway} = %v, want %d", n, max)
	}
	if n := logs.count("connection cap reached"); n != 1 {
		t.Errorf("%d log lines about the cap, want 1 (once per interval)", n)
	}

	// One connection leaves: its place is given back once the gateway has
	// closed it, and a new connection is served.
	conns[max-1].nc.Close()
	deadline := time.Now().Add(limitsSafety)
	for counterValue(t, reg, "trellis_proxy_connections_open", map[string]string{"listener": "gateway"}) != max-1 {
		if time.Now().After(deadline) {
			t.Fatal("the closed connection is still counted open")
		}
		time.Sleep(5 * time.Millisecond)
	}
	served(dialRaw(t, addr), "a new connection after one closed")
}

// fdListener fails its first n Accepts with EMFILE, as accept(2) does when
// the process is out of file descriptors.
type fdListener struct {
	net.Listener
	n     atomic.Int32
	calls atomic.Int32
}

func (l *fdListener) Accept() (net.Conn, error) {
	if l.calls.Add(1) <= l.n.Load() {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: os.NewSyscallError("accept", syscall.EMFILE)}
	}
	return l.Listener.Accept()
}

// TestAcceptOutOfFileDescriptors: EMFILE from accept is counted each time,
// logged once per interval, and the listener serves again once accept
// works (h1server backs off meanwhile).
func TestAcceptOutOfFileDescriptors(t *testing.T) {
	const failures = 5
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := &fdListener{Listener: ln}
	fl.n.Store(failures)
	m := stats.New(nil)
	var logs logRecorder
	lln := newLimitListener(fl, stats.Gateway, 10, m, slog.New(&logs))
	srv := &h1server.Server{
		Handler:  http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		Fallback: &http.Server{},
	}
	go srv.Serve(lln)
	defer srv.Close()

	c := dialRaw(t, ln.Addr().String())
	res, body, err := c.roundTrip("GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
	if err != nil || res.StatusCode != 200 || body != "ok" {
		t.Fatalf("after EMFILE: %v %v %q", res, err, body)
	}
	if n := counterValue(t, m.Registry, "trellis_proxy_connections_rejected_total",
		map[string]string{"listener": "gateway", "reason": "fd_exhausted"}); n != failures {
		t.Errorf("connections_rejected_total{gateway,fd_exhausted} = %v, want %d", n, failures)
	}
	if n := logs.count("out of file descriptors"); n != 1 {
		t.Errorf("%d log lines about file descriptors, want 1", n)
	}
}

func TestIsFDExhausted(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept", syscall.EMFILE)}, true},
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.ENFILE)}, true},
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept", syscall.ECONNABORTED)}, false},
		{net.ErrClosed, false},
	} {
		if got := isFDExhausted(tt.err); got != tt.want {
			t.Errorf("isFDExhausted(%v) = %v", tt.err, got)
		}
	}
}

// TestIntervalLog: the first event is logged at once, the next ones once
// the interval has passed, with their count.
func TestIntervalLog(t *testing.T) {
	var lines []int
	l := &intervalLog{interval: time.Hour, log: func(n int, _ error) { lines = append(lines, n) }}
	for range 5 {
		l.event(nil)
	}
	l.last = l.last.Add(-2 * time.Hour) // the interval passes
	l.event(nil)
	l.event(nil)
	if fmt.Sprint(lines) != "[1 5]" {
		t.Errorf("lines with counts %v, want [1 5]", lines)
	}
}

func TestConfigLimits(t *testing.T) {
	c, err := Config{Role: meshxds.RoleGateway}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxHeaderBytes != 60<<10 || c.MaxHeaders != 100 || c.MaxConnections < 64 || c.MaxConnections > DefaultMaxConnections {
		t.Errorf("defaults: %d bytes, %d fields, %d connections", c.MaxHeaderBytes, c.MaxHeaders, c.MaxConnections)
	}
	for _, f := range []string{"MaxHeaderBytes", "MaxHeaders", "MaxConnections"} {
		cfg := Config{Role: meshxds.RoleGateway}
		switch f {
		case "MaxHeaderBytes":
			cfg.MaxHeaderBytes = -1
		case "MaxHeaders":
			cfg.MaxHeaders = -1
		case "MaxConnections":
			cfg.MaxConnections = -1
		}
		if _, err := cfg.withDefaults(); err == nil || err.(*ConfigError).Field != f {
			t.Errorf("%s -1: %v", f, err)
		}
	}
}

// logRecorder keeps the messages logged.
type logRecorder struct {
	mu   sync.Mutex
	msgs []string
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.msgs = append(r.msgs, rec.Message)
	return nil
}
func (r *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r *logRecorder) WithGroup(string) slog.Handler      { return r }

func (r *logRecorder) count(prefix string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, m := range r.msgs {
		if strings.HasPrefix(m, prefix) {
			n++
		}
	}
	return n
}
