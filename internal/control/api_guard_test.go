package control

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

	"trellis.dev/trellis/internal/apiclient"
)

// req is one request of the guard tables, with the headers a browser or an
// attacker would set.
type req struct {
	method, path, body string
	host               string // "" keeps the address dialled
	header             map[string]string
}

// sendReq sends r to addr ("127.0.0.1:port") and answers status, headers, body.
func sendReq(t *testing.T, addr string, r req) answer {
	t.Helper()
	hr, err := http.NewRequestWithContext(t.Context(), r.method, "http://"+addr+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if r.host != "" {
		hr.Host = r.host
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatalf("%s %s: %v", r.method, r.path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

type guardCase struct {
	name     string
	req      req
	status   int
	contains []string          // substrings of the body
	headers  map[string]string // expected answer headers ("" = absent)
}

func runGuardCases(t *testing.T, addr string, cases []guardCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := sendReq(t, addr, tc.req)
			if a.status != tc.status {
				t.Fatalf("%s %s = %d, want %d; body %s", tc.req.method, tc.req.path, a.status, tc.status, a.body)
			}
			for _, want := range tc.contains {
				if !strings.Contains(a.body, want) {
					t.Errorf("body %s does not contain %s", a.body, want)
				}
			}
			for k, want := range tc.headers {
				if got := a.header.Get(k); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
		})
	}
}

var (
	yamlCT = map[string]string{"Content-Type": "application/yaml"}
	jsonCT = map[string]string{"Content-Type": "application/json; charset=utf-8"}
)

func with(h map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// The default guard of a control plane on 127.0.0.1: loopback Hosts and
// same-origin only, JSON/YAML writes only, OPTIONS answered.
func TestAPIGuardDefaults(t *testing.T) {
	s := sharedServer(t)
	addr := s.HTTPAddr()
	_, port, _ := net.SplitHostPort(addr)
	route := simpleRoute("guarded", "default", "v1")
	jsonRoute := `{"apiVersion":"trellis.dev/v1alpha1","kind":"Route","metadata":{"name":"guarded"},"spec":{"service":"guarded","rules":[{"version":"v2","weight":100}]}}`
	runGuardCases(t, addr, []guardCase{
		// Content-Type of writes.
		{"text/plain apply", req{method: "POST", path: "/v1/apply", body: route, header: map[string]string{"Content-Type": "text/plain"}},
			415, []string{`Content-Type \"text/plain\" is not accepted for POST; send one of application/json, application/yaml, application/x-yaml, text/yaml`}, nil},
		{"form apply", req{method: "POST", path: "/v1/apply", body: route, header: map[string]string{"Content-Type": "application/x-www-form-urlencoded"}}, 415, nil, nil},
		{"no content type", req{method: "POST", path: "/v1/apply", body: route}, 415, []string{`POST needs a Content-Type`}, nil},
		{"yaml apply", req{method: "POST", path: "/v1/apply", body: route, header: yamlCT}, 200, []string{`"result": "created"`}, nil},
		{"text/yaml apply", req{method: "POST", path: "/v1/apply", body: route, header: map[string]string{"Content-Type": "text/yaml"}}, 200, []string{`"result": "unchanged"`}, nil},
		{"x-yaml apply", req{method: "POST", path: "/v1/apply", body: route, header: map[string]string{"Content-Type": "application/x-yaml"}}, 200, nil, nil},
		{"json apply with charset", req{method: "POST", path: "/v1/apply", body: jsonRoute, header: jsonCT}, 200, []string{`"result": "updated"`}, nil},
		{"delete without body needs no type", req{method: "DELETE", path: "/v1/routes/nothing"}, 404, []string{`route \"nothing\" not found`}, nil},
		{"delete with a text body", req{method: "DELETE", path: "/v1/routes/nothing", body: "x", header: map[string]string{"Content-Type": "text/plain"}}, 415, nil, nil},
		{"unknown path before type", req{method: "POST", path: "/v1/nothing", body: "x", header: map[string]string{"Content-Type": "text/plain"}}, 404, nil, nil},
		{"body over the limit", req{method: "DELETE", path: "/v1/routes/nothing", body: strings.Repeat("x", MaxRequestBytes+1), header: jsonCT},
			413, []string{`request body is over 1048576 bytes`}, nil},

		// Host (DNS rebinding).
		{"rebound name", req{method: "GET", path: "/v1/routes", host: "evil.example:" + port},
			421, []string{`host \"evil.example\" is not served here; allowed: 127.0.0.1, ::1, localhost (control --allowed-hosts)`}, nil},
		{"rebound apply", req{method: "POST", path: "/v1/apply", body: route, host: "evil.example", header: yamlCT}, 421, nil, nil},
		{"localhost", req{method: "GET", path: "/v1/routes", host: "localhost:" + port}, 200, nil, nil},
		{"LOCALHOST.", req{method: "GET", path: "/v1/routes", host: "LOCALHOST.:" + port}, 200, nil, nil},
		{"ipv6 loopback", req{method: "GET", path: "/v1/routes", host: "[::1]:" + port}, 200, nil, nil},
		{"other loopback ip", req{method: "GET", path: "/v1/routes", host: "127.0.0.2"}, 200, nil, nil},
		{"non-loopback ip", req{method: "GET", path: "/v1/routes", host: "10.1.2.3:" + port}, 421, nil, nil},
		{"healthz any host", req{method: "GET", path: "/healthz", host: "lb.internal"}, 200, []string{"ok"}, nil},

		// Origin (cross-site requests).
		{"cross-site simple post", req{method: "POST", path: "/v1/apply", body: route,
			header: map[string]string{"Content-Type": "text/plain", "Origin": "https://evil.example"}},
			403, []string{`origin \"https://evil.example\" may not call this API`, `control --allowed-origins`}, nil},
		{"cross-site yaml post", req{method: "POST", path: "/v1/apply", body: route, header: with(yamlCT, "Origin", "https://evil.example")}, 403, nil, nil},
		{"cross-site read", req{method: "GET", path: "/v1/routes", header: map[string]string{"Origin": "http://evil.example"}}, 403, nil, nil},
		{"cross-site delete", req{method: "DELETE", path: "/v1/routes/guarded", header: map[string]string{"Origin": "http://evil.example"}}, 403, nil, nil},
		{"null origin", req{method: "GET", path: "/v1/routes", header: map[string]string{"Origin": "null"}}, 403, nil, nil},
		{"other port on loopback", req{method: "GET", path: "/v1/routes", header: map[string]string{"Origin": "http://127.0.0.1:1"}}, 403, nil, nil},
		{"https same host", req{method: "GET", path: "/v1/routes", header: map[string]string{"Origin": "https://" + addr}}, 403, nil, nil},
		{"same origin", req{method: "POST", path: "/v1/apply", body: route, header: with(yamlCT, "Origin", "http://"+addr)},
			200, nil, map[string]string{"Access-Control-Allow-Origin": ""}},
		{"same origin localhost", req{method: "GET", path: "/v1/routes", host: "localhost:" + port, header: map[string]string{"Origin": "http://localhost:" + port}}, 200, nil, nil},

		// OPTIONS.
		{"options", req{method: "OPTIONS", path: "/v1/routes"}, 204, nil, map[string]string{"Allow": "GET, HEAD, OPTIONS"}},
		{"options item", req{method: "OPTIONS", path: "/v1/routes/x"}, 204, nil, map[string]string{"Allow": "DELETE, GET, HEAD, OPTIONS"}},
		{"options apply", req{method: "OPTIONS", path: "/v1/apply"}, 204, nil, map[string]string{"Allow": "POST, OPTIONS"}},
		{"options unknown", req{method: "OPTIONS", path: "/v1/nothing"}, 404, []string{`no such API endpoint: /v1/nothing`}, nil},
		{"preflight from elsewhere", req{method: "OPTIONS", path: "/v1/apply",
			header: map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}},
			403, nil, map[string]string{"Access-Control-Allow-Origin": "", "Access-Control-Allow-Methods": ""}},
		{"options rebound", req{method: "OPTIONS", path: "/v1/apply", host: "evil.example"}, 421, nil, nil},
	})
}

// startGuarded serves the shared control plane's API with another guard
// configuration (and limits) on a fresh loopback port.
func startGuarded(t *testing.T, gc guardConfig, lim httpLimits) string {
	t.Helper()
	return startAPI(t, gc, lim, 0)
}

// startAPI is startGuarded with a route configuration limit (0: default).
func startAPI(t *testing.T, gc guardConfig, lim httpLimits, maxRC int) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if gc.boundAddr == "" {
		gc.boundAddr = lis.Addr().String()
	}
	h, err := newAPI(shared.store, shared.reg, shared.xds, discard(), apiConfig{guard: gc, maxRouteConfigBytes: maxRC})
	if err != nil {
		t.Fatal(err)
	}
	srv := newHTTPServer(h, lim, discard())
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	return lis.Addr().String()
}

// Configured hosts and origins: allowed, with CORS headers for the origin;
// a listener on 0.0.0.0 takes any IP address as Host, still no other name.
func TestAPIGuardConfigured(t *testing.T) {
	sharedServer(t)
	addr := startGuarded(t, guardConfig{
		listenAddr:     "127.0.0.1:0",
		allowedHosts:   []string{"mesh.example.com", " Control.Internal "},
		allowedOrigins: []string{"https://dash.example.com", "http://localhost:3000/"},
	}, defaultHTTPLimits)
	dash := "https://dash.example.com"
	runGuardCases(t, addr, []guardCase{
		{"configured host", req{method: "GET", path: "/v1/routes", host: "mesh.example.com:15000"}, 200, nil, nil},
		{"configured host, case", req{method: "GET", path: "/v1/routes", host: "control.internal"}, 200, nil, nil},
		{"other host", req{method: "GET", path: "/v1/routes", host: "evil.example"}, 421,
			[]string{`allowed: 127.0.0.1, ::1, control.internal, localhost, mesh.example.com`}, nil},
		{"configured origin", req{method: "GET", path: "/v1/routes", header: map[string]string{"Origin": dash}}, 200, nil,
			map[string]string{"Access-Control-Allow-Origin": dash, "Vary": "Origin"}},
		{"configured origin, explicit default port", req{method: "GET", path: "/v1/routes", header: map[string]string{"Origin": "https://dash.example.com:443"}}, 200, nil, nil},
		{"configured origin, trailing slash in config", req{method: "GET", path: "/v1/routes", header: map[string]string{"Origin": "http://localhost:3000"}}, 200, nil, nil},
		{"preflight", req{method: "OPTIONS", path: "/v1/apply", header: map[string]string{"Origin": dash, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}},
			204, nil, map[string]string{"Access-Control-Allow-Origin": dash, "Access-Control-Allow-Methods": "POST, OPTIONS", "Access-Control-Allow-Headers": "Content-Type", "Allow": "POST, OPTIONS"}},
		{"configured origin still needs a content type", req{method: "POST", path: "/v1/apply", body: "x", header: map[string]string{"Origin": dash, "Content-Type": "text/plain"}}, 415, nil, nil},
		{"other port of a configured origin", req{method: "GET", path: "/v1/routes", header: map[string]string{"Origin": "https://dash.example.com:8443"}}, 403, nil, nil},
		{"http of a configured https origin", req{method: "GET", path: "/v1/routes", header: map[string]string{"Origin": "http://dash.example.com"}}, 403, nil, nil},
	})

	any := startGuarded(t, guardConfig{listenAddr: "0.0.0.0:15000"}, defaultHTTPLimits)
	runGuardCases(t, any, []guardCase{
		{"any ip", req{method: "GET", path: "/v1/routes", host: "10.1.2.3:15000"}, 200, nil, nil},
		{"any ipv6", req{method: "GET", path: "/v1/routes", host: "[2001:db8::1]:15000"}, 200, nil, nil},
		{"a name", req{method: "GET", path: "/v1/routes", host: "evil.example"}, 421, []string{`any IP address`}, nil},
	})

	for _, bad := range []guardConfig{
		{allowedOrigins: []string{"dash.example.com"}},
		{allowedOrigins: []string{"*"}},
		{allowedOrigins: []string{"https://dash.example.com/app"}},
		{allowedHosts: []string{"*.example.com"}},
		{allowedHosts: []string{"http://x/"}},
	} {
		if _, err := newGuard(nil, bad); err == nil {
			t.Errorf("newGuard(%+v) accepted a bad list", bad)
		}
	}
}

// The CLI's client works through the guard: YAML applies, bodiless
// deletes, by IP address and by localhost; and against a control plane
// given a non-loopback name (as --http-addr), by that name.
func TestAPIGuardCLIClient(t *testing.T) {
	s := sharedServer(t)
	_, port, _ := net.SplitHostPort(s.HTTPAddr())
	for _, server := range []string{s.HTTPAddr(), "http://localhost:" + port} {
		c := apiclient.New(server)
		if _, err := c.Apply(t.Context(), []byte(simpleRoute("cli", "default", "v1"))); err != nil {
			t.Fatalf("apply through %s: %v", server, err)
		}
		if err := c.Do(t.Context(), "DELETE", "/v1/routes/cli", nil, nil); err != nil {
			t.Fatalf("delete through %s: %v", server, err)
		}
	}

	// A control plane listening on a name: the client dials the loopback
	// address but sends that name as Host, as it would from another host.
	addr := startGuarded(t, guardConfig{listenAddr: "control.example:" + port}, defaultHTTPLimits)
	c := apiclient.New("http://control.example:" + port)
	c.HTTP = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}}
	if _, err := c.Apply(t.Context(), []byte(simpleRoute("cli", "default", "v1"))); err != nil {
		t.Fatalf("apply by the listen name: %v", err)
	}
	c = apiclient.New("http://other.example:" + port)
	c.HTTP = &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}}
	_, err := c.Apply(t.Context(), []byte(simpleRoute("cli", "default", "v1")))
	if ae, ok := err.(*apiclient.APIError); !ok || ae.Status != http.StatusMisdirectedRequest {
		t.Fatalf("apply by another name: %v", err)
	}
}

// A request whose body trickles in is cut at the read timeout: the
// handler's read fails and the connection is answered or closed, instead
// of being held for as long as the client likes.
func TestAPISlowBodyCut(t *testing.T) {
	sharedServer(t)
	lim := defaultHTTPLimits
	lim.readHeader, lim.read = 200*time.Millisecond, 300*time.Millisecond
	addr := startGuarded(t, guardConfig{}, lim)

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /v1/apply HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/yaml\r\nContent-Length: 1000\r\n\r\nkind: Ro")
	// Never send the rest. Bound the wait well above the timeout so a
	// loaded machine does not fail the test, far below "held forever".
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("the server still held the slow request after 10 s")
		}
		t.Logf("connection closed: %v", err) // cut without an answer: fine too
		return
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "reading request body") {
		t.Fatalf("slow body answered %d %s", resp.StatusCode, body)
	}
	t.Logf("answered %d %s", resp.StatusCode, strings.TrimSpace(string(body)))

	// A slow head is cut by ReadHeaderTimeout the same way.
	conn2, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	fmt.Fprintf(conn2, "GET /v1/routes HTTP/1.1\r\nHost: 127.0.0.1\r\n")
	conn2.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(conn2); err != nil {
		t.Fatalf("slow head not cut: %v", err)
	}
}
