package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/model"
)

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		field string // "" = valid
	}{
		{"client-only sidecar", Config{Role: meshxds.RoleSidecar}, ""},
		{"sidecar with app", Config{Role: meshxds.RoleSidecar, Service: "reviews", Version: "v1", AppPort: 9080}, ""},
		{"gateway", Config{Role: meshxds.RoleGateway}, ""},
		{"no role", Config{}, "Role"},
		{"bad role", Config{Role: "router"}, "Role"},
		{"app without service", Config{Role: meshxds.RoleSidecar, AppPort: 9080}, "Service"},
		{"app port range", Config{Role: meshxds.RoleSidecar, Service: "s", AppPort: 70000}, "AppPort"},
		{"negative port", Config{Role: meshxds.RoleSidecar, OutboundPort: -1}, "OutboundPort"},
		{"inbound on app port", Config{Role: meshxds.RoleSidecar, Service: "s", AppPort: 9080, InboundPort: 9080}, "InboundPort"},
		{"address not IP", Config{Role: meshxds.RoleSidecar, Address: "myhost"}, "Address"},
		{"address unspecified", Config{Role: meshxds.RoleSidecar, Address: "0.0.0.0"}, "Address"},
		{"sidecar with gateway addr", Config{Role: meshxds.RoleSidecar, GatewayAddr: "127.0.0.1:8080"}, "GatewayAddr"},
		{"gateway with app", Config{Role: meshxds.RoleGateway, AppPort: 1}, "AppPort"},
		{"admin addr", Config{Role: meshxds.RoleSidecar, AdminAddr: "nope"}, "AdminAddr"},
		{"control addr port", Config{Role: meshxds.RoleSidecar, ControlAddr: "127.0.0.1:x"}, "ControlAddr"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			var ce *ConfigError
			switch {
			case tt.field == "" && err != nil:
				t.Fatalf("New: %v", err)
			case tt.field != "" && (!errors.As(err, &ce) || ce.Field != tt.field):
				t.Fatalf("New: %v, want an error about %s", err, tt.field)
			}
		})
	}
}

func TestNodeMetadata(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		port int
		want map[string]string // absent keys must be absent
	}{
		{"sidecar with app", Config{Role: meshxds.RoleSidecar, Service: "reviews", Version: "v1", Zone: "z", AppPort: 9080, Address: "10.0.0.5"}, 15001,
			map[string]string{meshxds.MetaRole: "sidecar", meshxds.MetaService: "reviews", meshxds.MetaVersion: "v1",
				meshxds.MetaAddress: "10.0.0.5", meshxds.MetaPort: "15001", meshxds.MetaZone: "z"}},
		{"client-only sidecar", Config{Role: meshxds.RoleSidecar, Service: "job", Version: "v1", Address: "127.0.0.1"}, 0,
			map[string]string{meshxds.MetaRole: "sidecar", meshxds.MetaVersion: "v1", meshxds.MetaAddress: "127.0.0.1", meshxds.MetaZone: ""}},
		{"gateway", Config{Role: meshxds.RoleGateway, Address: "127.0.0.1"}, 0,
			map[string]string{meshxds.MetaRole: "gateway", meshxds.MetaVersion: "", meshxds.MetaAddress: "127.0.0.1", meshxds.MetaZone: ""}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := node(&tt.cfg, "id-1", tt.port)
			got := map[string]string{}
			for k, v := range n.GetMetadata().GetFields() {
				got[k] = v.GetStringValue()
			}
			if len(got) != len(tt.want) {
				t.Fatalf("metadata %v, want %v", got, tt.want)
			}
			for k, v := range tt.want {
				if g, ok := got[k]; !ok || g != v {
					t.Fatalf("metadata %v, want %v", got, tt.want)
				}
			}
			if n.GetId() != "id-1" || n.GetLocality().GetZone() != tt.cfg.Zone {
				t.Fatalf("node %v", n)
			}
		})
	}
}

func TestDefaultNodeID(t *testing.T) {
	for _, tt := range []struct {
		cfg    Config
		prefix string
	}{
		{Config{Role: meshxds.RoleSidecar, Service: "reviews", Version: "v1"}, "reviews.v1."},
		{Config{Role: meshxds.RoleSidecar}, "sidecar."},
		{Config{Role: meshxds.RoleGateway}, "gateway."},
	} {
		a, b := defaultNodeID(&tt.cfg), defaultNodeID(&tt.cfg)
		if len(a) != len(tt.prefix)+8 || a[:len(tt.prefix)] != tt.prefix || a == b {
			t.Errorf("defaultNodeID = %q, %q; want %q + 8 random hex", a, b, tt.prefix)
		}
	}
}

// Shutdown closes the xDS stream while the listeners still accept, then
// drains: the request in flight finishes, new connections are refused.
func TestShutdownDrains(t *testing.T) {
	m := newMesh(t)
	// Rebuild side1 with its fake source in hand.
	_, port, _ := net.SplitHostPort(m.v1.addr)
	appPort, _ := strconv.Atoi(port)
	side, src := startProxy(t, Config{Role: meshxds.RoleSidecar, Service: "reviews", Version: "v1", AppPort: appPort}, snapshot(nil, nil))
	m.client.setSnapshot(snapshot([]*model.VirtualHost{vhost("reviews", to("reviews|v1", 100))},
		map[string][]string{"reviews|v1": {side.InboundAddr()}}))

	listening := make(chan error, 1)
	src.onStop = func() {
		// The ADS stream is closing: the listener must still be up.
		c, err := net.Dial("tcp", side.InboundAddr())
		if err == nil {
			c.Close()
		}
		listening <- err
	}

	c := h1ProxyClient(t, m.client.OutboundAddr())
	done := make(chan result, 1)
	go func() {
		resp, err := c.Get("http://reviews/slow")
		if err != nil {
			done <- result{body: err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{code: resp.StatusCode, body: string(b)}
	}()
	<-m.v1.arrived

	shut := make(chan error, 1)
	go func() { shut <- side.Shutdown(context.Background()) }()
	if err := <-listening; err != nil {
		t.Fatalf("listener closed before the xDS stream: %v", err)
	}
	<-src.stopped
	close(m.v1.release)
	if r := <-done; r.code != 200 || r.body != "v1 HTTP/1.1 reviews /slow" {
		t.Fatalf("request in flight: %d %q", r.code, r.body)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if c, err := net.Dial("tcp", side.InboundAddr()); err == nil {
		c.Close()
		t.Fatal("inbound still accepts after Shutdown")
	}
	if resp, err := http.Get("http://" + side.AdminAddr() + "/ready"); err == nil {
		resp.Body.Close()
		t.Fatal("admin still up after Shutdown")
	}
}

// When the drain deadline passes, open tunnels are closed.
func TestShutdownClosesTunnels(t *testing.T) {
	m := newMesh(t)
	conn, err := net.Dial("tcp", m.client.OutboundAddr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "CONNECT reviews:80 HTTP/1.1\r\nHost: reviews:80\r\n\r\n")
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	// The tunnel is open and still being sniffed (nothing sent).
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // no time to drain
	_ = m.client.Shutdown(ctx)
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("tunnel still open after Shutdown")
	}
}
