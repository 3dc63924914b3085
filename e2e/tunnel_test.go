package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"
)

// An app under `trellis run` reaches an HTTPS server and a raw TCP server
// outside the mesh through its sidecar, the HTTPS_PROXY that trellis run
// gives it: TLS passes untouched (the client verifies the server's own
// certificate), and bytes that are not HTTP are echoed back with
// half-close. The test is the app: trellis run's NO_PROXY exempts
// 127.0.0.1, where these servers listen, so the test uses the pod's
// outbound address, which is what HTTPS_PROXY points at.
func TestTunnelOutsideMesh(t *testing.T) {
	t.Parallel()
	cp := startControl(t, "")
	pod := startPod(t, cp.xds, "web", "v1")

	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "outside %s %s", r.Proto, r.URL.Path)
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()
	tr := srv.Client().Transport.(*http.Transport).Clone() // trusts only srv's certificate
	tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: pod.outbound})
	tr.ForceAttemptHTTP2 = true
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(srv.URL + "/hello")
	if err != nil {
		t.Fatalf("HTTPS through the sidecar: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "outside HTTP/2.0 /hello" {
		t.Fatalf("HTTPS through the sidecar: %d %q", resp.StatusCode, body)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b, _ := io.ReadAll(c) // until the client's half-close
		c.Write(append([]byte("echo:"), b...))
	}()
	c, err := net.DialTimeout("tcp", pod.outbound, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	target := ln.Addr().String()
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	cresp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || cresp.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %v %v", target, cresp, err)
	}
	io.WriteString(c, "\x00raw bytes\r\n")
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(br)
	if err != nil || string(got) != "echo:\x00raw bytes\r\n" {
		t.Fatalf("TCP through the sidecar: %q %v", got, err)
	}

	// A host outside the mesh that does not answer: the CONNECT says so.
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	c2, err := net.DialTimeout("tcp", pod.outbound, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	c2.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c2, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", deadAddr, deadAddr)
	dresp, err := http.ReadResponse(bufio.NewReader(c2), &http.Request{Method: http.MethodConnect})
	if err != nil || dresp.StatusCode != 503 || dresp.Header.Get("x-trellis-error") != "upstream_connect_failed" {
		t.Fatalf("CONNECT to a dead host: %v %v", dresp, err)
	}
}
