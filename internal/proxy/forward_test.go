package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/model"
)

// mesh is service reviews (v1, v2), each app behind its sidecar, and a
// client-only sidecar whose outbound listener the tests call through.
type mesh struct {
	v1, v2       *app
	side1, side2 *Proxy
	client       *Proxy
}

func newMesh(tb testing.TB) *mesh {
	tb.Helper()
	m := &mesh{v1: startApp(tb, "v1"), v2: startApp(tb, "v2")}
	m.side1 = sidecar(tb, "reviews", "v1", m.v1.addr)
	m.side2 = sidecar(tb, "reviews", "v2", m.v2.addr)
	m.client, _ = startProxy(tb, Config{Role: meshxds.RoleSidecar, Service: "productpage", Version: "v1"},
		m.snapshot(to("reviews|v1", 100)))
	return m
}

// snapshot routes reviews with routes over the mesh's clusters.
func (m *mesh) snapshot(routes ...*model.Route) *model.Snapshot {
	return snapshot([]*model.VirtualHost{vhost("reviews", routes...)}, map[string][]string{
		"reviews|v1": {m.side1.InboundAddr()},
		"reviews|v2": {m.side2.InboundAddr()},
		"reviews":    {m.side1.InboundAddr(), m.side2.InboundAddr()},
	})
}

func TestForwardKeepsProtocolAndHost(t *testing.T) {
	m := newMesh(t)
	out := m.client.OutboundAddr()
	viaConnect := func(ctx context.Context, _, addr string) (net.Conn, error) { return connectDial(out)(ctx, addr) }
	connectH1 := &http.Client{Transport: &http.Transport{DialContext: viaConnect}}
	t.Cleanup(connectH1.CloseIdleConnections)

	tests := []struct {
		name      string
		client    *http.Client
		url, host string
		wantProto string
		wantHost  string
	}{
		{"http1 absolute-form", h1ProxyClient(t, out), "http://reviews:9080/x", "", "HTTP/1.1", "reviews:9080"},
		{"http1 direct Host", h1Client(t), "http://" + out + "/x", "reviews", "HTTP/1.1", "reviews"},
		{"h2c direct authority", h2cClient(t, nil), "http://" + out + "/x", "reviews.default:9080", "HTTP/2.0", "reviews.default:9080"},
		{"CONNECT then http1", connectH1, "http://reviews:9080/x", "", "HTTP/1.1", "reviews:9080"},
		{"CONNECT then h2", h2cClient(t, viaConnect), "http://reviews:9080/x", "", "HTTP/2.0", "reviews:9080"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range 3 { // again on the pooled connection / tunnel
				r := do(t, tt.client, newRequest(t, "GET", tt.url, tt.host, nil))
				want := fmt.Sprintf("v1 %s %s /x", tt.wantProto, tt.wantHost)
				if r.code != 200 || r.body != want {
					t.Fatalf("request %d: %d %q, want 200 %q", i, r.code, r.body, want)
				}
				if s, v := r.header.Get(meshxds.HeaderService), r.header.Get(meshxds.HeaderVersion); s != "reviews" || v != "v1" {
					t.Fatalf("x-trellis-service %q version %q, want reviews v1 (one value: %v)", s, v, r.header.Values(meshxds.HeaderVersion))
				}
				if got := r.header.Values(meshxds.HeaderVersion); len(got) != 1 {
					t.Fatalf("x-trellis-version %v, want the sidecar's only", got)
				}
			}
		})
	}
}

// Inside a tunnel, a request without a Host gets the CONNECT target.
func TestConnectDefaultsHost(t *testing.T) {
	m := newMesh(t)
	c, err := connectDial(m.client.OutboundAddr())(context.Background(), "reviews:9080")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for _, raw := range []string{
		"GET /a HTTP/1.1\r\nHost: \r\n\r\n",                 // empty Host
		"GET /b HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", // HTTP/1.0: no Host at all
	} {
		if _, err := io.WriteString(c, raw); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), " reviews:9080 /") {
			t.Fatalf("%q: %d %q, want the CONNECT target as host", raw, resp.StatusCode, body)
		}
	}
}

// What is not HTTP inside a tunnel gets the HTTP/1.1 server's 400.
func TestConnectGarbage(t *testing.T) {
	m := newMesh(t)
	c, err := connectDial(m.client.OutboundAddr())(context.Background(), "reviews:9080")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "\x16\x03\x01 not http\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", resp.StatusCode)
	}
}

func TestForwardHeaders(t *testing.T) {
	m := newMesh(t)
	req := newRequest(t, "POST", "http://"+m.client.OutboundAddr()+"/h", "reviews", strings.NewReader("payload"))
	req.Header.Set("Proxy-Authorization", "Basic secret")
	req.Header.Set("Proxy-Anything", "x")
	req.Header.Set("Connection", "X-Hop")
	req.Header.Set("X-Hop", "1")
	req.Header.Set("X-Keep", "kept")
	req.Header.Set("X-Forwarded-For", "10.0.0.1")
	r := do(t, h1Client(t), req)
	if r.code != 200 || !strings.HasSuffix(r.body, "body=payload") {
		t.Fatalf("%d %q", r.code, r.body)
	}
	got := m.v1.lastRequest().Header
	for _, k := range []string{"Proxy-Authorization", "Proxy-Anything", "X-Hop"} {
		if v := got.Get(k); v != "" {
			t.Errorf("%s reached the app: %q", k, v)
		}
	}
	if got.Get("X-Keep") != "kept" || got.Get("X-Forwarded-For") != "10.0.0.1" {
		t.Errorf("app got X-Keep %q X-Forwarded-For %q", got.Get("X-Keep"), got.Get("X-Forwarded-For"))
	}
}

// A failed connect is retried on another instance, body and all.
func TestConnectRetry(t *testing.T) {
	m := newMesh(t)
	live := m.side1.InboundAddr()
	snap := snapshot([]*model.VirtualHost{vhost("reviews", to("reviews|v1", 100))},
		map[string][]string{"reviews|v1": {deadAddr(t), live, deadAddr(t)}})
	m.client.setSnapshot(snap)
	c := h1Client(t)
	for i := range 6 { // every rotation start: dead, live, dead
		r := do(t, c, newRequest(t, "POST", "http://"+m.client.OutboundAddr()+"/p", "reviews", strings.NewReader(fmt.Sprint("n", i))))
		if r.code != 200 || !strings.HasSuffix(r.body, fmt.Sprint("body=n", i)) {
			t.Fatalf("request %d: %d %q", i, r.code, r.body)
		}
	}
}

func TestGateway(t *testing.T) {
	m := newMesh(t)
	gw, _ := startProxy(t, Config{Role: meshxds.RoleGateway, GatewayAddr: "127.0.0.1:0"}, m.snapshot(to("reviews|v2", 100)))
	if gw.OutboundAddr() != "" || gw.InboundAddr() != "" {
		t.Fatalf("gateway has outbound %q inbound %q", gw.OutboundAddr(), gw.InboundAddr())
	}
	for _, c := range []*http.Client{h1Client(t), h2cClient(t, nil)} {
		r := do(t, c, newRequest(t, "GET", "http://"+gw.GatewayAddr()+"/g", "reviews.example.com", nil))
		if r.code != 200 || !strings.HasPrefix(r.body, "v2 ") || r.header.Get(meshxds.HeaderVersion) != "v2" {
			t.Fatalf("%d %q", r.code, r.body)
		}
		if xff := m.v2.lastRequest().Header.Get("X-Forwarded-For"); xff != "127.0.0.1" {
			t.Fatalf("gateway X-Forwarded-For %q, want the client's address", xff)
		}
	}
	// CONNECT is for sidecars' apps, not for the outside.
	conn, err := net.Dial("tcp", gw.GatewayAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "CONNECT reviews:80 HTTP/1.1\r\nHost: reviews:80\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("CONNECT on the gateway: %v %v", resp, err)
	}
}

// A client that closes its connection while the instance has not answered
// ends the exchange, and the instance sees its request's connection close:
// h1server has no goroutine watching the client, so the forwarder checks
// the client while the instance is silent (forward.waitAnswer).
func TestClientGoneEndsUpstreamExchange(t *testing.T) {
	a := startApp(t, "v1")
	side := sidecar(t, "reviews", "v1", a.addr)
	c, err := net.Dial("tcp", side.InboundAddr())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /slow HTTP/1.1\r\nHost: reviews\r\n\r\n")
	<-a.arrived
	c.Close()
	select {
	case <-a.gone:
	case <-time.After(20 * time.Second):
		t.Fatal("the instance still holds the request of a client that left")
	}
}
