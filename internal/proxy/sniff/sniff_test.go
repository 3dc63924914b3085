package sniff

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"slices"
	"strings"
	"testing"
	"time"
)

const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// clientHello is the first record a real crypto/tls client sends, for sni
// and alpn.
func clientHello(tb testing.TB, sni string, alpn ...string) []byte {
	tb.Helper()
	c, s := net.Pipe()
	defer s.Close()
	go func() {
		tc := tls.Client(c, &tls.Config{ServerName: sni, NextProtos: alpn, InsecureSkipVerify: sni == ""})
		tc.Handshake() // fails when s closes
		c.Close()
	}()
	hdr := make([]byte, recordHeaderLen)
	if _, err := io.ReadFull(s, hdr); err != nil {
		tb.Fatal(err)
	}
	rec := make([]byte, int(hdr[3])<<8|int(hdr[4]))
	if _, err := io.ReadFull(s, rec); err != nil {
		tb.Fatal(err)
	}
	return append(hdr, rec...)
}

func TestSniff(t *testing.T) {
	hello := string(clientHello(t, "example.com", "h2", "http/1.1"))
	tests := []struct {
		name string
		in   string
		want Protocol
		v    Verdict
	}{
		{"empty", "", TCP, NeedMore},
		{"tls client hello", hello, TLS, Match},
		{"tls header only", hello[:6], TLS, Match},
		{"tls prefix", hello[:3], TCP, NeedMore},
		{"tls alert record", "\x15\x03\x03\x00\x02\x02\x28", TCP, NoMatch},
		{"tls server hello", "\x16\x03\x03\x00\x10\x02", TCP, NoMatch},
		{"tls record too long", "\x16\x03\x01\x48\x01\x01", TCP, NoMatch},
		{"h2 preface", preface, HTTP2, Match},
		{"h2 preface and a frame", preface + "\x00\x00\x12\x04", HTTP2, Match},
		{"h2 prefix", "PRI * HTTP/2.0\r\n", TCP, NeedMore},
		{"h2 almost", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\r", TCP, NoMatch},
		{"http/1.1", "GET / HTTP/1.1\r\nHost: x\r\n\r\n", HTTP1, Match},
		{"http/1.0 bare LF", "POST /a?b=c HTTP/1.0\n", HTTP1, Match},
		{"custom method", "PURGE /x HTTP/1.1\r\n", HTTP1, Match},
		{"absolute form", "GET http://reviews:9080/x HTTP/1.1\r\n", HTTP1, Match},
		{"request line partial", "GET /long/pa", TCP, NeedMore},
		{"request line no version yet", "GET / HTTP/1.", TCP, NeedMore},
		{"http/2 version", "GET / HTTP/2.0\r\n", TCP, NoMatch},
		{"http/0.9", "GET /\r\n", TCP, NoMatch},
		{"method too long", strings.Repeat("A", 21) + " / HTTP/1.1\r\n", TCP, NoMatch},
		{"control in target", "GET /\x01 HTTP/1.1\r\n", TCP, NoMatch},
		{"ssh banner", "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n", TCP, NoMatch},
		{"redis", "*1\r\n$4\r\nPING\r\n", TCP, NoMatch},
		{"binary", "\x00\x01\x02", TCP, NoMatch},
	}
	for _, tt := range tests {
		p, v := Sniff([]byte(tt.in))
		if p != tt.want || v != tt.v {
			t.Errorf("%s: Sniff(%q) = %v, %v; want %v, %v", tt.name, tt.in, p, v, tt.want, tt.v)
		}
	}
}

func TestParseClientHello(t *testing.T) {
	for _, tt := range []struct {
		sni  string
		alpn []string
	}{
		{"example.com", []string{"h2", "http/1.1"}},
		{"reviews", nil},
		{"", []string{"grpc-exp"}}, // an IP address target: no SNI
	} {
		b := clientHello(t, tt.sni, tt.alpn...)
		h, ok := ParseClientHello(b)
		if !ok || h.ServerName != tt.sni || !slices.Equal(h.ALPN, tt.alpn) {
			t.Errorf("ParseClientHello(%q %q) = %+v, %v", tt.sni, tt.alpn, h, ok)
		}
		// Any prefix that is not the whole record does not parse.
		for i := range len(b) - 1 {
			if _, ok := ParseClientHello(b[:i]); ok {
				t.Fatalf("a prefix of %d of %d bytes parsed", i, len(b))
			}
		}
	}
}

func TestDetect(t *testing.T) {
	hello := string(clientHello(t, "api.example.com", "h2"))
	tests := []struct {
		name   string
		writes []string // sent in pieces, so Detect must ask for more
		close  bool     // the client closes its side after the writes
		want   Result
	}{
		{"h2 in one piece", []string{preface + "rest"}, false, Result{Protocol: HTTP2}},
		{"h2 byte by byte", splitBytes(preface), false, Result{Protocol: HTTP2}},
		{"h2 in halves", []string{preface[:7], preface[7:]}, false, Result{Protocol: HTTP2}},
		{"http1", []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n"}, false, Result{Protocol: HTTP1}},
		{"http1 starting like the preface", []string{"P", "OST / HTTP/1.1\r\n"}, false, Result{Protocol: HTTP1}},
		{"tls", []string{hello}, false, Result{Protocol: TLS, SNI: "api.example.com", ALPN: []string{"h2"}}},
		{"tls in pieces", []string{hello[:4], hello[4:9], hello[9:]}, false, Result{Protocol: TLS, SNI: "api.example.com", ALPN: []string{"h2"}}},
		{"ssh", []string{"SSH-2.0-x\r\n"}, false, Result{Protocol: TCP}},
		{"server speaks first", nil, false, Result{Protocol: TCP}},
		{"partial then stall", []string{"GET / HT"}, false, Result{Protocol: TCP}},
		{"partial then close", []string{"PRI *"}, true, Result{Protocol: TCP}},
		{"partial tls then stall", []string{hello[:40]}, false, Result{Protocol: TLS}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			client, server := net.Pipe()
			defer client.Close()
			defer server.Close()
			go func() {
				for _, w := range tt.writes {
					if _, err := io.WriteString(client, w); err != nil {
						return
					}
				}
				if tt.close {
					client.Close()
				}
			}()
			br := bufio.NewReader(server)
			got, err := Detect(server, br, 50*time.Millisecond, 200*time.Millisecond)
			if err != nil || got.Protocol != tt.want.Protocol || got.SNI != tt.want.SNI || !slices.Equal(got.ALPN, tt.want.ALPN) {
				t.Fatalf("Detect = %+v, %v; want %+v", got, err, tt.want)
			}
			if len(tt.writes) == 0 {
				return
			}
			// Sniffing consumed nothing: the first write is still there.
			first := tt.writes[0]
			b := make([]byte, len(first))
			if _, err := io.ReadFull(br, b); err != nil || string(b) != first {
				t.Fatalf("after Detect read %q, %v; want %q", b, err, first)
			}
		})
	}
}

// A client that closes without sending anything is an error, not TCP.
func TestDetectClosed(t *testing.T) {
	client, server := net.Pipe()
	defer server.Close()
	client.Close()
	if got, err := Detect(server, bufio.NewReader(server), time.Second, time.Second); err == nil {
		t.Fatalf("Detect of a closed connection = %+v, no error", got)
	}
}

// Bytes that stay undecided until the buffer is full are TCP.
func TestDetectFullBuffer(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	go io.WriteString(client, "GET /"+strings.Repeat("a", 100))
	br := bufio.NewReaderSize(server, 16)
	got, err := Detect(server, br, time.Second, 5*time.Second)
	if err != nil || got.Protocol != TCP {
		t.Fatalf("Detect = %+v, %v; want TCP", got, err)
	}
}

func splitBytes(s string) []string {
	out := make([]string, len(s))
	for i := range s {
		out[i] = s[i : i+1]
	}
	return out
}
