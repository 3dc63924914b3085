package sample

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

const (
	callTimeout = 10 * time.Second
	maxCallBody = 1 << 20 // enough for any echo answer; bounds memory if the callee misbehaves
)

// forwardedHeaders are copied from the incoming request onto the /call
// request, as a well-behaved app propagates context: the canary header, the
// request id, tracing (W3C and B3) and Trellis lanes. forwardedPrefixes match
// by prefix. Names are lower case.
var (
	forwardedHeaders  = []string{"gray", "x-request-id", "traceparent", "tracestate", "b3"}
	forwardedPrefixes = []string{"x-b3-", "x-trellis-lane"}
)

// upstreamHeaders are the response headers of the callee worth showing: the
// ones the mesh adds.
var upstreamHeaders = []string{"x-trellis-service", "x-trellis-version", "x-trellis-error"}

// upstreamReply describes the answer of the service called by /call.
type upstreamReply struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers"`
	// Body is the callee's JSON as is (json.RawMessage) or, if it is not
	// JSON (for example a mesh error line), a string.
	Body any `json:"body"`
}

// newCallClient returns the client for /call. Proxy is read from the
// environment, so inside the mesh the call goes to the sidecar in HTTP_PROXY,
// exactly as for any app using Go's default transport.
func newCallClient() *http.Client {
	return &http.Client{
		Timeout: callTimeout,
		Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 16,
			IdleConnTimeout:     90 * time.Second,
		},
		// A redirect is part of what the callee answered; show it, don't follow it.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// call performs GET http://<to><path> for /call?to=SERVICE&path=/… .
func (h *echoHandler) call(r *http.Request) (*upstreamReply, error) {
	q := r.URL.Query()
	to := q.Get("to")
	if to == "" {
		return nil, fmt.Errorf("/call needs ?to=SERVICE")
	}
	path := q.Get("path")
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	// String concatenation, not url.URL fields: path may carry its own query
	// (path=/call?to=next) so calls can be chained.
	u, err := url.Parse("http://" + to + path)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("call %q%s: bad target", to, path)
	}
	req, err := http.NewRequestWithContext(r.Context(), http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("call %s: %w", u, err)
	}
	copyForwarded(req.Header, r.Header)

	resp, err := h.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("call %s: %w", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCallBody))
	if err != nil {
		return nil, fmt.Errorf("call %s: reading body: %w", u, err)
	}

	up := &upstreamReply{Status: resp.StatusCode, Headers: map[string]string{}, Body: string(body)}
	for _, name := range upstreamHeaders {
		if v := resp.Header.Get(name); v != "" {
			up.Headers[name] = v
		}
	}
	if len(body) > 0 && json.Valid(body) {
		up.Body = json.RawMessage(body)
	}
	return up, nil
}

func copyForwarded(dst, src http.Header) {
	for name, vals := range src {
		lower := strings.ToLower(name)
		if forwarded(lower) {
			for _, v := range vals {
				dst.Add(name, v)
			}
		}
	}
}

func forwarded(lower string) bool {
	if slices.Contains(forwardedHeaders, lower) {
		return true
	}
	for _, p := range forwardedPrefixes {
		if strings.HasPrefix(lower, p) {
			return true
		}
	}
	return false
}
