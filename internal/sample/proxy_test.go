package sample

// How the sample apps find the sidecar, and how these tests prove it.
//
// Both apps use nothing but the standard proxy environment variables:
//
//   - /call uses an http.Transport with Proxy: http.ProxyFromEnvironment, so a
//     plain-http callee goes through HTTP_PROXY as an absolute-form request.
//
//   - GRPCCall is a stock grpc.NewClient(target, insecure creds). What grpc-go
//     v1.85.0 does with proxies (read in its module source):
//     internal/resolver/delegatingresolver asks
//     http.ProxyFromEnvironment for a request with URL scheme "https" and host
//     = the target's endpoint, so it is HTTPS_PROXY (or https_proxy) that
//     applies, never HTTP_PROXY, and NO_PROXY is honoured. If a proxy applies
//     and the target uses the default "dns" scheme (grpc.NewClient's default),
//     the target is NOT resolved locally: the unresolved "host:port" is the
//     address, only the proxy's own address is resolved, and
//     internal/transport/proxy.go sends "CONNECT echo:9000 HTTP/1.1" (with
//     Proxy-Authorization if the proxy URL has user info). A target without
//     a port gets :443 (GRPC_EXPERIMENTAL_ENABLE_DEFAULT_PORT_FOR_PROXY_TARGET,
//     on by default). Local resolution happens only with
//     grpc.WithLocalDNSResolution(), which the deprecated grpc.Dial adds: a
//     grpc.Dial app would CONNECT to an IP instead. As for any Go program,
//     loopback and "localhost" targets never use a proxy.
//
// Go's http.ProxyFromEnvironment reads the environment once per process
// (sync.Once), and grpc-go calls that very function, so t.Setenv cannot
// switch proxies inside one test binary. The proxy tests therefore re-execute
// the test binary with the proxy variables set (the os.Args[0] -test.run
// pattern); the child does the calls and prints what it got, and the parent
// runs the servers, the proxy, and all the checks.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	childModeEnv   = "TRELLIS_SAMPLE_TEST_CHILD"
	childTargetEnv = "TRELLIS_SAMPLE_TEST_TARGET"
)

// runChild re-executes this test binary, running only test, with env added
// to a proxy-free copy of ours. It returns the child's JSON output lines.
func runChild(t *testing.T, test string, env ...string) (lines []map[string]any, output string, err error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+test+"$", "-test.count=1")
	cmd.Env = childEnv(env...)
	out, err := cmd.CombinedOutput()
	for line := range strings.Lines(string(out)) {
		if strings.HasPrefix(line, "{") {
			var m map[string]any
			if jerr := json.Unmarshal([]byte(line), &m); jerr != nil {
				t.Fatalf("child line %q: %v", line, jerr)
			}
			lines = append(lines, m)
		}
	}
	return lines, string(out), err
}

// connectProxy is a minimal CONNECT proxy that knows service names, as a
// sidecar does: it records each CONNECT target and tunnels known names to
// their real address.
type connectProxy struct {
	routes map[string]string // CONNECT target -> real address

	mu      sync.Mutex
	targets []string
	conns   []net.Conn
}

func startConnectProxy(t *testing.T, routes map[string]string) (*connectProxy, string) {
	p := &connectProxy{routes: routes}
	srv := httptest.NewServer(p)
	t.Cleanup(func() {
		srv.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns { // hijacked: srv.Close does not know them
			c.Close()
		}
	})
	return p, srv.URL
}

func (p *connectProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodConnect {
		http.Error(w, "CONNECT only", http.StatusMethodNotAllowed)
		return
	}
	p.mu.Lock()
	p.targets = append(p.targets, r.Host)
	p.mu.Unlock()
	addr, ok := p.routes[r.Host]
	if !ok {
		http.Error(w, "unknown target "+r.Host, http.StatusBadGateway)
		return
	}
	up, err := net.Dial("tcp", addr)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	down, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, up, down)
	p.mu.Unlock()
	if _, err := io.WriteString(down, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		up.Close()
		down.Close()
		return
	}
	// Either side ending ends the tunnel.
	go func() { io.Copy(up, brw); up.Close(); down.Close() }()
	go func() { io.Copy(down, up); up.Close(); down.Close() }()
}

func (p *connectProxy) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.targets...)
}

// TestGRPCCallThroughConnectProxy proves the finding above: with HTTPS_PROXY
// set, a stock grpc-go client sends CONNECT with the unresolved target name
// (echo.trellis.test cannot resolve: .test is reserved), and HTTP_PROXY alone
// is ignored by grpc-go.
func TestGRPCCallThroughConnectProxy(t *testing.T) {
	if os.Getenv(childModeEnv) == "grpc-call" {
		cfg := GRPCCallConfig{Target: os.Getenv(childTargetEnv), Message: "via proxy", Count: 2, Timeout: 3 * time.Second}
		if err := GRPCCall(context.Background(), cfg, os.Stdout); err != nil {
			fmt.Printf("{\"error\":%q}\n", err.Error())
		}
		return
	}
	t.Parallel()
	const target = "echo.trellis.test:9000"
	echo := startEcho(t, EchoConfig{Service: "echo", Version: "v2"})

	tests := []struct {
		name    string
		proxyIn string // environment variable that names the proxy
		proxied bool
	}{
		{"HTTPS_PROXY", "HTTPS_PROXY", true},
		{"https_proxy", "https_proxy", true},
		{"HTTP_PROXY is not for grpc", "HTTP_PROXY", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			proxy, proxyURL := startConnectProxy(t, map[string]string{target: echo})
			lines, out, err := runChild(t, "TestGRPCCallThroughConnectProxy",
				childModeEnv+"=grpc-call", childTargetEnv+"="+target, tt.proxyIn+"="+proxyURL)
			if err != nil {
				t.Fatalf("child: %v\n%s", err, out)
			}
			seen := proxy.seen()
			if !tt.proxied {
				if len(seen) != 0 || len(lines) != 1 || !strings.Contains(fmt.Sprint(lines[0]["error"]), "grpc-call health") {
					t.Fatalf("want a direct (failing) dial; proxy saw %v; child:\n%s", seen, out)
				}
				return
			}
			if len(seen) == 0 {
				t.Fatalf("proxy saw no CONNECT; child:\n%s", out)
			}
			for _, s := range seen {
				if s != target {
					t.Errorf("CONNECT %q, want the unresolved %q", s, target)
				}
			}
			calls := map[string]int{}
			for _, l := range lines {
				if e, ok := l["error"]; ok {
					t.Fatalf("child: %v\n%s", e, out)
				}
				calls[fmt.Sprint(l["call"])]++
				if l["call"] == "unary" {
					if got := path(l, "metadata", ":authority"); got != target {
						t.Errorf(":authority %v, want %s", got, target)
					}
					if l["version"] != "v2" || l["message"] != "via proxy" {
						t.Errorf("unary %v", l)
					}
				}
			}
			if calls["health"] != 1 || calls["unary"] != 1 || calls["stream"] != 2 || calls["chat"] != 3 {
				t.Errorf("calls %v\n%s", calls, out)
			}
		})
	}
}

// sidecar is a minimal forward HTTP proxy standing in for the Trellis
// sidecar: it takes absolute-form requests, routes by host name, adds the
// x-trellis-* response headers, and answers unknown hosts with a mesh error.
type sidecar struct {
	routes map[string]EchoConfig // host -> instance (Addr, Service, Version)
	direct http.RoundTripper

	mu   sync.Mutex
	seen []*http.Request
}

func startSidecar(t *testing.T, routes map[string]EchoConfig) (*sidecar, string) {
	tr := &http.Transport{Proxy: nil}
	s := &sidecar{routes: routes, direct: tr}
	srv := httptest.NewServer(s)
	t.Cleanup(func() { srv.Close(); tr.CloseIdleConnections() })
	return s, srv.URL
}

func (s *sidecar) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.seen = append(s.seen, r.Clone(context.Background()))
	s.mu.Unlock()
	if !r.URL.IsAbs() {
		http.Error(w, "want an absolute-form proxy request", http.StatusBadRequest)
		return
	}
	inst, ok := s.routes[r.URL.Hostname()]
	if !ok {
		w.Header().Set("x-trellis-error", "no_route")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, "no route for host %s\n", r.Host)
		return
	}
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Host = inst.Addr // out.Host keeps the service name, as a mesh does
	resp, err := s.direct.RoundTrip(out)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.Header().Set("x-trellis-service", inst.Service)
	w.Header().Set("x-trellis-version", inst.Version)
	w.WriteHeader(resp.StatusCode)
	io.Copy(w, resp.Body)
}

func (s *sidecar) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.seen...)
}

// TestCallThroughHTTPProxy: /call reaches its callee through HTTP_PROXY, in
// absolute form, with the context headers and nothing else forwarded.
func TestCallThroughHTTPProxy(t *testing.T) {
	if os.Getenv(childModeEnv) == "call" {
		childCalls(t)
		return
	}
	t.Parallel()
	backend := startEcho(t, EchoConfig{Service: "backend", Version: "v2"})
	sc, proxyURL := startSidecar(t, map[string]EchoConfig{
		"backend": {Addr: backend, Service: "backend", Version: "v2"},
	})
	lines, out, err := runChild(t, "TestCallThroughHTTPProxy", childModeEnv+"=call", "HTTP_PROXY="+proxyURL)
	if err != nil || len(lines) != 2 {
		t.Fatalf("child: %v\n%s", err, out)
	}

	// 1: a routed call.
	ok := lines[0]
	want := map[string]any{
		"status": 200.0, "body.service": "frontend", "body.path": "/call",
		"body.upstream.status":                    200.0,
		"body.upstream.headers.x-trellis-service": "backend",
		"body.upstream.headers.x-trellis-version": "v2",
		"body.upstream.body.service":              "backend",
		"body.upstream.body.version":              "v2",
		"body.upstream.body.path":                 "/hello",
		"body.upstream.body.query":                "x=1",
		"body.upstream.body.host":                 "backend",
		"body.upstream.body.headers.gray":         "1",
		"body.upstream.body.headers.x-request-id": "rid-7",
		"body.upstream.body.headers.traceparent":  "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		"body.upstream.body.headers.x-b3-traceid": "abc",
		"body.upstream.body.headers.x-private":    nil, // not a context header: stays home
	}
	for k, v := range want {
		if got := path(ok, strings.Split(k, ".")...); got != v {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}

	// 2: the mesh refuses; /call still answers 200 and shows the mesh error.
	nr := lines[1]
	if path(nr, "status") != 200.0 || path(nr, "body", "upstream", "status") != 404.0 ||
		path(nr, "body", "upstream", "headers", "x-trellis-error") != "no_route" ||
		path(nr, "body", "upstream", "body") != "no route for host missing\n" {
		t.Errorf("no-route call: %v", nr)
	}

	var got []string
	for _, r := range sc.requests() {
		got = append(got, r.Method+" "+r.URL.String())
	}
	if strings.Join(got, ", ") != "GET http://backend/hello?x=1, GET http://missing/" {
		t.Errorf("proxy saw %v", got)
	}
}

// childCalls runs in the re-executed binary: a frontend echo whose /call goes
// through HTTP_PROXY. It prints {"status":…,"body":…} per request.
func childCalls(t *testing.T) {
	front := startEcho(t, EchoConfig{Service: "frontend", Version: "v1"})
	hdr := map[string]string{
		"gray": "1", "x-request-id": "rid-7", "x-b3-traceid": "abc", "x-private": "secret",
		"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	}
	c := noProxyClient() // to reach the frontend itself (loopback is never proxied anyway)
	defer c.CloseIdleConnections()
	w := bufio.NewWriter(os.Stdout)
	defer w.Flush()
	for _, q := range []string{"to=backend&path=" + url.QueryEscape("/hello?x=1"), "to=missing"} {
		status, body := get(t, c, "http://"+front+"/call?"+q, hdr)
		line, _ := json.Marshal(map[string]any{"status": status, "body": body})
		fmt.Fprintf(w, "%s\n", line)
	}
}

// Calls chain: each hop's path is the next /call. Loopback targets never use
// a proxy, so this runs in-process whatever the environment.
func TestCallChain(t *testing.T) {
	t.Parallel()
	a := startEcho(t, EchoConfig{Service: "a"})
	b := startEcho(t, EchoConfig{Service: "b"})
	c := startEcho(t, EchoConfig{Service: "c"})
	inner := "/call?to=" + c + "&path=" + url.QueryEscape("/deep")
	status, m := get(t, noProxyClient(), "http://"+a+"/call?to="+b+"&path="+url.QueryEscape(inner),
		map[string]string{"gray": "1", "x-other": "no"})
	if status != 200 {
		t.Fatalf("%d %v", status, m)
	}
	last := []string{"upstream", "body", "upstream", "body"}
	if got := path(m, append(last, "service")...); got != "c" {
		t.Errorf("last hop service %v", got)
	}
	if got := path(m, append(last, "path")...); got != "/deep" {
		t.Errorf("last hop path %v", got)
	}
	if got := path(m, append(last, "headers", "gray")...); got != "1" {
		t.Errorf("gray not propagated over two hops: %v", got)
	}
	if got := path(m, append(last, "headers", "x-other")...); got != nil {
		t.Errorf("x-other propagated: %v", got)
	}
}
