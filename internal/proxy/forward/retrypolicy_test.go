package forward

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/model"
)

// listRetrier gives the instances of next in turn, allowing at most allow
// retries (the retry budget), and records what it was told.
type listRetrier struct {
	mu     sync.Mutex
	next   []string
	allow  int
	asked  []int // status of each failed try it was asked about
	denied int
}

func (l *listRetrier) Retry(addr string, status int) (string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.asked = append(l.asked, status)
	if l.allow == 0 || len(l.next) == 0 {
		l.denied++
		return "", false
	}
	l.allow--
	n := l.next[0]
	l.next = l.next[1:]
	return n, true
}

// TestRetryPolicy holds both paths to the route's retry policy: which
// outcomes are sent again, to the instance the Retrier gives, the budget's
// refusal, the per-try timeout, and bodies replayed only when kept whole.
func TestRetryPolicy(t *testing.T) {
	small := "hello"
	large := strings.Repeat("L", 100<<10) // over maxReplayBody
	gw := model.RetryGatewayError | model.RetryConnectFailure | model.RetryReset
	for _, tt := range []struct {
		name    string
		body    string
		unknown bool // length not announced (chunked, h2 without content-length)
		// chain: the instances in order: "5" answers 503, "0" 500, "4"
		// 409, "s" is slow (2 s), "r" resets, "l" is live, "d" is dead.
		chain     string
		policy    model.RetryPolicy
		allow     int
		wantCode  int
		wantFrom  string // x-trellis-service of the answer ("" for the mesh's own)
		wantHits  string
		wantAsked int // tries the Retrier was asked about
	}{
		{"503 retried", "", false, "5l", model.RetryPolicy{On: gw, NumRetries: 2}, 9, 200, "p1", "11", 1},
		{"twice", "", false, "55l", model.RetryPolicy{On: gw, NumRetries: 2}, 9, 200, "p2", "111", 2},
		{"retries spent: last answer passes", "", false, "555", model.RetryPolicy{On: gw, NumRetries: 1}, 9, 503, "p1", "110", 1},
		{"500 is not a gateway error", "", false, "0l", model.RetryPolicy{On: gw, NumRetries: 2}, 9, 500, "p0", "10", 0},
		{"500 under 5xx", "", false, "0l", model.RetryPolicy{On: model.Retry5xx, NumRetries: 2}, 9, 200, "p1", "11", 1},
		{"listed status", "", false, "4l", model.RetryPolicy{On: model.RetryStatusCodes, Codes: []int{409}, NumRetries: 1}, 9, 200, "p1", "11", 1},
		{"budget refuses: answer passes", "", false, "5l", model.RetryPolicy{On: gw, NumRetries: 2}, 0, 503, "p0", "10", 1},
		{"reset retried", "", false, "rl", model.RetryPolicy{On: model.RetryReset, NumRetries: 1}, 9, 200, "p1", "11", 1},
		{"reset not named", "", false, "rl", model.RetryPolicy{On: model.RetryStatusCodes, Codes: []int{503}, NumRetries: 1}, 9, 502, "", "10", 0},
		{"per-try timeout", "", false, "sl", model.RetryPolicy{On: gw, NumRetries: 1, PerTryTimeout: 100 * time.Millisecond}, 9, 200, "p1", "11", 1},
		{"per-try timeout, none left", "", false, "s", model.RetryPolicy{On: gw, NumRetries: 0, PerTryTimeout: 100 * time.Millisecond}, 9, 504, "", "1", 0},
		{"body replayed", small, false, "5l", model.RetryPolicy{On: gw, NumRetries: 1}, 9, 200, "p1", "11", 1},
		{"body of unknown length replayed", small, true, "5l", model.RetryPolicy{On: gw, NumRetries: 1}, 9, 200, "p1", "11", 1},
		{"large body: answer passes", large, true, "5l", model.RetryPolicy{On: gw, NumRetries: 1}, 9, 503, "p0", "10", 0},
	} {
		for proto, c := range clients(t) {
			for _, noFast := range []bool{false, true} {
				name := tt.name + "/" + proto
				if noFast {
					if proto != "HTTP/1.1" {
						continue
					}
					name += "/ReverseProxy"
				}
				t.Run(name, func(t *testing.T) {
					release := make(chan struct{})
					t.Cleanup(func() { close(release) })
					var peers []*peer
					var addrs []string
					for i, k := range tt.chain {
						pname := "p" + string(rune('0'+i))
						var p *peer
						switch k {
						case '5', '0', '4':
							code := map[rune]int{'5': 503, '0': 500, '4': 409}[k]
							p = startPeer(t, pname, func(w http.ResponseWriter, r *http.Request) {
								io.Copy(io.Discard, r.Body)
								w.WriteHeader(code)
							})
						case 's':
							p = startPeer(t, pname, func(w http.ResponseWriter, r *http.Request) {
								select {
								case <-release:
								case <-r.Context().Done():
								case <-time.After(5 * time.Second):
								}
							})
						case 'r':
							p = startPeer(t, pname, func(w http.ResponseWriter, r *http.Request) {
								io.Copy(io.Discard, r.Body)
								panic(http.ErrAbortHandler) // closes the connection, no answer
							})
						case 'l':
							p = livePeer(t, pname)
						}
						peers = append(peers, p)
						addrs = append(addrs, p.addr)
					}
					policy := tt.policy
					retrier := &listRetrier{next: addrs[1:], allow: tt.allow}
					target := &Target{Addr: addrs[0], Service: "reviews", Version: "v1", Retry: &policy, Retries: retrier}
					addr := proxyWith(t, New(Options{NoFastPath: noFast}), target)

					var rd io.Reader
					if tt.body != "" {
						rd = strings.NewReader(tt.body)
						if tt.unknown {
							rd = unknownLength{rd}
						}
					}
					req, _ := http.NewRequest("POST", "http://"+addr+"/x", rd)
					req.Host = "reviews"
					resp, err := c.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					got, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					if resp.StatusCode != tt.wantCode || resp.Header.Get(meshxds.HeaderService) != tt.wantFrom {
						t.Fatalf("got %d from %q (%.80q), want %d from %q", resp.StatusCode,
							resp.Header.Get(meshxds.HeaderService), got, tt.wantCode, tt.wantFrom)
					}
					if tt.wantCode == 200 && string(got) != tt.body {
						t.Fatalf("the live instance got %d bytes, want %d", len(got), len(tt.body))
					}
					var hits strings.Builder
					for _, p := range peers {
						hits.WriteByte(byte('0' + p.hits.Load()))
					}
					if hits.String() != tt.wantHits {
						t.Fatalf("hits %s, want %s", hits.String(), tt.wantHits)
					}
					if len(retrier.asked) != tt.wantAsked {
						t.Fatalf("Retrier asked %d times (%v), want %d", len(retrier.asked), retrier.asked, tt.wantAsked)
					}
				})
			}
		}
	}
}
