package proxy

import (
	"strings"
	"testing"
	"time"

	"trellis.dev/trellis/internal/meshxds"
	"trellis.dev/trellis/internal/proxy/model"
)

// A consistent hash on a cookie with a TTL: a client without the cookie
// gets one (Set-Cookie, made by the proxy), and its requests carrying it
// then all go to one instance.
func TestHashCookieCreated(t *testing.T) {
	m := newMesh(t)
	rt := to("reviews", 100)
	rt.HashPolicies = []model.HashPolicy{{Kind: model.HashCookie, Name: "session", CookieTTL: time.Hour}}
	snap := m.snapshot(rt)
	snap.Clusters["reviews"].LB = model.LBPolicy{Kind: model.LBRingHash, MinRingSize: 1024, MaxRingSize: 8192}
	m.client.setSnapshot(snap)
	c := h1ProxyClient(t, m.client.OutboundAddr())

	r := do(t, c, newRequest(t, "GET", "http://reviews/", "", nil))
	setCookie := r.header.Get("Set-Cookie")
	if r.code != 200 || !strings.HasPrefix(setCookie, "session=") || !strings.Contains(setCookie, "Max-Age=3600") {
		t.Fatalf("%d, Set-Cookie %q: want a session cookie made by the proxy", r.code, setCookie)
	}
	cookie := strings.SplitN(setCookie, ";", 2)[0]
	first := r.header.Get(meshxds.HeaderVersion)
	for i := range 20 {
		req := newRequest(t, "GET", "http://reviews/", "", nil)
		req.Header.Set("Cookie", cookie)
		r := do(t, c, req)
		if r.code != 200 || r.header.Get(meshxds.HeaderVersion) != first {
			t.Fatalf("request %d with %s: %d from %q, want %q", i, cookie, r.code, r.header.Get(meshxds.HeaderVersion), first)
		}
		if sc := r.header.Get("Set-Cookie"); sc != "" {
			t.Fatalf("request %d carries the cookie and still got Set-Cookie %q", i, sc)
		}
	}
	// Without the cookie, each request gets a new one: the instances vary.
	seen := map[string]bool{}
	for range 40 {
		r := do(t, c, newRequest(t, "GET", "http://reviews/", "", nil))
		seen[r.header.Get(meshxds.HeaderVersion)] = true
	}
	if len(seen) != 2 {
		t.Fatalf("40 clients without the cookie went to %v, want both instances", seen)
	}
}
