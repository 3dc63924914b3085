package forward

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/mesherr"
)

// peer is a fake instance: its inbound sidecar answers with handler, and
// hits counts the requests it got.
type peer struct {
	addr string
	hits atomic.Int32
}

func startPeer(t *testing.T, name string, h func(w http.ResponseWriter, r *http.Request)) *peer {
	p := &peer{}
	p.addr = serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.hits.Add(1)
		w.Header().Set(meshxds.HeaderService, name)
		h(w, r)
	}))
	return p
}

// appUnavailablePeer answers as an inbound sidecar whose app does not
// listen (mesherr.Write: a line, or trailers-only for gRPC), after reading
// readFirst bytes of the body, or all of it when -1 (a real sidecar reads
// none; reading makes sure the caller has read as far).
func appUnavailablePeer(t *testing.T, name string, readFirst int) *peer {
	return startPeer(t, name, func(w http.ResponseWriter, r *http.Request) {
		if readFirst > 0 {
			io.ReadFull(r.Body, make([]byte, readFirst))
		} else if readFirst < 0 {
			io.Copy(io.Discard, r.Body)
		}
		mesherr.Write(w, r, mesherr.New(mesherr.AppUnavailable, "connect to the app failed: connection refused"))
	})
}

// livePeer answers 200 with the body it got.
func livePeer(t *testing.T, name string) *peer {
	return startPeer(t, name, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		w.Write(b)
	})
}

// unknownLength hides a reader's length from net/http: chunked in
// HTTP/1.1, no content-length in HTTP/2 (as gRPC sends).
type unknownLength struct{ io.Reader }

// TestAppUnavailableRetried holds the mesh side of a hop to treating a
// peer's app_unavailable answer as a failed connect: another instance,
// whatever the method, when the body can be sent again.
func TestAppUnavailableRetried(t *testing.T) {
	small := "hello"
	mid := strings.Repeat("m", 40<<10) // over the fast path's 32 KiB, under maxReplayBody
	large := strings.Repeat("L", 200<<10)
	dead := deadAddr(t)

	type body struct {
		s       string
		unknown bool // length not announced
	}
	tests := []struct {
		name   string
		method string
		body   body
		grpc   bool
		// chain: the target, then its fallbacks: "u" app_unavailable peer,
		// "U" one that reads 5 bytes first, "R" one that reads the body, "l" live, "d" dead address,
		// "-" no fallbacks at all.
		chain      string
		app        bool // the target is the app (inbound side)
		wantStatus int
		wantCode   string // x-trellis-error
		wantFrom   string // x-trellis-service: which peer answered ("" for the caller's own error)
		wantHits   string // hits per peer of the chain, as digits
		wantMsg    string // body prefix of an error made by the caller
	}{
		{"GET", "GET", body{}, false, "ul", false, 200, "", "p1", "11", ""},
		{"POST small", "POST", body{s: small}, false, "ul", false, 200, "", "p1", "11", ""},
		{"POST 40 KiB", "POST", body{s: mid}, false, "ul", false, 200, "", "p1", "11", ""},
		{"POST small, length unknown", "POST", body{s: small, unknown: true}, false, "Rl", false, 200, "", "p1", "11", ""},
		{"gRPC unary", "POST", body{s: small, unknown: true}, true, "Rl", false, 200, "", "p1", "11", ""},
		{"DELETE after two", "DELETE", body{}, false, "uul", false, 200, "", "p2", "111", ""},
		{"dead, then app_unavailable, then live", "POST", body{s: small}, false, "dul", false, 200, "", "p2", "-11", ""},
		{"at most 2 fallbacks", "GET", body{}, false, "uuul", false, 503, "app_unavailable", "", "1110",
			`app_unavailable: service "reviews" version "v1": 3 instances tried, the last, `},
		{"last is dead", "POST", body{s: small}, false, "ud", false, 503, "upstream_connect_failed", "", "1-",
			`upstream_connect_failed: connect to service "reviews" version "v1" at `},
		{"only instance", "GET", body{}, false, "u", false, 503, "app_unavailable", "", "1",
			`app_unavailable: service "reviews" version "v1" at `},
		{"no fallbacks: passed through", "GET", body{}, false, "u-", false, 503, "app_unavailable", "p0", "1", ""},
		{"large body: passed through", "POST", body{s: large, unknown: true}, false, "Ul", false, 503, "app_unavailable", "p0", "10", ""},
		{"large known length: passed through", "POST", body{s: large}, false, "Ul", false, 503, "app_unavailable", "p0", "10", ""},
		{"from the app: never retried", "GET", body{}, false, "ul", true, 503, "", "p0", "10", ""},
	}
	for _, tt := range tests {
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
					var peers []*peer
					var addrs []string
					for i, k := range tt.chain {
						switch k {
						case 'u':
							peers = append(peers, appUnavailablePeer(t, "p"+string(rune('0'+i)), 0))
						case 'U':
							peers = append(peers, appUnavailablePeer(t, "p"+string(rune('0'+i)), len(small)))
						case 'R':
							peers = append(peers, appUnavailablePeer(t, "p"+string(rune('0'+i)), -1))
						case 'l':
							peers = append(peers, livePeer(t, "p"+string(rune('0'+i))))
						case 'd':
							peers = append(peers, nil)
							addrs = append(addrs, dead)
							continue
						case '-':
							continue
						}
						addrs = append(addrs, peers[len(peers)-1].addr)
					}
					target := &Target{Addr: addrs[0], Service: "reviews", Version: "v1", App: tt.app}
					if !strings.HasSuffix(tt.chain, "-") && !tt.app {
						target.Fallbacks = FallbackList(addrs[1:])
					}
					f := New(Options{NoFastPath: noFast})
					addr := proxyWith(t, f, target)

					// A body still streaming when the answer comes is not sent
					// again (TestReplayBody "partly read"); end to end it
					// cannot be shown here: ReverseProxy cannot interrupt the
					// transport's Read of an open client body, so the answer
					// waits for the client's stream to end.
					var rd io.Reader = strings.NewReader(tt.body.s)
					if tt.body.unknown {
						rd = unknownLength{rd}
					}
					if tt.body.s == "" {
						rd = nil
					}
					req, _ := http.NewRequest(tt.method, "http://"+addr+"/x", rd)
					req.Host = "reviews"
					if tt.grpc {
						req.Header.Set("Content-Type", "application/grpc")
					}
					resp, err := c.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					got, _ := io.ReadAll(resp.Body)
					resp.Body.Close()

					if resp.StatusCode != tt.wantStatus || resp.Header.Get(meshxds.HeaderError) != tt.wantCode ||
						resp.Header.Get(meshxds.HeaderService) != tt.wantFrom {
						t.Fatalf("got %d %s=%q from %q (%q), want %d %q from %q", resp.StatusCode,
							meshxds.HeaderError, resp.Header.Get(meshxds.HeaderError), resp.Header.Get(meshxds.HeaderService),
							got, tt.wantStatus, tt.wantCode, tt.wantFrom)
					}
					if tt.wantStatus == 200 && string(got) != tt.body.s {
						t.Fatalf("the live instance got %d bytes, want %d", len(got), len(tt.body.s))
					}
					if tt.wantMsg != "" && !tt.grpc && !strings.HasPrefix(string(got), tt.wantMsg) {
						t.Fatalf("body %q, want %q…", got, tt.wantMsg)
					}
					var hits strings.Builder
					for _, p := range peers {
						if p == nil {
							hits.WriteByte('-')
						} else {
							hits.WriteByte(byte('0' + p.hits.Load()))
						}
					}
					if hits.String() != tt.wantHits {
						t.Fatalf("hits %s, want %s", hits.String(), tt.wantHits)
					}
				})
			}
		}
	}
}

// TestAppSideErrors: towards the app (Target.App) a failed connect is
// app_unavailable, and the app's own x-trellis-error is removed, on both
// paths.
func TestAppSideErrors(t *testing.T) {
	app := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(meshxds.HeaderError, string(mesherr.AppUnavailable))
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "the app says so")
	}))
	reset := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		panic(http.ErrAbortHandler)
	}))
	dead := deadAddr(t)
	tests := []struct {
		name     string
		addr     string
		wantCode int
		wantErr  string
		wantBody string
	}{
		{"app not listening", dead, 503, "app_unavailable",
			`app_unavailable: connect to the app of service "reviews" version "v1" at ` + dead + " failed: connection refused\n"},
		{"app sets x-trellis-error", app, 503, "", "the app says so"},
		{"reset after connect", reset, 502, "upstream_reset", `upstream_reset: service "reviews" version "v1" at ` + reset + " failed after the request was sent"},
	}
	for _, noFast := range []bool{false, true} {
		f := New(Options{NoFastPath: noFast, ResponseHeaders: http.Header{"X-Trellis-Version": {"v1"}}})
		for _, tt := range tests {
			for proto, c := range clients(t) {
				t.Run(tt.name+"/"+proto, func(t *testing.T) {
					addr := proxyWith(t, f, &Target{Addr: tt.addr, Service: "reviews", Version: "v1", App: true})
					code, h, body := post(t, c, addr, "hello")
					if code != tt.wantCode || h.Get(meshxds.HeaderError) != tt.wantErr || !strings.HasPrefix(body, tt.wantBody) {
						t.Fatalf("got %d %q %q, want %d %q %q", code, h.Get(meshxds.HeaderError), body, tt.wantCode, tt.wantErr, tt.wantBody)
					}
					if h.Get("X-Trellis-Version") != "v1" {
						t.Fatalf("x-trellis-version %q", h.Get("X-Trellis-Version"))
					}
				})
			}
		}
	}
}

// TestReplayBody covers when a body may go to another try.
func TestReplayBody(t *testing.T) {
	read := func(rc io.Reader) string { b, _ := io.ReadAll(rc); return string(b) }
	t.Run("nothing read", func(t *testing.T) {
		b := newReplayBody(io.NopCloser(strings.NewReader("abc")), false)
		first := b.first()
		again, ok := b.again()
		if !ok || read(again) != "abc" {
			t.Fatal("an unread body is sent again")
		}
		if n, err := first.Read(make([]byte, 1)); n != 0 || err != errSuperseded {
			t.Fatalf("an old try reads %d, %v", n, err)
		}
	})
	t.Run("kept whole", func(t *testing.T) {
		b := newReplayBody(io.NopCloser(strings.NewReader("abc")), true)
		if read(b.first()) != "abc" {
			t.Fatal()
		}
		again, ok := b.again()
		if !ok || read(again) != "abc" {
			t.Fatal("a kept body is sent again whole")
		}
		b.stopKeeping()
		if _, ok := b.again(); ok {
			t.Fatal("sent again after stopKeeping")
		}
	})
	t.Run("not kept", func(t *testing.T) {
		b := newReplayBody(io.NopCloser(strings.NewReader("abc")), false)
		read(b.first())
		if _, ok := b.again(); ok {
			t.Fatal("a body read and not kept is sent again")
		}
	})
	t.Run("too long", func(t *testing.T) {
		b := newReplayBody(io.NopCloser(bytes.NewReader(make([]byte, maxReplayBody+1))), true)
		read(b.first())
		if _, ok := b.again(); ok {
			t.Fatal("a body over maxReplayBody is sent again")
		}
	})
	t.Run("partly read", func(t *testing.T) {
		b := newReplayBody(io.NopCloser(strings.NewReader("abc")), true)
		b.first().Read(make([]byte, 1))
		if _, ok := b.again(); ok {
			t.Fatal("a body not ended is sent again")
		}
	})
	t.Run("close held while it may be sent again", func(t *testing.T) {
		closed := 0
		rc := &closeCounter{Reader: strings.NewReader("abc"), n: &closed}
		b := newReplayBody(rc, true)
		first := b.first()
		first.Close()
		read(first)
		first.Close()
		if closed != 0 {
			t.Fatal("closed while it could be sent again")
		}
		b2 := newReplayBody(&closeCounter{Reader: strings.NewReader("abc"), n: &closed}, false)
		f2 := b2.first()
		f2.Read(make([]byte, 1))
		f2.Close()
		if closed != 1 {
			t.Fatal("a body that cannot be sent again is closed when the transport says")
		}
	})
}

type closeCounter struct {
	io.Reader
	n *int
}

func (c *closeCounter) Close() error { *c.n++; return nil }
