package balancer

import (
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"trellis.dev/trellis/internal/proxy/model"
)

// HashKey is a request's consistent-hash key. A request without one (no
// hash policy, or none of its sources present) has OK false and is
// balanced at random, as Envoy does.
type HashKey struct {
	Hash uint64
	OK   bool
}

// KeyOf computes a request's hash key from its route's hash policies, as
// Envoy does: each policy that finds a value hashes it, the hashes are
// combined in order (rotate left by one, xor), and a terminal policy that
// found a value ends the list.
//
// The source IP is the host of r.RemoteAddr: the client's address on the
// gateway. On a sidecar's outbound listener the client is always the local
// app, so every request's source IP is 127.0.0.1 and a sourceIP policy
// sends all of one pod's calls to one instance.
func KeyOf(policies []model.HashPolicy, r *http.Request) HashKey {
	key, _ := keyOf(policies, r, false)
	return key
}

// KeyOfCreating is KeyOf, but a cookie policy with a TTL whose cookie the
// request lacks makes one, as Envoy does: a random value is the request's
// key, and the cookie (Max-Age the TTL, HttpOnly, Path /) is returned to
// be set on the answer, so that the client's next requests carry it and
// go to the same instance while the ring holds it.
func KeyOfCreating(policies []model.HashPolicy, r *http.Request) (HashKey, []*http.Cookie) {
	return keyOf(policies, r, true)
}

func keyOf(policies []model.HashPolicy, r *http.Request, create bool) (HashKey, []*http.Cookie) {
	var key HashKey
	var made []*http.Cookie
	for i := range policies {
		p := &policies[i]
		v, ok := hashValue(p, r)
		if !ok && create && p.Kind == model.HashCookie && p.CookieTTL > 0 {
			v, ok = newCookieValue(), true
			made = append(made, &http.Cookie{Name: p.Name, Value: v, Path: "/",
				MaxAge: max(1, int(p.CookieTTL/time.Second)), HttpOnly: true})
		}
		if !ok {
			continue
		}
		h := Hash(v)
		if key.OK {
			key.Hash = (key.Hash<<1 | key.Hash>>63) ^ h
		} else {
			key = HashKey{Hash: h, OK: true}
		}
		if p.Terminal {
			break
		}
	}
	return key, made
}

// newCookieValue is a fresh random cookie value: 16 hex digits.
func newCookieValue() string {
	return strconv.FormatUint(rand.Uint64()|1<<63, 16)
}

func hashValue(p *model.HashPolicy, r *http.Request) (string, bool) {
	switch p.Kind {
	case model.HashHeader:
		if p.Name == "host" || p.Name == ":authority" {
			return r.Host, r.Host != ""
		}
		vs := r.Header[p.HeaderKey]
		switch len(vs) {
		case 0:
			return "", false
		case 1:
			return vs[0], true
		}
		return strings.Join(vs, ","), true
	case model.HashCookie:
		c, err := r.Cookie(p.Name)
		if err != nil {
			return "", false
		}
		return c.Value, true
	case model.HashSourceIP:
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		return host, host != ""
	}
	return "", false
}

// Hash is the 64-bit hash of keys and ring entries: FNV-1a with a
// finalizer (FNV's high bits mix poorly on short inputs). It is fixed, so
// every proxy of the mesh maps a key to the same instance of a ring built
// from the same endpoints.
func Hash(s string) uint64 {
	const (
		offset = 14695981039346656037
		prime  = 1099511628211
	)
	h := uint64(offset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= prime
	}
	// murmur3's fmix64.
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
