package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/testutil"
)

const timeoutRoute = `apiVersion: trellis.dev/v1alpha1
kind: Route
metadata: {name: reviews}
spec:
  service: reviews
  timeout: 200ms
  rules:
  - {version: v1, weight: 100}
`

// A Route's timeout reaches the gateway and is answered 504
// upstream_timeout when the instance is slower (the sample app's
// ?sleep=3s), on the HTTP/1.1 fast path, on the general path (a chunked
// upload) and over h2c; a request faster than the timeout is answered as
// before. No assertion on time: the clients' 10 s bound only keeps a
// failing test from hanging.
func TestRouteTimeoutThroughGateway(t *testing.T) {
	t.Parallel()
	cp := startControl(t, "")
	startPod(t, cp.xds, "reviews", "v1")
	gw := startGateway(t, cp.xds)
	apply(t, cp, timeoutRoute)
	inForce := regexp.MustCompile(`"timeout":\s*"200ms"`)
	testutil.Eventually(t, 10*time.Second, "route timeout in the gateway's config", func() bool {
		return inForce.MatchString(configDump(t, gw.admin))
	})

	h1 := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	var h2cProtocols http.Protocols
	h2cProtocols.SetUnencryptedHTTP2(true)
	h2c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Protocols: &h2cProtocols,
		DialContext: (&net.Dialer{}).DialContext}}
	t.Cleanup(func() { h1.CloseIdleConnections(); h2c.CloseIdleConnections() })

	send := func(c *http.Client, method, path string, body io.Reader) (int, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(context.Background(), method, "http://"+gw.addr+path, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "reviews"
		if body != nil {
			req.ContentLength = -1 // chunked: the general path
		}
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode, resp.Header.Get("x-trellis-error")
	}

	for _, tc := range []struct {
		name         string
		client       *http.Client
		method, path string
		body         io.Reader
		code         int
		err          string
	}{
		{"HTTP/1.1 fast path, slow instance", h1, "GET", "/slow?sleep=3s", nil, 504, "upstream_timeout"},
		{"HTTP/1.1 chunked upload, slow instance", h1, "POST", "/slow?sleep=3s", strings.NewReader("body"), 504, "upstream_timeout"},
		{"h2c, slow instance", h2c, "GET", "/slow?sleep=3s", nil, 504, "upstream_timeout"},
		{"HTTP/1.1 fast path, in time", h1, "GET", "/fast?sleep=10ms", nil, 200, ""},
		{"HTTP/1.1 chunked upload, in time", h1, "POST", "/fast", strings.NewReader("body"), 200, ""},
		{"h2c, in time", h2c, "GET", "/fast", nil, 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if code, e := send(tc.client, tc.method, tc.path, tc.body); code != tc.code || e != tc.err {
				t.Fatalf("%d %q, want %d %q", code, e, tc.code, tc.err)
			}
		})
	}
}
