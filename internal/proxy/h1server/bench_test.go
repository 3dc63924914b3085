package h1server

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
)

// benchHead is a typical proxied request head: a dozen fields.
const benchHead = "GET /api/v1/reviews?id=42 HTTP/1.1\r\nHost: reviews\r\nUser-Agent: bench/1.0\r\n" +
	"Accept: */*\r\nAccept-Encoding: gzip\r\nX-Request-Id: 7f6c2f0e-3b1a-4d5e-9c1b-2a3b4c5d6e7f\r\n" +
	"Traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nCookie: session=abc\r\n" +
	"X-Forwarded-For: 192.0.2.1\r\nAuthorization: Bearer token\r\nX-Custom-One: 1\r\nX-Custom-Two: 2\r\n\r\n"

// BenchmarkParseHead is the fast path's parser alone.
func BenchmarkParseHead(b *testing.B) {
	head := []byte(benchHead)
	hdr := http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		clear(hdr)
		if _, v := parseHead(head, testRemote, hdr, DefaultMaxHeaders); v != serve {
			b.Fatal(v)
		}
	}
}

// BenchmarkServeKeepAlive is one keep-alive request after another on one
// loopback connection, through the fast path, to a handler that answers
// a short body.
func BenchmarkServeKeepAlive(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "2")
			io.WriteString(w, "ok")
		}),
		Fallback: &http.Server{},
	}
	go s.Serve(ln)
	defer s.Close()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	req := &http.Request{Method: "GET"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := io.WriteString(nc, benchHead); err != nil {
			b.Fatal(err)
		}
		res, err := http.ReadResponse(br, req)
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
}
