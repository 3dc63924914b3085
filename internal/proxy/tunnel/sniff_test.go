package tunnel

import (
	"bufio"
	"io"
	"net"
	"testing"
	"time"
)

const preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func TestSniffHTTP2(t *testing.T) {
	tests := []struct {
		in   string
		want Verdict
	}{
		{"", NeedMore},
		{"P", NeedMore},
		{"PRI * HTTP/2.0\r\n", NeedMore},
		{preface, Match},
		{preface + "\x00\x00\x12\x04", Match},
		{"GET / HTTP/1.1\r\n", NoMatch},
		{"PRX", NoMatch},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\r", NoMatch},
		{"\x16\x03\x01", NoMatch}, // TLS
	}
	for _, tt := range tests {
		if got := SniffHTTP2([]byte(tt.in)); got != tt.want {
			t.Errorf("SniffHTTP2(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestDetect(t *testing.T) {
	tests := []struct {
		name   string
		writes []string // sent in pieces, so Detect must ask for more
		want   Protocol
	}{
		{"h2 in one piece", []string{preface + "rest"}, HTTP2},
		{"h2 byte by byte", splitBytes(preface), HTTP2},
		{"h2 in halves", []string{preface[:7], preface[7:]}, HTTP2},
		{"http1", []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n"}, HTTP1},
		{"http1 starting like the preface", []string{"P", "OST / HTTP/1.1\r\n"}, HTTP1},
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
			}()
			br := bufio.NewReader(server)
			got, err := Detect(server, br, 10*time.Second)
			if err != nil || got != tt.want {
				t.Fatalf("Detect = %v, %v; want %v", got, err, tt.want)
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

// A client that sends part of the preface and stalls is given up on.
func TestDetectStall(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	defer server.Close()
	go io.WriteString(client, "PRI *")
	if _, err := Detect(server, bufio.NewReader(server), 50*time.Millisecond); err == nil {
		t.Fatal("Detect of a stalled prefix: no error")
	}
}

func splitBytes(s string) []string {
	out := make([]string, len(s))
	for i := range s {
		out[i] = s[i : i+1]
	}
	return out
}
