package e2e

import (
	"context"
	"io"
	"net/http"
	"net/http/httptrace"
	"regexp"
	"testing"
	"time"

	"trellis.dev/trellis/internal/testutil"
)

// breakerPolicy lets each proxy have one request in flight to reviews.
const breakerPolicy = `apiVersion: trellis.dev/v1alpha1
kind: TrafficPolicy
metadata: {name: reviews}
spec:
  service: reviews
  connectionPool: {maxRequests: 1}
`

var overflowsMetric = regexp.MustCompile(`trellis_proxy_circuit_breaker_overflows_total\{cluster="reviews"\} (\d+)`)

// A circuit breaker tripping at its limit: with maxRequests 1, while a slow
// request (the sample app's ?sleep=2s) is in flight through the gateway,
// another request to reviews is answered 503 overloaded at once; the slow
// one still gets its 200, the gateway counts the overflow, and afterwards
// requests pass again.
func TestCircuitBreakerTrips(t *testing.T) {
	t.Parallel()
	cp := startControl(t, "")
	apply(t, cp, breakerPolicy)
	p := startPod(t, cp.xds, "reviews", "v1")
	gw := startGateway(t, cp.xds)
	testutil.Eventually(t, 20*time.Second, "gateway knows "+p.inbound, func() bool { return gatewayHasEndpoint(t, gw, p.inbound) })
	inForce := regexp.MustCompile(`"maxRequests":\s*1\b`)
	testutil.Eventually(t, 20*time.Second, "gateway has the circuit breaker", func() bool {
		return inForce.MatchString(configDump(t, gw.admin))
	})

	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	t.Cleanup(c.CloseIdleConnections)
	send := func(path string) (int, string, string) {
		t.Helper()
		req, err := http.NewRequestWithContext(context.Background(), "GET", "http://"+gw.addr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = "reviews"
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("x-trellis-error"), string(b)
	}
	if code, _, body := send("/fast"); code != 200 {
		t.Fatalf("before: %d %q", code, body)
	}

	// A slow request (3 s) goes out; meanwhile another is sent until one
	// is refused. The two race for the one slot: when a quick one is
	// there first, the slow one is the one refused, and the round starts
	// again. A refusal while the slow one is still out is "at once": it
	// did not wait for the slot.
	refused := false
	for round := 0; round < 5 && !refused; round++ {
		slow := make(chan int, 1)
		sent := make(chan struct{})
		go func() {
			// The quick requests start once the slow one is written, so
			// that it usually reaches the gateway first (when both started
			// together, the quick one, on the pooled connection, kept
			// winning the slot on a loaded machine).
			trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { close(sent) }}
			req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace),
				"GET", "http://"+gw.addr+"/slow?sleep=3s", nil)
			req.Host = "reviews"
			resp, err := c.Do(req)
			if err != nil {
				slow <- 0
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			slow <- resp.StatusCode
		}()
		select {
		case <-sent:
		case <-time.After(10 * time.Second):
			t.Fatal("the slow request was not sent")
		}
		slowCode := -1
		for n := 0; n < 1000 && slowCode < 0; n++ {
			code, errCode, body := send("/fast")
			if code == 503 {
				if errCode != "overloaded" {
					t.Fatalf("refused with %d %q %q, want 503 overloaded", code, errCode, body)
				}
				refused = true
				break
			}
			select {
			case slowCode = <-slow:
			case <-time.After(10 * time.Millisecond):
			}
		}
		if slowCode < 0 {
			slowCode = <-slow
		}
		switch {
		case refused && slowCode != 200:
			t.Fatalf("the slow request: %d, want 200", slowCode)
		case !refused && slowCode != 503:
			t.Fatalf("the slow request came back %d and nothing was refused meanwhile", slowCode)
		}
	}
	if !refused {
		t.Fatal("no request was refused while another was in flight, in 5 rounds")
	}
	if n := metricValue(t, gw, overflowsMetric); n < 1 {
		t.Fatalf("trellis_proxy_circuit_breaker_overflows_total for reviews %d, want at least 1", n)
	}
	testutil.Eventually(t, 5*time.Second, "requests pass again", func() bool {
		code, _, _ := send("/fast")
		return code == 200
	})
}
