//go:build linux

package sniff

import (
	"errors"
	"io"
	"net"
	"slices"
	"testing"
	"time"
)

// tcpPair is a connected client and server over loopback.
func tcpPair(t *testing.T) (client, server *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}

// DetectPeek tells the protocols apart like Detect, and consumes nothing:
// every byte is still there to read afterwards.
func TestDetectPeek(t *testing.T) {
	hello := string(clientHello(t, "reviews.example", "h2", "http/1.1"))
	tests := []struct {
		name, in string
		want     Protocol
	}{
		{"http/1.1", "GET /x HTTP/1.1\r\nHost: reviews\r\n\r\n", HTTP1},
		{"h2 preface", preface + "\x00\x00\x00\x04\x00\x00\x00\x00\x00", HTTP2},
		{"tls", hello, TLS},
		{"binary", "\x00\x01raw", TCP},
		{"text that is not http", "hello there\r\n", TCP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, s := tcpPair(t)
			if _, err := io.WriteString(c, tt.in); err != nil {
				t.Fatal(err)
			}
			// Waits long enough never to decide by the clock here.
			res, err := DetectPeek(s, make([]byte, 4096), time.Hour, time.Hour)
			if err != nil || res.Protocol != tt.want {
				t.Fatalf("DetectPeek = %v, %v; want %v", res.Protocol, err, tt.want)
			}
			if tt.want == TLS && (res.SNI != "reviews.example" || !slices.Equal(res.ALPN, []string{"h2", "http/1.1"})) {
				t.Fatalf("TLS: SNI %q ALPN %q", res.SNI, res.ALPN)
			}
			got := make([]byte, len(tt.in))
			if _, err := io.ReadFull(s, got); err != nil || string(got) != tt.in {
				t.Fatalf("after DetectPeek the connection reads %q, %v; want every byte sent", got, err)
			}
		})
	}
}

// A request line that comes in two writes is waited for (the netpoller is
// edge-triggered: the second write wakes the peek).
func TestDetectPeekWaitsForMore(t *testing.T) {
	c, s := tcpPair(t)
	io.WriteString(c, "GET /slow HT")
	done := make(chan Result, 1)
	go func() {
		res, err := DetectPeek(s, make([]byte, 4096), time.Hour, time.Hour)
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	// Whether the peek has seen the first part yet or not, the verdict
	// needs the rest: nothing else can make it return.
	io.WriteString(c, "TP/1.1\r\nHost: x\r\n\r\n")
	if res := <-done; res.Protocol != HTTP1 {
		t.Fatalf("got %v, want HTTP/1.1", res.Protocol)
	}
}

// Bytes that could still be HTTP, and then the client's end of stream: TCP
// at once, not at the deadline (an hour here).
func TestDetectPeekBytesThenEnd(t *testing.T) {
	c, s := tcpPair(t)
	io.WriteString(c, "hello")
	c.CloseWrite()
	res, err := DetectPeek(s, make([]byte, 4096), time.Hour, time.Hour)
	if err != nil || res.Protocol != TCP {
		t.Fatalf("got %v, %v; want TCP", res.Protocol, err)
	}
	got, _ := io.ReadAll(s)
	if string(got) != "hello" {
		t.Fatalf("read %q after DetectPeek", got)
	}
}

// A client that says nothing within the first wait speaks a protocol where
// the server speaks first: TCP. One that leaves without a byte is an error.
func TestDetectPeekSilenceAndClose(t *testing.T) {
	c, s := tcpPair(t)
	res, err := DetectPeek(s, make([]byte, 4096), 10*time.Millisecond, time.Hour)
	if err != nil || res.Protocol != TCP || !res.Silent {
		t.Fatalf("silence: %+v, %v; want TCP, silent", res, err)
	}
	// The deadline was cleared: the connection reads as it would have.
	io.WriteString(c, "late")
	got := make([]byte, 4)
	if _, err := io.ReadFull(s, got); err != nil || string(got) != "late" {
		t.Fatalf("after the wait: %q, %v", got, err)
	}

	c, s = tcpPair(t)
	c.Close()
	if _, err := DetectPeek(s, make([]byte, 4096), time.Hour, time.Hour); err == nil {
		t.Fatal("a client gone without a byte: want an error")
	}
}

// A full buffer of bytes that are still undecided is TCP.
func TestDetectPeekFullBuffer(t *testing.T) {
	c, s := tcpPair(t)
	io.WriteString(c, "GETTING") // a method so far: undecided at 4 bytes
	res, err := DetectPeek(s, make([]byte, 4), time.Hour, time.Hour)
	if err != nil || res.Protocol != TCP {
		t.Fatalf("got %v, %v; want TCP", res.Protocol, err)
	}
}

func TestDetectPeekNotSocket(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	if _, err := DetectPeek(b, make([]byte, 16), time.Hour, time.Hour); !errors.Is(err, ErrNotSocket) {
		t.Fatalf("net.Pipe: %v, want ErrNotSocket", err)
	}
}

// A ClientHello that comes in two writes is read whole for its SNI.
func TestDetectPeekSplitClientHello(t *testing.T) {
	hello := clientHello(t, "split.example", "h2")
	c, s := tcpPair(t)
	c.Write(hello[:9]) // the record header and a little: TLS already
	done := make(chan Result, 1)
	go func() {
		res, _ := DetectPeek(s, make([]byte, 4096), time.Hour, time.Hour)
		done <- res
	}()
	c.Write(hello[9:])
	if res := <-done; res.Protocol != TLS || res.SNI != "split.example" {
		t.Fatalf("got %v SNI %q, want TLS with SNI split.example", res.Protocol, res.SNI)
	}
}
