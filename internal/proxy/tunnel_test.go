package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/model"
)

// tcpServer is a raw TCP server: it writes banner (if any) at once, then
// echoes what it reads prefixed by name, and half-closes its side when the
// client half-closed.
func tcpServer(tb testing.TB, name, banner string) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.WriteString(c, banner)
				b, _ := io.ReadAll(c)
				fmt.Fprintf(c, "%s:%s", name, b)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	return ln.Addr().String()
}

// tunnelTo opens CONNECT target through the proxy at outbound.
func tunnelTo(tb testing.TB, outbound, target string) *bufConn {
	tb.Helper()
	c, err := connectDial(outbound)(context.Background(), target)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c.(*bufConn)
}

// exchange sends msg, half-closes, and reads everything until the end.
func exchange(tb testing.TB, c *bufConn, msg string) string {
	tb.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		tb.Fatal(err)
	}
	if err := c.Conn.(*net.TCPConn).CloseWrite(); err != nil {
		tb.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		tb.Fatalf("reading the tunnel: %v (got %q)", err, b)
	}
	return string(b)
}

// metric returns the line of the proxy's metrics that starts with prefix.
func metric(tb testing.TB, p *Proxy, prefix string) string {
	tb.Helper()
	resp, err := http.Get("http://" + p.AdminAddr() + "/stats/prometheus")
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if strings.HasPrefix(sc.Text(), prefix) {
			return sc.Text()
		}
	}
	return ""
}

// An app calling an HTTPS host outside the mesh through its sidecar (as
// HTTPS_PROXY) gets that host's own TLS: the client verifies the server's
// certificate, so the bytes passed untouched.
func TestConnectHTTPSOutsideMesh(t *testing.T) {
	m := newMesh(t)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "tls %s %s", r.Proto, r.URL.Path)
	}))
	srv.EnableHTTP2 = true // ALPN h2 passes too
	srv.StartTLS()
	defer srv.Close()
	tr := srv.Client().Transport.(*http.Transport).Clone() // trusts only srv's certificate
	tr.Proxy = http.ProxyURL(mustURL("http://" + m.client.OutboundAddr()))
	tr.ForceAttemptHTTP2 = true
	defer tr.CloseIdleConnections()
	for _, path := range []string{"/a", "/b"} {
		r := do(t, &http.Client{Transport: tr}, newRequest(t, "GET", srv.URL+path, "", nil))
		if r.code != 200 || r.body != "tls HTTP/2.0 "+path {
			t.Fatalf("%d %q", r.code, r.body)
		}
	}
	tr.CloseIdleConnections()
	want := `trellis_proxy_tunnels_total{destination="external",mode="relayed",protocol="tls"} 1`
	waitFor(t, "the tunnel counted: "+want, func() bool { return metric(t, m.client, want) == want })
	if l := metric(t, m.client, `trellis_proxy_tunnel_bytes_total{destination="external",direction="received"}`); l == "" {
		t.Error("no received bytes counted")
	}
}

// Bytes that are not HTTP go through a tunnel to a host outside the mesh
// untouched, a half-close passes both ways, and a server that speaks first
// is heard before the client sends anything.
func TestConnectTCPOutsideMesh(t *testing.T) {
	m := newMesh(t)
	echo := tcpServer(t, "echo", "")
	if got := exchange(t, tunnelTo(t, m.client.OutboundAddr(), echo), "\x00\x01 not http"); got != "echo:\x00\x01 not http" {
		t.Fatalf("echo through the tunnel: %q", got)
	}
	// An HTTP request to a host outside the mesh is relayed too: routing
	// is for mesh services.
	if got := exchange(t, tunnelTo(t, m.client.OutboundAddr(), echo), "GET / HTTP/1.1\r\n\r\n"); got != "echo:GET / HTTP/1.1\r\n\r\n" {
		t.Fatalf("HTTP outside the mesh: %q", got)
	}
	banner := tcpServer(t, "smtp", "220 ready\r\n")
	c := tunnelTo(t, m.client.OutboundAddr(), banner)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := c.r.ReadString('\n')
	if err != nil || line != "220 ready\r\n" {
		t.Fatalf("banner %q, %v", line, err)
	}
	if got := exchange(t, c, "QUIT\r\n"); got != "smtp:QUIT\r\n" {
		t.Fatalf("after the banner: %q", got)
	}
}

// A host outside the mesh that cannot be reached gets an answer to its
// CONNECT, not a 200 and a closed tunnel.
func TestConnectOutsideMeshUnreachable(t *testing.T) {
	m := newMesh(t)
	for _, target := range []string{deadAddr(t), "nowhere.invalid:443"} {
		conn, err := net.Dial("tcp", m.client.OutboundAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
		resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 503 || resp.Header.Get(meshxds.HeaderError) != "upstream_connect_failed" ||
			!strings.HasPrefix(string(body), "upstream_connect_failed: connect to "+target+" (outside the mesh) failed: ") {
			t.Fatalf("CONNECT %s: %d %v %q", target, resp.StatusCode, resp.Header, body)
		}
	}
}

// A mesh service that does not speak HTTP is relayed to one of its
// instances per tunnel, round robin, at the instance's port (not the one
// CONNECT named); one where the server speaks first is relayed once the
// client has been silent for the first-byte wait.
func TestConnectTCPMeshService(t *testing.T) {
	a, b := tcpServer(t, "a", ""), tcpServer(t, "b", "")
	client, _ := startProxy(t, Config{Role: meshxds.RoleSidecar}, snapshot(
		[]*model.VirtualHost{vhost("store", to("store|v1", 100))},
		map[string][]string{"store|v1": {a, b}},
	))
	seen := map[string]int{}
	for range 4 {
		got := exchange(t, tunnelTo(t, client.OutboundAddr(), "store:5432"), "\x00\x00\x00\x08 startup")
		seen[strings.SplitN(got, ":", 2)[0]]++
		if !strings.HasSuffix(got, ":\x00\x00\x00\x08 startup") {
			t.Fatalf("through the tunnel: %q", got)
		}
	}
	if seen["a"] != 2 || seen["b"] != 2 {
		t.Fatalf("tunnels per instance %v, want 2 and 2", seen)
	}
	banner := tcpServer(t, "db", "hello\n")
	client.setSnapshot(snapshot([]*model.VirtualHost{vhost("store", to("store|v1", 100))},
		map[string][]string{"store|v1": {banner}}))
	c := tunnelTo(t, client.OutboundAddr(), "store:5432")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, err := c.r.ReadString('\n'); err != nil || line != "hello\n" {
		t.Fatalf("banner %q, %v", line, err)
	}
}

// HTTP inside a CONNECT to a mesh service is still routed request by
// request: one h2 tunnel's requests are split over both versions.
func TestConnectMeshServiceStillRouted(t *testing.T) {
	m := newMesh(t)
	m.client.setSnapshot(m.snapshot(to("reviews|v1", 50, "reviews|v2", 50)))
	out := m.client.OutboundAddr()
	c := h2cClient(t, func(ctx context.Context, _, addr string) (net.Conn, error) { return connectDial(out)(ctx, addr) })
	seen := map[string]int{}
	for range 40 {
		r := do(t, c, newRequest(t, "GET", "http://reviews:9080/x", "", nil))
		if r.code != 200 {
			t.Fatalf("%d %q", r.code, r.body)
		}
		seen[r.header.Get(meshxds.HeaderVersion)]++
	}
	if seen["v1"] == 0 || seen["v2"] == 0 {
		t.Fatalf("versions over one tunnel: %v, want both", seen)
	}
}

// The gateway is not a forward proxy: CONNECT is refused with a mesh error.
func TestConnectOnGateway(t *testing.T) {
	m := newMesh(t)
	gw, _ := startProxy(t, Config{Role: meshxds.RoleGateway, GatewayAddr: "127.0.0.1:0"}, m.snapshot(to("reviews|v2", 100)))
	conn, err := net.Dial("tcp", gw.GatewayAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodConnect})
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 405 || resp.Header.Get(meshxds.HeaderError) != "method_not_allowed" ||
		!strings.HasPrefix(string(body), "method_not_allowed: CONNECT is not accepted on the gateway listener") {
		t.Fatalf("%d %v %q", resp.StatusCode, resp.Header, body)
	}
}
