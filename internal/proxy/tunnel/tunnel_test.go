package tunnel

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// sink accepts connections and reads them, never writing.
func sink(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// externalTunnel serves CONNECT with s as to a host outside the mesh and
// returns an open tunnel to target.
func externalTunnel(t *testing.T, s *Server, target string) (net.Conn, *bufio.Reader) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up, err := net.Dial("tcp", r.Host)
		if err != nil {
			http.Error(w, err.Error(), 503)
			return
		}
		s.ServeExternal(w, r, up, nil)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); s.Close() })
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n\r\n", target, target)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodConnect})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	return c, br
}

// A relay with no byte either way for its idle timeout is closed; bytes in
// one direction only keep it open.
func TestRelayIdleTimeout(t *testing.T) {
	s := New(http.NotFoundHandler(), nil)
	s.IdleTimeout = 300 * time.Millisecond
	c, br := externalTunnel(t, s, sink(t))
	start := time.Now()
	for range 6 { // 600 ms of client → upstream only
		if _, err := io.WriteString(c, "x"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("read %v, want EOF", err)
	}
	if d := time.Since(start); d < 800*time.Millisecond {
		t.Fatalf("closed after %s, while the client was sending", d)
	}
}
