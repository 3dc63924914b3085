package h1server

import (
	"bufio"
	"bytes"
	"maps"
	"net/http"
	"net/textproto"
	"reflect"
	"strings"
	"testing"
	"trellis.dev/trellis/internal/proxy/forward"
)

const testRemote = "192.0.2.7:40123"

// parseString runs parseHead on s with a fresh header map.
func parseString(s string) (*http.Request, verdict) {
	return parseHead([]byte(s), testRemote, http.Header{}, DefaultMaxHeaders)
}

func TestParseHeadServes(t *testing.T) {
	tests := []struct {
		name string
		head string

		method, url, host, uri string
		header                 http.Header
		contentLength          int64
		close                  bool
	}{
		{
			name:   "origin form",
			head:   "GET /a/b?x=1&y=%20 HTTP/1.1\r\nHost: reviews\r\n\r\n",
			method: "GET", url: "/a/b?x=1&y=%20", host: "reviews", uri: "/a/b?x=1&y=%20",
			header: http.Header{},
		},
		{
			name:   "absolute form: the target's host wins over Host",
			head:   "GET http://reviews.default:9080/api?q=1 HTTP/1.1\r\nHost: elsewhere\r\n\r\n",
			method: "GET", url: "http://reviews.default:9080/api?q=1", host: "reviews.default:9080",
			uri:    "http://reviews.default:9080/api?q=1",
			header: http.Header{},
		},
		{
			name:   "absolute form, scheme in upper case",
			head:   "GET HTTP://svc/p HTTP/1.1\r\nHost: svc\r\n\r\n",
			method: "GET", url: "http://svc/p", host: "svc", uri: "HTTP://svc/p",
			header: http.Header{},
		},
		{
			name:   "absolute form without a host takes the Host field",
			head:   "GET http:///p HTTP/1.1\r\nHost: svc\r\n\r\n",
			method: "GET", url: "http:///p", host: "svc", uri: "http:///p",
			header: http.Header{},
		},
		{
			name:   "header names canonicalised, Host left out, values trimmed, repeats kept",
			head:   "GET / HTTP/1.1\r\nhost: svc:8080\r\nx-request-id:abc\r\nACCEPT: \t*/* \t\r\nX-Multi: 1\r\nx-multi: 2\r\nX-Empty:\r\nx_under-score: u\r\n\r\n",
			method: "GET", url: "/", host: "svc:8080", uri: "/",
			header: http.Header{
				"X-Request-Id":  {"abc"},
				"Accept":        {"*/*"},
				"X-Multi":       {"1", "2"},
				"X-Empty":       {""},
				"X_under-Score": {"u"},
			},
		},
		{
			name:   "obs-text and inner spaces in a value",
			head:   "GET / HTTP/1.1\r\nHost: svc\r\nX-Name: caf\xc3\xa9 au\tlait\r\n\r\n",
			method: "GET", url: "/", host: "svc", uri: "/",
			header: http.Header{"X-Name": {"caf\xc3\xa9 au\tlait"}},
		},
		{
			name:   "body with Content-Length",
			head:   "POST /submit HTTP/1.1\r\nHost: svc\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\n",
			method: "POST", url: "/submit", host: "svc", uri: "/submit",
			header:        http.Header{"Content-Length": {"5"}, "Content-Type": {"text/plain"}},
			contentLength: 5,
		},
		{
			name:   "Content-Length with leading zeros",
			head:   "PUT /x HTTP/1.1\r\nHost: svc\r\nContent-Length: 0042\r\n\r\n",
			method: "PUT", url: "/x", host: "svc", uri: "/x",
			header:        http.Header{"Content-Length": {"0042"}},
			contentLength: 42,
		},
		{
			name:   "Content-Length at the limit",
			head:   "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 32768\r\n\r\n",
			method: "POST", url: "/", host: "svc", uri: "/",
			header:        http.Header{"Content-Length": {"32768"}},
			contentLength: maxBody,
		},
		{
			name:   "Content-Length zero",
			head:   "POST / HTTP/1.1\r\nHost: svc\r\nContent-Length: 0\r\n\r\n",
			method: "POST", url: "/", host: "svc", uri: "/",
			header: http.Header{"Content-Length": {"0"}},
		},
		{
			name:   "Connection: close",
			head:   "GET / HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n",
			method: "GET", url: "/", host: "svc", uri: "/",
			header: http.Header{"Connection": {"close"}},
			close:  true,
		},
		{
			name:   "close among other tokens, any case, second Connection field",
			head:   "GET / HTTP/1.1\r\nHost: svc\r\nConnection: keep-alive\r\nConnection: te ,\tCLOSE \r\n\r\n",
			method: "GET", url: "/", host: "svc", uri: "/",
			header: http.Header{"Connection": {"keep-alive", "te ,\tCLOSE"}},
			close:  true,
		},
		{
			name:   "not quite close",
			head:   "GET / HTTP/1.1\r\nHost: svc\r\nConnection: closed, keep-alive\r\n\r\n",
			method: "GET", url: "/", host: "svc", uri: "/",
			header: http.Header{"Connection": {"closed, keep-alive"}},
		},
		{
			name:   "close spelt with a non-ASCII letter that folds to s",
			head:   "GET / HTTP/1.1\r\nHost: svc\r\nConnection: clo\xc5\xbfe\r\n\r\n",
			method: "GET", url: "/", host: "svc", uri: "/",
			header: http.Header{"Connection": {"clo\xc5\xbfe"}},
		},
		{
			name:   "extension method, IPv6 host",
			head:   "PURGE /cache HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n",
			method: "PURGE", url: "/cache", host: "[::1]:8080", uri: "/cache",
			header: http.Header{},
		},
		{
			name:   "lower-case method is a token too",
			head:   "get / HTTP/1.1\r\nHost: svc\r\n\r\n",
			method: "get", url: "/", host: "svc", uri: "/",
			header: http.Header{},
		},
		{
			name:   "Pragma: no-cache is passed as it is",
			head:   "GET / HTTP/1.1\r\nHost: svc\r\nPragma: no-cache\r\n\r\n",
			method: "GET", url: "/", host: "svc", uri: "/",
			header: http.Header{"Pragma": {"no-cache"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hdr := http.Header{}
			r, v := parseHead([]byte(tt.head), testRemote, hdr, DefaultMaxHeaders)
			if v != serve {
				t.Fatalf("verdict %v, want serve", v)
			}
			if r.Method != tt.method || r.URL.String() != tt.url || r.Host != tt.host || r.RequestURI != tt.uri {
				t.Errorf("got %q %q host %q uri %q, want %q %q host %q uri %q",
					r.Method, r.URL, r.Host, r.RequestURI, tt.method, tt.url, tt.host, tt.uri)
			}
			if !reflect.DeepEqual(r.Header, tt.header) {
				t.Errorf("header %v, want %v", r.Header, tt.header)
			}
			if reflect.ValueOf(r.Header).UnsafePointer() != reflect.ValueOf(hdr).UnsafePointer() {
				t.Error("r.Header is not the map passed in")
			}
			if r.ContentLength != tt.contentLength || r.Close != tt.close {
				t.Errorf("ContentLength %d Close %v, want %d %v", r.ContentLength, r.Close, tt.contentLength, tt.close)
			}
			if r.Proto != "HTTP/1.1" || r.ProtoMajor != 1 || r.ProtoMinor != 1 {
				t.Errorf("proto %q %d.%d", r.Proto, r.ProtoMajor, r.ProtoMinor)
			}
			if r.RemoteAddr != testRemote {
				t.Errorf("RemoteAddr %q", r.RemoteAddr)
			}
			if r.Body != http.NoBody {
				t.Errorf("Body %T, want http.NoBody (the server sets a body reader)", r.Body)
			}
			if r.TLS != nil || r.TransferEncoding != nil || r.Trailer != nil {
				t.Errorf("unexpected fields: TLS %v TE %v Trailer %v", r.TLS, r.TransferEncoding, r.Trailer)
			}
		})
	}
}

func TestParseHeadHandsOff(t *testing.T) {
	const host = "Host: svc\r\n"
	tests := []struct{ name, head string }{
		{"empty", ""},
		{"no final empty line", "GET / HTTP/1.1\r\n" + host},
		{"HTTP/1.0", "GET / HTTP/1.0\r\n" + host + "\r\n"},
		{"HTTP/1.0 without fields", "GET / HTTP/1.0\r\n\r\n"},
		{"HTTP/2 prior knowledge preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"},
		{"PRI in HTTP/1.1", "PRI / HTTP/1.1\r\n" + host + "\r\n"},
		{"CONNECT", "CONNECT svc:443 HTTP/1.1\r\nHost: svc:443\r\n\r\n"},
		{"CONNECT origin form", "CONNECT / HTTP/1.1\r\n" + host + "\r\n"},
		{"asterisk form", "OPTIONS * HTTP/1.1\r\n" + host + "\r\n"},
		{"authority form", "GET svc:80 HTTP/1.1\r\n" + host + "\r\n"},
		{"https target", "GET https://svc/ HTTP/1.1\r\n" + host + "\r\n"},
		{"bare scheme", "GET http:// HTTP/1.1\r\n" + host + "\r\n"},
		{"relative target", "GET a/b HTTP/1.1\r\n" + host + "\r\n"},
		{"bad escape in target", "GET /%zz HTTP/1.1\r\n" + host + "\r\n"},
		{"non-ASCII target", "GET /caf\xc3\xa9 HTTP/1.1\r\n" + host + "\r\n"},
		{"control byte in target", "GET /a\x01b HTTP/1.1\r\n" + host + "\r\n"},
		{"lower-case version", "GET / http/1.1\r\n" + host + "\r\n"},
		{"HTTP/1.2", "GET / HTTP/1.2\r\n" + host + "\r\n"},
		{"no version", "GET /\r\n" + host + "\r\n"},
		{"two spaces after method", "GET  / HTTP/1.1\r\n" + host + "\r\n"},
		{"space in target", "GET /a b HTTP/1.1\r\n" + host + "\r\n"},
		{"trailing space", "GET / HTTP/1.1 \r\n" + host + "\r\n"},
		{"tab separator", "GET\t/ HTTP/1.1\r\n" + host + "\r\n"},
		{"leading empty line", "\r\nGET / HTTP/1.1\r\n" + host + "\r\n"},
		{"non-token method", "GE(T / HTTP/1.1\r\n" + host + "\r\n"},
		{"empty method", " / HTTP/1.1\r\n" + host + "\r\n"},
		{"Transfer-Encoding", "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n"},
		{"transfer-encoding lower case", "POST / HTTP/1.1\r\n" + host + "transfer-encoding: identity\r\n\r\n"},
		{"Expect", "POST / HTTP/1.1\r\n" + host + "Content-Length: 3\r\nExpect: 100-continue\r\n\r\n"},
		{"Upgrade", "GET / HTTP/1.1\r\n" + host + "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n"},
		{"h2c upgrade", "GET / HTTP/1.1\r\n" + host + "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"},
		{"Trailer", "POST / HTTP/1.1\r\n" + host + "Content-Length: 1\r\nTrailer: X-Sum\r\n\r\n"},
		{"no Host", "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n"},
		{"no Host, absolute form", "GET http://svc/ HTTP/1.1\r\n\r\n"},
		{"two Hosts", "GET / HTTP/1.1\r\n" + host + "host: other\r\n\r\n"},
		{"empty Host", "GET / HTTP/1.1\r\nHost:\r\n\r\n"},
		{"IDN Host", "GET / HTTP/1.1\r\nHost: b\xc3\xbccher.example\r\n\r\n"},
		{"Host with a zone", "GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]:80\r\n\r\n"},
		{"Host with userinfo", "GET / HTTP/1.1\r\nHost: user@svc\r\n\r\n"},
		{"Host with a space", "GET / HTTP/1.1\r\nHost: svc x\r\n\r\n"},
		{"absolute form with an odd host", "GET http://sv%63/ HTTP/1.1\r\n" + host + "\r\n"},
		{"two Content-Lengths", "POST / HTTP/1.1\r\n" + host + "Content-Length: 1\r\nContent-Length: 1\r\n\r\n"},
		{"Content-Length not digits", "POST / HTTP/1.1\r\n" + host + "Content-Length: 1a\r\n\r\n"},
		{"Content-Length negative", "POST / HTTP/1.1\r\n" + host + "Content-Length: -1\r\n\r\n"},
		{"Content-Length with a plus", "POST / HTTP/1.1\r\n" + host + "Content-Length: +1\r\n\r\n"},
		{"Content-Length empty", "POST / HTTP/1.1\r\n" + host + "Content-Length:\r\n\r\n"},
		{"Content-Length list", "POST / HTTP/1.1\r\n" + host + "Content-Length: 1, 1\r\n\r\n"},
		{"Content-Length of 11 digits", "POST / HTTP/1.1\r\n" + host + "Content-Length: 00000000001\r\n\r\n"},
		{"body over the limit", "POST / HTTP/1.1\r\n" + host + "Content-Length: 32769\r\n\r\n"},
		{"huge body", "POST / HTTP/1.1\r\n" + host + "Content-Length: 9999999999\r\n\r\n"},
		{"bare LF ending the request line", "GET / HTTP/1.1\n" + host + "\r\n"},
		{"bare LF ending a field", "GET / HTTP/1.1\r\nHost: svc\n\r\n"},
		{"bare LF ending the head", "GET / HTTP/1.1\r\n" + host + "\n"},
		{"bare CR in a field", "GET / HTTP/1.1\r\n" + host + "X-A: a\rb\r\n\r\n"},
		{"bare CR in the request line", "GET /\r HTTP/1.1\r\n" + host + "\r\n"},
		{"obs-fold", "GET / HTTP/1.1\r\n" + host + "X-A: a\r\n b\r\n\r\n"},
		{"first field folded", "GET / HTTP/1.1\r\n " + host + "\r\n"},
		{"space before the colon", "GET / HTTP/1.1\r\nHost : svc\r\n\r\n"},
		{"tab before the colon", "GET / HTTP/1.1\r\n" + host + "X-A\t: a\r\n\r\n"},
		{"empty name", "GET / HTTP/1.1\r\n" + host + ": a\r\n\r\n"},
		{"no colon", "GET / HTTP/1.1\r\n" + host + "X-A a\r\n\r\n"},
		{"non-token name", "GET / HTTP/1.1\r\n" + host + "X(A): a\r\n\r\n"},
		{"non-ASCII name", "GET / HTTP/1.1\r\n" + host + "X-\xc3\xa9: a\r\n\r\n"},
		{"NUL in a value", "GET / HTTP/1.1\r\n" + host + "X-A: a\x00b\r\n\r\n"},
		{"control byte in a value", "GET / HTTP/1.1\r\n" + host + "X-A: \x1b[31m\r\n\r\n"},
		{"DEL in a value", "GET / HTTP/1.1\r\n" + host + "X-A: a\x7f\r\n\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, v := parseString(tt.head)
			if v != handOff || r != nil {
				t.Fatalf("got %v, %+v; want handOff, nil", v, r)
			}
		})
	}
}

// TestParseHeadMatchesCanonicalKey: names canonicalised through the common
// table or textproto come out as textproto has them.
func TestParseHeadMatchesCanonicalKey(t *testing.T) {
	names := []string{"host", "HOST", "content-length", "CONTENT-TYPE", "x-b3-traceid", "X-B3-TraceId",
		"te", "TE", "Te", "x-forwarded-for", "accept-ranges", "a", "A-", "-a", "a--b", "x_y-z", "1st-2nd",
		"Www-Authenticate", "!#$%&'*+-.^_`|~", "traceparent", "If-None-Match", "x-trellis-service"}
	for k := range commonKeys {
		names = append(names, k, strings.ToLower(k), strings.ToUpper(k))
	}
	for _, n := range names {
		if got, want := canonicalKey([]byte(n)), textproto.CanonicalMIMEHeaderKey(n); got != want {
			t.Errorf("canonicalKey(%q) = %q, want %q", n, got, want)
		}
	}
}

func TestHasToken(t *testing.T) {
	tests := []struct {
		v    string
		want bool
	}{
		{"close", true},
		{"Close", true},
		{" close ", true},
		{"keep-alive,close", true},
		{"keep-alive , \tclose\t", true},
		{",,close,,", true},
		{"", false},
		{"closed", false},
		{"clos", false},
		{"keep-alive", false},
		{"c lose", false},
		{"\"close\"", false},
		{"clo\u017fe", false}, // ſ folds to s in Unicode, not in ASCII
		{"\u212alose", false},
	}
	for _, tt := range tests {
		if got := hasToken([]byte(tt.v), "close"); got != tt.want {
			t.Errorf("hasToken(%q, close) = %v, want %v", tt.v, got, tt.want)
		}
	}
}

func TestParseHeadReusesNothing(t *testing.T) {
	// The head's bytes are the connection's buffer, overwritten by the next
	// read: nothing of the request may point into them.
	head := []byte("POST http://svc:1/p?q HTTP/1.1\r\nHost: svc\r\nX-Custom-Thing: value\r\nContent-Length: 3\r\n\r\n")
	r, v := parseHead(head, testRemote, http.Header{}, DefaultMaxHeaders)
	if v != serve {
		t.Fatal("not served")
	}
	want := *r
	wantHeader := maps.Clone(r.Header)
	wantURL := *r.URL
	for i := range head {
		head[i] = 'Z'
	}
	if r.Method != want.Method || r.Host != want.Host || r.RequestURI != want.RequestURI ||
		*r.URL != wantURL || !reflect.DeepEqual(r.Header, wantHeader) {
		t.Errorf("request changed with the buffer: %+v", r)
	}
	for k, vs := range r.Header {
		if strings.Contains(k, "Z") || strings.Contains(strings.Join(vs, ""), "Z") {
			t.Errorf("header %q %q changed with the buffer", k, vs)
		}
	}
}

var fuzzSeeds = []string{
	"GET / HTTP/1.1\r\nHost: svc\r\n\r\n",
	"GET /api/v1/items?limit=10&offset=20 HTTP/1.1\r\nHost: reviews:9080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n",
	"GET http://reviews.default.svc:9080/reviews/0 HTTP/1.1\r\nHost: reviews.default.svc:9080\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n",
	"POST /submit HTTP/1.1\r\nHost: svc\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n{\"a\":\"b\",\"c\"}",
	"PUT /x HTTP/1.1\r\nHost: 10.0.0.1:8080\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
	"HEAD /index.html HTTP/1.1\r\nHost: [::1]:80\r\nConnection: keep-alive\r\nPragma: no-cache\r\n\r\n",
	"DELETE /r/1 HTTP/1.1\r\nHost: svc\r\nAuthorization: Bearer abc.def\r\nCookie: a=b; c=d\r\nCookie: e=f\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: svc\r\nTraceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nx-b3-sampled: 1\r\n\r\n",
	"OPTIONS /x HTTP/1.1\r\nHost: svc\r\nOrigin: http://example.com\r\nAccess-Control-Request-Method: PUT\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: svc\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
	"POST / HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	"GET / HTTP/1.0\r\nHost: svc\r\n\r\n",
	"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	"CONNECT svc:443 HTTP/1.1\r\nHost: svc:443\r\n\r\n",
	"GET / HTTP/1.1\nHost: svc\n\n",
	"GET / HTTP/1.1\r\nHost: svc\r\nX-Folded: a\r\n b\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: svc\r\nConnection: clo\xc5\xbfe\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: svc\r\nX-Obs: caf\xc3\xa9\r\n\r\n",
	"GET / HTTP/1.1\r\nHost: svc\r\nPragma: no-cache\r\nCache-Control: max-age=0\r\n\r\n",
}

// FuzzParseHead checks parseHead against net/http: whatever it serves,
// http.ReadRequest parses too, to the same request. Known, accepted
// differences:
//   - net/http's server, not ReadRequest, takes Host out of the header map;
//     parseHead does too.
//   - ReadRequest adds "Cache-Control: no-cache" to a request with "Pragma:
//     no-cache" and no Cache-Control; parseHead passes headers as they are.
func FuzzParseHead(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		r, v := parseHead(in, testRemote, http.Header{}, DefaultMaxHeaders)
		if v != serve {
			if r != nil {
				t.Fatalf("handOff with a request: %+v", r)
			}
			return
		}
		checkStrict(t, in, r)
		want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(in)))
		if err != nil {
			t.Fatalf("parseHead serves %q, net/http fails: %v", in, err)
		}
		if r.Method != want.Method || r.URL.String() != want.URL.String() || r.Host != want.Host ||
			r.RequestURI != want.RequestURI || r.ContentLength != want.ContentLength || r.Close != want.Close ||
			r.Proto != want.Proto || r.ProtoMajor != want.ProtoMajor || r.ProtoMinor != want.ProtoMinor {
			t.Fatalf("%q:\nparseHead %s %s host %q uri %q length %d close %v %s\nnet/http  %s %s host %q uri %q length %d close %v %s",
				in, r.Method, r.URL, r.Host, r.RequestURI, r.ContentLength, r.Close, r.Proto,
				want.Method, want.URL, want.Host, want.RequestURI, want.ContentLength, want.Close, want.Proto)
		}
		wantHeader := want.Header
		delete(wantHeader, "Host")
		if cc := wantHeader["Cache-Control"]; len(cc) == 1 && cc[0] == "no-cache" && r.Header["Cache-Control"] == nil {
			delete(wantHeader, "Cache-Control") // added by net/http for Pragma: no-cache
		}
		if !reflect.DeepEqual(r.Header, wantHeader) {
			t.Fatalf("%q:\nparseHead header %q\nnet/http  header %q", in, r.Header, wantHeader)
		}
	})
}

// checkStrict checks that a head parseHead serves is within the subset the
// package doc promises.
func checkStrict(t *testing.T, in []byte, r *http.Request) {
	t.Helper()
	end := bytes.Index(in, []byte("\r\n\r\n"))
	if end < 0 {
		t.Fatalf("served %q without an end of head", in)
	}
	head := in[:end+4]
	for i, c := range head {
		if c == '\n' && (i == 0 || head[i-1] != '\r') || c == '\r' && (i+1 == len(head) || head[i+1] != '\n') {
			t.Fatalf("served %q with a bare CR or LF at %d", in, i)
		}
	}
	if r.Method == http.MethodConnect || r.Method == "PRI" {
		t.Fatalf("served method %q", r.Method)
	}
	for _, k := range []string{"Transfer-Encoding", "Expect", "Upgrade", "Trailer", "Host"} {
		if _, ok := r.Header[k]; ok {
			t.Fatalf("served %q with %s in the header", in, k)
		}
	}
	if r.ContentLength < 0 || r.ContentLength > maxBody || r.Host == "" || !forward.PlainHost(r.Host) {
		t.Fatalf("served %q: length %d host %q", in, r.ContentLength, r.Host)
	}
	if !strings.HasPrefix(string(in), r.Method+" "+r.RequestURI+" HTTP/1.1\r\n") {
		t.Fatalf("served %q: request line %s %s", in, r.Method, r.RequestURI)
	}
}
