package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"

	"trellis.dev/trellis/internal/api"
	"trellis.dev/trellis/internal/membership"
	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/testutil"
)

// A new pod whose app takes 2 s to listen is registered only once it does:
// three scale-ups under steady load through the gateway fail no request.
func TestScaleUpLosesNoRequest(t *testing.T) {
	t.Parallel()
	cp := startControl(t, "")
	first := startPod(t, cp.xds, "catalog", "v1")
	gw := startGateway(t, cp.xds)
	testutil.Eventually(t, 10*time.Second, "first instance at the gateway", func() bool {
		return gatewayHasEndpoint(t, gw, first.inbound)
	})

	load := startLoad(t, viaGateway(gw), "catalog", 3)
	for i := range 3 {
		p := slowPod(t, cp.xds, "catalog", "v1", 2*time.Second)
		// The sidecar is up with its config; the app sleeps for 2 s more.
		if hasInstanceAt(registered(t, cp, "catalog"), p.inbound) {
			t.Fatalf("scale-up %d: registered before its app listens", i)
		}
		testutil.Eventually(t, 20*time.Second, "the new instance at the gateway", func() bool {
			return gatewayHasEndpoint(t, gw, p.inbound)
		})
		p.waitLine(regexp.MustCompile(`sample echo listening on`), time.Second)
		time.Sleep(300 * time.Millisecond) // traffic reaches the new instance
	}
	load.check(t, "across 3 scale-ups", 100)
}

// bigRoute is a valid Route of about size bytes (header matches with long
// values), for a service that need not exist.
func bigRoute(name string, size int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: trellis.dev/v1alpha1\nkind: Route\nmetadata: {name: %s}\nspec:\n  service: %s\n  rules:\n  - version: v2\n    matches:\n", name, name)
	value := strings.Repeat("x", 900)
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "    - headers: {x-h%d: {exact: \"%s\"}}\n", i, value)
	}
	b.WriteString("  - {version: v1, weight: 100}\n")
	return b.String()
}

// Config trouble never takes instances out of the mesh: a proxy whose
// config grows over its receive limit keeps its instance registered and
// serving (its xDS stream fails, its membership stream does not), and a
// Route that would make the route configuration too large is refused at
// apply. Under steady load, no request fails and nothing is deregistered.
func TestConfigTroubleKeepsMembership(t *testing.T) {
	t.Parallel()
	cp := startControl(t, "")
	small := slowPod(t, cp.xds, "orders", "v1", 0, "--xds-max-recv-bytes", strconv.Itoa(1<<20))
	normal := startPod(t, cp.xds, "orders", "v2")
	gw := startGateway(t, cp.xds)
	testutil.Eventually(t, 10*time.Second, "both instances at the gateway", func() bool {
		return gatewayHasEndpoint(t, gw, small.inbound) && gatewayHasEndpoint(t, gw, normal.inbound)
	})
	leftBefore := countLines(cp.proc, leftLine)
	load := startLoad(t, viaGateway(gw), "orders", 3)

	// ~1.4 MB of Routes: under the control plane's 2 MiB limit, over the
	// 1 MiB that the small pod's sidecar accepts.
	for i := range 7 {
		apply(t, cp, bigRoute(fmt.Sprintf("big-%d", i), 200<<10))
	}
	small.waitLine(regexp.MustCompile(`over this proxy's receive limit`), 20*time.Second)

	// Over the limit: refused with the size and the limit; nothing stored.
	out, errs, code := trellisCLI(t, bigRoute("big-7", 200<<10)+"---\n"+bigRoute("big-8", 200<<10)+"---\n"+bigRoute("big-9", 200<<10),
		"apply", "--server", cp.http, "-f", "-")
	if code == 0 || !strings.Contains(errs, "over the limit of 2 MiB") {
		t.Errorf("a too-large apply: exit %d, out %q, err %q", code, out, errs)
	}
	if code := httpStatus("http://" + cp.http + "/v1/routes/big-7"); code != 404 {
		t.Errorf("the refused Route: GET says %d, want 404", code)
	}

	time.Sleep(time.Second) // the small sidecar keeps failing its xDS stream meanwhile
	if got := registered(t, cp, "orders"); len(got) != 2 {
		t.Errorf("instances of orders after the config trouble: %+v", got)
	}
	if n := countLines(cp.proc, leftLine) - leftBefore; n != 0 {
		t.Errorf("%d instances left the mesh during the config trouble", n)
	}
	load.check(t, "while a proxy's config was over its limit and a too-large Route was applied", 100)
}

// membershipConn dials the control plane's xDS port as a hostile process
// would.
func membershipConn(t *testing.T, xds string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(xds, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// adsStream opens an ADS stream announcing node and keeps it open; it
// returns the error that ends it (nil while open, after wait).
func adsStream(t *testing.T, conn *grpc.ClientConn, node *core.Node, wait time.Duration) error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := discovery.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discovery.DiscoveryRequest{Node: node, TypeUrl: resource.ListenerType}); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				errc <- err
				return
			}
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-time.After(wait):
		return nil
	}
}

func sidecarNode(t *testing.T, id, service, address string, port int) *core.Node {
	t.Helper()
	md, err := structpb.NewStruct(map[string]any{meshxds.MetaRole: meshxds.RoleSidecar, meshxds.MetaService: service,
		meshxds.MetaVersion: "v1", meshxds.MetaAddress: address, meshxds.MetaPort: strconv.Itoa(port)})
	if err != nil {
		t.Fatal(err)
	}
	return &core.Node{Id: id, Metadata: md}
}

// A registration with a bad address is refused with the reason, and while
// the process that tried stays connected the mesh keeps converging: a Route
// change and a new pod both reach the gateway.
func TestBadRegistrationRefusedMeshConverges(t *testing.T) {
	t.Parallel()
	cp := startControl(t, "")
	a := startPod(t, cp.xds, "billing", "v1")
	gw := startGateway(t, cp.xds)
	testutil.Eventually(t, 10*time.Second, "v1 at the gateway", func() bool { return gatewayHasEndpoint(t, gw, a.inbound) })

	conn := membershipConn(t, cp.xds)
	_, err := membership.Join(conn, membership.Announcement{Ready: true,
		Instance: api.Instance{ID: "billing.evil", Service: "billing", Version: "v1", Address: "not-an-ip", Port: 15006}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), `address: "not-an-ip" is not an IP address`) {
		t.Fatalf("bad registration: %v, want InvalidArgument naming the address", err)
	}
	// The old way in (node metadata on an ADS stream) registers nothing,
	// and the stream stays open while the mesh changes.
	if err := adsStream(t, conn, sidecarNode(t, "billing.evil2", "billing", "not-an-ip", 15006), 300*time.Millisecond); err != nil {
		t.Fatalf("ADS stream: %v", err)
	}
	if got := registered(t, cp, "billing"); len(got) != 1 {
		t.Fatalf("instances of billing: %+v", got)
	}

	b := startPod(t, cp.xds, "billing", "v2")
	testutil.Eventually(t, 10*time.Second, "the new pod at the gateway", func() bool { return gatewayHasEndpoint(t, gw, b.inbound) })
	apply(t, cp, `apiVersion: trellis.dev/v1alpha1
kind: Route
metadata: {name: billing}
spec: {service: billing, rules: [{version: v2, weight: 100}]}`)
	testutil.Eventually(t, 10*time.Second, "the Route at the gateway", func() bool {
		code, v, _, err := viaGateway(gw).get("billing", "/", nil)
		return err == nil && code == 200 && v == "v2"
	})
	if got := viaGateway(gw).split(t, "billing", "/", nil, 20); got["v2"] != 20 {
		t.Errorf("after the Route: %v", got)
	}
}

// A second process claiming a live pod's node id is refused, on the
// membership stream and on the xDS stream; the pod stays registered at its
// own address and keeps serving.
func TestNodeIDTakeoverRefused(t *testing.T) {
	t.Parallel()
	cp := startControl(t, "")
	a := startPod(t, cp.xds, "ledger", "v1")
	gw := startGateway(t, cp.xds)
	testutil.Eventually(t, 10*time.Second, "at the gateway", func() bool { return gatewayHasEndpoint(t, gw, a.inbound) })
	is := registered(t, cp, "ledger")
	if len(is) != 1 {
		t.Fatalf("instances: %+v", is)
	}
	victim := is[0]

	conn := membershipConn(t, cp.xds)
	thief := victim
	thief.Port = 1
	_, err := membership.Join(conn, membership.Announcement{Instance: thief, Ready: true})
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("membership takeover: %v, want AlreadyExists", err)
	}
	err = adsStream(t, conn, sidecarNode(t, victim.ID, "ledger", "127.0.0.1", 1), 5*time.Second)
	if status.Code(err) != codes.AlreadyExists {
		t.Fatalf("xDS takeover: %v, want AlreadyExists", err)
	}
	conn.Close()
	time.Sleep(200 * time.Millisecond)
	if got := registered(t, cp, "ledger"); len(got) != 1 || got[0] != victim {
		t.Fatalf("after the takeover attempts: %+v, want %+v", got, victim)
	}
	if got := viaGateway(gw).split(t, "ledger", "/", nil, 10); got["v1"] != 10 {
		t.Errorf("traffic after the takeover attempts: %v", got)
	}
	if !strings.Contains(cp.output(), "refused a second stream for a live node id") {
		t.Error("the attempt is not in the control plane's log")
	}
}

// vmHWM is a process's peak resident memory in bytes (Linux).
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	for _, l := range strings.Split(string(data), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmHWM:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM")
	return 0
}

// The control plane's HTTP API refuses hostile input at its edge: a YAML
// alias bomb (with bounded memory), a cross-site text/plain write, a
// rebinding Host.
func TestAPIRefusesHostileInput(t *testing.T) {
	t.Parallel()
	cp := startControl(t, "")
	post := func(body, contentType string, header map[string]string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+cp.http+"/v1/apply", strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		for k, v := range header {
			if k == "Host" {
				req.Host = v
				continue
			}
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	// An alias bomb: 9 levels of 9 aliases, ~387 million strings if expanded.
	var bomb strings.Builder
	bomb.WriteString("apiVersion: trellis.dev/v1alpha1\nkind: Route\nmetadata: {name: bomb}\nspec:\n  service: bomb\n  a0: &a0 [\"" + strings.Repeat("x", 100) + "\"]\n")
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&bomb, "  a%d: &a%d [*a%d,*a%d,*a%d,*a%d,*a%d,*a%d,*a%d,*a%d,*a%d]\n", i, i, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1, i-1)
	}
	before := vmHWM(t, cp.cmd.Process.Pid)
	for range 4 {
		code, body := post(bomb.String(), "application/yaml", nil)
		if code != 400 || !strings.Contains(body, "alias") {
			t.Fatalf("alias bomb: %d %s", code, body)
		}
	}
	if grew := vmHWM(t, cp.cmd.Process.Pid) - before; grew > 100<<20 {
		t.Errorf("the control plane's peak memory grew %d MB on alias bombs", grew>>20)
	}

	route := "apiVersion: trellis.dev/v1alpha1\nkind: Route\nmetadata: {name: csrf}\nspec: {service: csrf, rules: [{version: v1, weight: 100}]}\n"
	if code, body := post(route, "text/plain", map[string]string{"Origin": "http://evil.example"}); code < 400 {
		t.Errorf("cross-site text/plain apply: %d %s", code, body)
	}
	if code, body := post(route, "text/plain", nil); code != http.StatusUnsupportedMediaType {
		t.Errorf("text/plain apply: %d %s, want 415", code, body)
	}
	if code, body := post(route, "application/yaml", map[string]string{"Origin": "http://evil.example"}); code != http.StatusForbidden {
		t.Errorf("cross-origin apply: %d %s, want 403", code, body)
	}
	if code, body := post(route, "application/yaml", map[string]string{"Host": "evil.example"}); code != http.StatusMisdirectedRequest {
		t.Errorf("rebinding Host: %d %s, want 421", code, body)
	}
	if code := httpStatus("http://" + cp.http + "/v1/routes/csrf"); code != 404 {
		t.Errorf("after the refused applies: GET says %d, want 404", code)
	}
	if code, body := post(route, "application/yaml", nil); code != 200 {
		t.Errorf("a good apply: %d %s", code, body)
	}
}

// The gateway bounds what a client can send: a 100 KiB header is answered
// 431 header_too_large, and a connection flood beyond --max-connections is
// answered 503 overloaded and counted, while clients already connected keep
// being served.
func TestGatewayBoundsHeadersAndConnections(t *testing.T) {
	t.Parallel()
	cp := startControl(t, "")
	a := startPod(t, cp.xds, "search", "v1")
	p := start(t, "gateway", "gateway", "--listen", "127.0.0.1:0", "--control", cp.xds, "--max-connections", "8")
	m := p.waitLine(gatewayReady, 30*time.Second)
	gw := &gateway{proc: p, addr: m[1], admin: m[2]}
	testutil.Eventually(t, 20*time.Second, "at the gateway", func() bool {
		return httpStatus("http://"+gw.admin+"/ready") == 200 && gatewayHasEndpoint(t, gw, a.inbound)
	})

	req, _ := http.NewRequest("GET", "http://"+gw.addr+"/", nil)
	req.Host = "search"
	req.Header.Set("X-Big", strings.Repeat("b", 100<<10))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || resp.Header.Get("x-trellis-error") != "header_too_large" {
		t.Fatalf("100 KiB header: %d %q", resp.StatusCode, resp.Header.Get("x-trellis-error"))
	}

	// Two keep-alive clients hold 2 of the 8 connections while the flood
	// comes.
	mc := &meshClient{http: &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 2, MaxConnsPerHost: 2}}, base: "http://" + gw.addr}
	load := startLoad(t, mc, "search", 2)
	testutil.Eventually(t, 10*time.Second, "load flowing", func() bool { ok, _ := load.counts(); return ok > 10 })

	var flood []net.Conn
	defer func() {
		for _, c := range flood {
			c.Close()
		}
	}()
	overloaded := 0
	for range 30 {
		c, err := net.Dial("tcp", gw.addr)
		if err != nil {
			t.Fatal(err)
		}
		flood = append(flood, c)
		c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		b := make([]byte, 512)
		n, _ := c.Read(b) // a connection under the cap says nothing until asked
		if strings.HasPrefix(string(b[:n]), "HTTP/1.1 503") && strings.Contains(strings.ToLower(string(b[:n])), "x-trellis-error: overloaded") {
			overloaded++
		}
	}
	if overloaded < 30-8 {
		t.Errorf("%d of 30 flood connections answered overloaded, want at least %d", overloaded, 30-8)
	}
	time.Sleep(200 * time.Millisecond) // the load goes on during the flood
	load.check(t, "during a connection flood", 20)

	metrics := getBody(t, "http://"+gw.admin+"/stats/prometheus")
	re := regexp.MustCompile(`trellis_proxy_connections_rejected_total\{listener="gateway",reason="overloaded"\} (\d+)`)
	mm := re.FindStringSubmatch(metrics)
	if mm == nil {
		t.Fatalf("no rejected-connections counter in:\n%s", metrics)
	}
	if n, _ := strconv.Atoi(mm[1]); n < overloaded {
		t.Errorf("counted %d rejected connections, %d were answered overloaded", n, overloaded)
	}
}

// metricValue is the gateway's value of the counter matched by re (0 when
// it has none yet).
func metricValue(t *testing.T, gw *gateway, re *regexp.Regexp) int {
	t.Helper()
	m := re.FindStringSubmatch(getBody(t, "http://"+gw.admin+"/stats/prometheus"))
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

func getBody(t *testing.T, u string) string {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}
