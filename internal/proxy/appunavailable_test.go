package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/model"
)

// unknownLength hides a body's length: sent chunked.
type unknownLength struct{ io.Reader }

// A new pod whose sidecar is registered before its app listens: its
// inbound sidecar answers app_unavailable and the caller sends the request
// to the other instance, so no request fails.
func TestAppUnavailableRetriedOnAnotherInstance(t *testing.T) {
	healthy := startApp(t, "v1")
	good := sidecar(t, "reviews", "v1", healthy.addr)
	starting := sidecar(t, "reviews", "v1", deadAddr(t)) // nothing listens on its app port
	client, _ := startProxy(t, Config{Role: meshxds.RoleSidecar, Service: "productpage", Version: "v1"},
		snapshot([]*model.VirtualHost{vhost("reviews", to("reviews|v1", 100))},
			map[string][]string{"reviews|v1": {starting.InboundAddr(), good.InboundAddr()}}))

	clients := []struct {
		name string
		c    *http.Client
	}{{"HTTP/1.1", h1Client(t)}, {"HTTP/2.0", h2cClient(t, nil)}}
	// Round robin: every other request starts at the starting pod; each
	// (client, method) goes to both.
	for i := range 100 {
		cl := clients[i/4%2]
		method, body := "GET", ""
		if i/2%2 == 1 {
			method, body = "POST", fmt.Sprint("n", i)
		}
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		r := do(t, cl.c, newRequest(t, method, "http://"+client.OutboundAddr()+"/p", "reviews", rd))
		want := "v1 " + cl.name + " reviews /p"
		if body != "" {
			want += " body=" + body
		}
		if r.code != 200 || r.body != want || r.header.Get(meshxds.HeaderService) != "reviews" {
			t.Fatalf("request %d (%s %s): %d %q %v, want 200 %q", i, cl.name, method, r.code, r.body, r.header, want)
		}
	}

	// A large streaming body is not kept to be sent again: the request
	// that starts at the starting pod gets its 503, passed through (with
	// its sidecar's headers); the other one is answered.
	large := strings.Repeat("x", 200<<10)
	var got []string
	for range 2 {
		r := do(t, clients[0].c, newRequest(t, "POST", "http://"+client.OutboundAddr()+"/p", "reviews",
			unknownLength{strings.NewReader(large)}))
		got = append(got, fmt.Sprint(r.code, " ", r.header.Get(meshxds.HeaderError), " ", r.header.Get(meshxds.HeaderService)))
	}
	if strings.Join(got, ", ") != "503 app_unavailable reviews, 200  reviews" &&
		strings.Join(got, ", ") != "200  reviews, 503 app_unavailable reviews" {
		t.Fatalf("large bodies: %q, want one 503 app_unavailable passed through and one 200", got)
	}
}

// An app cannot make callers send its requests again: its sidecar removes
// the x-trellis-error it sets, so the caller passes its 503 on as is.
func TestAppCannotClaimAppUnavailable(t *testing.T) {
	var hits atomic.Int32
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var protos http.Protocols // the sidecar keeps the protocol: h2c to the app too
	protos.SetHTTP1(true)
	protos.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &protos, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set(meshxds.HeaderError, "app_unavailable")
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "busy")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	liar := sidecar(t, "reviews", "v1", ln.Addr().String())
	good := sidecar(t, "reviews", "v1", startApp(t, "v1").addr)
	client, _ := startProxy(t, Config{Role: meshxds.RoleSidecar, Service: "productpage", Version: "v1"},
		snapshot([]*model.VirtualHost{vhost("reviews", to("reviews|v1", 100))},
			map[string][]string{"reviews|v1": {liar.InboundAddr(), good.InboundAddr()}}))

	for _, c := range []*http.Client{h1Client(t), h2cClient(t, nil)} {
		var got []string
		for range 2 { // one starts at each instance
			r := do(t, c, newRequest(t, "GET", "http://"+client.OutboundAddr()+"/p", "reviews", nil))
			got = append(got, fmt.Sprintf("%d %q %s", r.code, r.header.Get(meshxds.HeaderError), r.body))
		}
		if !strings.Contains(strings.Join(got, "|"), `503 "" busy`) {
			t.Fatalf("got %q, want the app's 503 without x-trellis-error", got)
		}
	}
	if n := hits.Load(); n != 2 {
		t.Fatalf("the app got %d requests, want 2 (one per client, none sent again)", n)
	}
}
