package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/model"
)

// sidecarSpeaking starts a sidecar for service v1 in front of the app on
// appAddr, declaring protocol ("" detects).
func sidecarSpeaking(tb testing.TB, service, appAddr, protocol string) *Proxy {
	tb.Helper()
	_, port, _ := net.SplitHostPort(appAddr)
	appPort, _ := strconv.Atoi(port)
	p, _ := startProxy(tb, Config{Role: meshxds.RoleSidecar, Service: service, Version: "v1",
		AppPort: appPort, AppProtocol: protocol}, snapshot(nil, nil))
	return p
}

// clientOf starts a client-only sidecar whose mesh has service at the
// inbound listener of side.
func clientOf(tb testing.TB, service string, side *Proxy) *Proxy {
	tb.Helper()
	p, _ := startProxy(tb, Config{Role: meshxds.RoleSidecar}, snapshot(
		[]*model.VirtualHost{vhost(service, to(service+"|v1", 100))},
		map[string][]string{service + "|v1": {side.InboundAddr()}}))
	return p
}

// A TCP service through two sidecars: the caller's outbound relays the
// CONNECT tunnel to the instance's inbound listener, which finds no HTTP
// there and relays to the app. Bytes pass untouched, the client's
// half-close reaches the app and the app's last bytes still come back, and
// a server that speaks first is heard (both sidecars wait for the client,
// then relay).
func TestInboundTCPThroughTwoSidecars(t *testing.T) {
	echo := tcpServer(t, "echo", "")
	side := sidecarSpeaking(t, "store", echo, "")
	client := clientOf(t, "store", side)
	for _, msg := range []string{"\x00\x01 not http", "hello", "GET / HTTP/1.1"} {
		// "hello" and "GET / HTTP/1.1" could still be the start of a
		// request line when the half-close comes: TCP then too.
		if got := exchange(t, tunnelTo(t, client.OutboundAddr(), "store:5432"), msg); got != "echo:"+msg {
			t.Fatalf("%q through two sidecars: %q", msg, got)
		}
	}
	want := `trellis_proxy_inbound_connections_total{by="sniffed",protocol="tcp"} 3`
	waitFor(t, want, func() bool { return metric(t, side, want) == want })
	want = `trellis_proxy_inbound_relay_bytes_total{direction="sent"} `
	if l := metric(t, side, want); l == "" || strings.HasSuffix(l, " 0") {
		t.Fatalf("relayed bytes to peers: %q", l)
	}

	banner := tcpServer(t, "db", "220 ready\r\n")
	dbSide := sidecarSpeaking(t, "db", banner, "")
	c := tunnelTo(t, clientOf(t, "db", dbSide).OutboundAddr(), "db:25")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if line, err := c.r.ReadString('\n'); err != nil || line != "220 ready\r\n" {
		t.Fatalf("server-first banner through two sidecars: %q, %v", line, err)
	}
	if got := exchange(t, c, "QUIT\r\n"); got != "db:QUIT\r\n" {
		t.Fatalf("after the banner: %q", got)
	}
	want = `trellis_proxy_inbound_connections_total{by="silence",protocol="tcp"} 1`
	waitFor(t, want, func() bool { return metric(t, dbSide, want) == want })
}

// TLS the mesh does not terminate: an HTTPS app behind its sidecar, called
// through the caller's sidecar with CONNECT. The client sees the app's own
// certificate, and ALPN picks h2 or http/1.1 end to end.
func TestInboundTLSPassthrough(t *testing.T) {
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls %s %s", r.Proto, r.URL.Path)
	}))
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the readiness probe's connects
	srv.StartTLS()
	defer srv.Close()
	side := sidecarSpeaking(t, "secure", srv.Listener.Addr().String(), "")
	client := clientOf(t, "secure", side)
	for _, tc := range []struct {
		name  string
		h2    bool
		proto string
	}{{"h2", true, "HTTP/2.0"}, {"http/1.1", false, "HTTP/1.1"}} {
		t.Run(tc.name, func(t *testing.T) {
			tr := srv.Client().Transport.(*http.Transport).Clone() // trusts only srv's certificate
			tr.TLSClientConfig.ServerName = "example.com"          // httptest's certificate's name
			tr.Proxy = http.ProxyURL(mustURL("http://" + client.OutboundAddr()))
			tr.ForceAttemptHTTP2 = tc.h2
			if !tc.h2 {
				tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
			}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("https://secure/x")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != "tls "+tc.proto+" /x" {
				t.Fatalf("%d %q", resp.StatusCode, body)
			}
			if !bytes.Equal(resp.TLS.PeerCertificates[0].Raw, srv.Certificate().Raw) {
				t.Fatal("the client saw a certificate other than the app's")
			}
		})
	}
	want := `trellis_proxy_inbound_connections_total{by="sniffed",protocol="tls"} 2`
	waitFor(t, want, func() bool { return metric(t, side, want) == want })
}

// HTTP on the inbound listener is detected and served as before: the
// answer carries the mesh's headers, and the connection is counted.
func TestInboundHTTPDetected(t *testing.T) {
	m := newMesh(t)
	r := do(t, h1ProxyClient(t, m.client.OutboundAddr()), newRequest(t, "GET", "http://reviews/x", "", nil))
	if r.code != 200 || r.header.Get(meshxds.HeaderService) != "reviews" {
		t.Fatalf("%d %v %q", r.code, r.header, r.body)
	}
	want := `trellis_proxy_inbound_connections_total{by="sniffed",protocol="http/1.1"} `
	if l := metric(t, m.side1, want); l == "" {
		t.Fatal("the HTTP/1.1 connection was not counted")
	}
}

// A declared tcp (or tls) app gets every connection relayed without
// detection: even an HTTP request reaches it as it was sent.
func TestInboundDeclaredTCP(t *testing.T) {
	echo := tcpServer(t, "echo", "")
	side := sidecarSpeaking(t, "store", echo, AppProtocolTCP)
	c, err := net.Dial("tcp", side.InboundAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "GET / HTTP/1.1\r\nHost: store\r\n\r\n"
	if got := exchange(t, &bufConn{Conn: c, r: bufio.NewReader(c)}, req); got != "echo:"+req {
		t.Fatalf("declared tcp: %q", got)
	}
	want := `trellis_proxy_inbound_connections_total{by="declared",protocol="tcp"} 1`
	waitFor(t, want, func() bool { return metric(t, side, want) == want })
}

// A declared http app gets HTTP only, as before detection: bytes that are
// not HTTP are answered 400, not relayed.
func TestInboundDeclaredHTTP(t *testing.T) {
	echo := tcpServer(t, "echo", "")
	side := sidecarSpeaking(t, "store", echo, AppProtocolHTTP)
	c, err := net.Dial("tcp", side.InboundAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "\x00\x01 not http\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("declared http, bytes that are not: %v %v", resp, err)
	}
}

// A relay whose app does not accept the connection resets the peer's
// connection: nothing comes back.
func TestInboundRelayAppDown(t *testing.T) {
	side := sidecarSpeaking(t, "store", deadAddr(t), "")
	c, err := net.Dial("tcp", side.InboundAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "\x00\x01")
	if b, _ := io.ReadAll(c); len(b) != 0 {
		t.Fatalf("got %q from a relay to no app", b)
	}
}

// Shutdown waits for relays until its context ends; then they are closed.
func TestInboundShutdownClosesRelays(t *testing.T) {
	echo := tcpServer(t, "echo", "")
	side := sidecarSpeaking(t, "store", echo, "")
	c, err := net.Dial("tcp", side.InboundAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "\x00 open relay")
	// The relay is open once the inbound counted the connection.
	want := `trellis_proxy_inbound_connections_total{by="sniffed",protocol="tcp"} 1`
	waitFor(t, want, func() bool { return metric(t, side, want) == want })
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	side.Shutdown(ctx)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(c); err != nil && !isReset(err) {
		t.Fatalf("after Shutdown the relay's connection: %v", err)
	}
}

func isReset(err error) bool { return strings.Contains(err.Error(), "connection reset") }

func TestAppProtocolConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Role: meshxds.RoleSidecar, Service: "s", AppPort: 8080, AppProtocol: "udp"}, "AppProtocol"},
		{Config{Role: meshxds.RoleSidecar, AppProtocol: "tcp"}, "AppProtocol"},
		{Config{Role: meshxds.RoleGateway, AppProtocol: "http"}, "AppProtocol"},
	} {
		if _, err := New(tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
	for _, p := range append([]string{""}, AppProtocols...) {
		if _, err := New(Config{Role: meshxds.RoleSidecar, Service: "s", AppPort: 8080, AppProtocol: p}); err != nil {
			t.Errorf("AppProtocol %q: %v", p, err)
		}
	}
}
