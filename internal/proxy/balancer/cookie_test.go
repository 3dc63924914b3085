package balancer

import (
	"net/http"
	"testing"
	"time"

	"trellis.dev/trellis/internal/proxy/model"
)

// A cookie policy with a TTL makes the cookie a request lacks (Envoy's
// "generate the cookie"): the new value is the request's key, and the
// cookie is returned to be set on the answer. With the cookie present,
// or without a TTL, nothing is made.
func TestKeyOfCreatingCookie(t *testing.T) {
	withTTL := []model.HashPolicy{{Kind: model.HashCookie, Name: "session", CookieTTL: time.Hour}}
	noTTL := []model.HashPolicy{{Kind: model.HashCookie, Name: "session"}}
	req := func(cookie string) *http.Request {
		r, _ := http.NewRequest("GET", "http://reviews/", nil)
		if cookie != "" {
			r.Header.Set("Cookie", "session="+cookie)
		}
		return r
	}

	key, made := KeyOfCreating(withTTL, req(""))
	if len(made) != 1 || !key.OK {
		t.Fatalf("no cookie made: key %+v, cookies %v", key, made)
	}
	c := made[0]
	if c.Name != "session" || c.MaxAge != 3600 || !c.HttpOnly || c.Path != "/" || len(c.Value) != 16 {
		t.Fatalf("cookie %q", c.String())
	}
	// The client's next request carries it and hashes the same.
	if again := KeyOf(withTTL, req(c.Value)); again != key {
		t.Fatalf("key with the made cookie %+v, want %+v", again, key)
	}
	if _, made := KeyOfCreating(withTTL, req("abc")); made != nil {
		t.Fatalf("made %v although the request has the cookie", made)
	}
	if key, made := KeyOfCreating(noTTL, req("")); made != nil || key.OK {
		t.Fatalf("without a TTL: key %+v, made %v", key, made)
	}
	if _, other := KeyOfCreating(withTTL, req("")); other[0].Value == c.Value {
		t.Fatal("two requests got the same new cookie value")
	}
}
