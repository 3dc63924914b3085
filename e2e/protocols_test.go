package e2e

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"testing"
	"time"

	"trellis.dev/trellis/internal/testutil"
)

// appPod runs `trellis run` for service with the test itself as the app:
// the test listens on port before, and the pod's command only keeps the
// pod alive. extra goes before "--" (e.g. --app-protocol tcp).
func appPod(t *testing.T, control, service string, port int, extra ...string) *pod {
	t.Helper()
	args := append([]string{"run", "--service", service, "--version", "v1", "--port", strconv.Itoa(port),
		"--control", control, "--drain", "0"}, extra...)
	p := start(t, service, append(args, "--", "sleep", "3600")...)
	m := p.waitLine(runReady, 30*time.Second)
	return &pod{proc: p, service: service, version: "v1", inbound: m[1], outbound: m[2], admin: m[3], appPort: port}
}

// waitEndpoint waits until the client pod's config has the instance at
// inbound (the app's sidecar, registered once the app's port accepts).
func waitEndpoint(t *testing.T, client, app *pod) {
	t.Helper()
	testutil.Eventually(t, 30*time.Second, client.service+" knows "+app.service+" at "+app.inbound, func() bool {
		return gatewayHasEndpoint(t, &gateway{admin: client.admin}, app.inbound)
	})
}

// connectVia opens CONNECT target through the sidecar's outbound listener,
// as an app with HTTPS_PROXY does.
func connectVia(t *testing.T, outbound, target string) (*net.TCPConn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", outbound, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT %s: %v %v", target, resp, err)
	}
	return c.(*net.TCPConn), br
}

// echoTCP serves a line protocol on ln: a greeting as soon as a client
// connects (a server that speaks first), then every line back as it comes,
// and once the client half-closed, "bye\n" and the end.
func echoTCP(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			io.WriteString(c, "hello from echo-tcp\n")
			br := bufio.NewReader(c)
			for {
				line, err := br.ReadString('\n')
				if line != "" {
					io.WriteString(c, line)
				}
				if err != nil {
					break
				}
			}
			io.WriteString(c, "bye\n")
			c.(*net.TCPConn).CloseWrite()
		}()
	}
}

// A raw TCP service through two sidecars: the client's CONNECT to
// echo-tcp:PORT goes from its sidecar's outbound listener to the echo
// pod's inbound listener, which finds no HTTP there and relays to the app.
// Client-first and server-first both work (the second waits for the
// sidecars' first-byte waits: the greeting still comes), bytes pass
// untouched, and after the client closes its write side it still reads the
// server's last bytes.
func TestTCPServiceThroughTwoSidecars(t *testing.T) {
	t.Parallel()
	cp := startControl(t, "")
	port := freePort(t)
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go echoTCP(ln)
	echo := appPod(t, cp.xds, "echo-tcp", port)
	client := startPod(t, cp.xds, "web", "v1")
	waitEndpoint(t, client, echo)
	target := "echo-tcp:" + strconv.Itoa(port)

	expect := func(br *bufio.Reader, want string) {
		t.Helper()
		line, err := br.ReadString('\n')
		if err != nil || line != want {
			t.Fatalf("read %q, %v; want %q", line, err, want)
		}
	}
	// Client first: bytes sent as soon as the tunnel is up.
	c, br := connectVia(t, client.outbound, target)
	io.WriteString(c, "ping 1\n")
	expect(br, "hello from echo-tcp\n")
	expect(br, "ping 1\n")
	io.WriteString(c, "\x00\x01\xff binary\n")
	expect(br, "\x00\x01\xff binary\n")
	c.CloseWrite()
	rest, err := io.ReadAll(br)
	if err != nil || string(rest) != "bye\n" {
		t.Fatalf("after the half-close: %q, %v; want \"bye\\n\"", rest, err)
	}

	// Server first: the client waits for the greeting before it sends.
	c, br = connectVia(t, client.outbound, target)
	expect(br, "hello from echo-tcp\n")
	io.WriteString(c, "ping 2\n")
	expect(br, "ping 2\n")
	c.CloseWrite()
	if rest, err := io.ReadAll(br); err != nil || string(rest) != "bye\n" {
		t.Fatalf("server first, after the half-close: %q, %v", rest, err)
	}

	// The echo pod's sidecar counted both: one sniffed, one by silence.
	for _, want := range []string{
		`trellis_proxy_inbound_connections_total{by="sniffed",protocol="tcp"} `,
		`trellis_proxy_inbound_connections_total{by="silence",protocol="tcp"} `,
	} {
		testutil.Eventually(t, 10*time.Second, want, func() bool { return metricLine(echo.admin, want) != "" })
	}
}

// TLS the mesh does not terminate: an app serving HTTPS with its own
// certificate behind its sidecar, called by another app through its
// sidecar with CONNECT. The client verifies the app's certificate (the
// only one it trusts) and gets it, byte for byte; ALPN negotiates h2, or
// http/1.1 when that is all the client offers. Once detected, once
// declared (--app-protocol tls).
func TestTLSPassthroughThroughTwoSidecars(t *testing.T) {
	t.Parallel()
	cp := startControl(t, "")
	client := startPod(t, cp.xds, "web", "v1")
	cert, pool := testCertificate(t, "secure-app", "secure-app-tls")

	for _, tc := range []struct{ service, declared string }{{"secure-app", ""}, {"secure-app-tls", "tls"}} {
		port := freePort(t)
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{
			Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "%s %s %s", tc.service, r.Proto, r.URL.Path)
			}),
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}},
			ErrorLog:  log.New(io.Discard, "", 0), // the readiness probe's bare connects
		}
		go srv.ServeTLS(ln, "", "")
		defer srv.Close()
		var extra []string
		if tc.declared != "" {
			extra = []string{"--app-protocol", tc.declared}
		}
		app := appPod(t, cp.xds, tc.service, port, extra...)
		waitEndpoint(t, client, app)

		for _, h2 := range []bool{true, false} {
			tr := &http.Transport{
				Proxy:             http.ProxyURL(&url.URL{Scheme: "http", Host: client.outbound}),
				TLSClientConfig:   &tls.Config{RootCAs: pool},
				ForceAttemptHTTP2: true,
			}
			wantProto, wantALPN := "HTTP/2.0", "h2"
			if !h2 {
				tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
				tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
				wantProto, wantALPN = "HTTP/1.1", "http/1.1"
			}
			resp, err := (&http.Client{Transport: tr, Timeout: 20 * time.Second}).Get("https://" + tc.service + "/hello")
			if err != nil {
				t.Fatalf("%s (%s): %v", tc.service, wantALPN, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			tr.CloseIdleConnections()
			if want := tc.service + " " + wantProto + " /hello"; resp.StatusCode != 200 || string(body) != want {
				t.Fatalf("%s (%s): %d %q, want %q", tc.service, wantALPN, resp.StatusCode, body, want)
			}
			if resp.TLS.NegotiatedProtocol != wantALPN {
				t.Fatalf("%s: ALPN %q, want %q", tc.service, resp.TLS.NegotiatedProtocol, wantALPN)
			}
			if !bytes.Equal(resp.TLS.PeerCertificates[0].Raw, cert.Certificate[0]) {
				t.Fatalf("%s: the client saw a certificate other than the app's", tc.service)
			}
		}
		by := "sniffed"
		if tc.declared != "" {
			by = "declared"
		}
		want := `trellis_proxy_inbound_connections_total{by="` + by + `",protocol="tls"} `
		testutil.Eventually(t, 10*time.Second, tc.service+": "+want, func() bool { return metricLine(app.admin, want) != "" })
	}
}

// testCertificate makes a self-signed certificate for names and a pool
// that trusts it alone.
func testCertificate(t *testing.T, names ...string) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: names[0]},
		DNSNames:              names,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// metricLine returns the first line of the admin's metrics that starts
// with prefix, "" when none (or the admin does not answer).
func metricLine(admin, prefix string) string {
	resp, err := http.Get("http://" + admin + "/stats/prometheus")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if l := sc.Text(); len(l) >= len(prefix) && l[:len(prefix)] == prefix {
			return l
		}
	}
	return ""
}
