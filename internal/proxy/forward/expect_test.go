package forward

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// Expect: 100-continue end to end: the client's 100 Continue is the
// instance's, once, and only when the instance wants the body; an instance
// that answers at once (417, 401…) is relayed without a 100, and the body
// never leaves the client.
func TestExpectContinueEndToEnd(t *testing.T) {
	for _, tt := range []struct {
		name     string
		readBody bool // the instance reads the body (net/http answers 100 then)
		want100  int  // 100 Continue the client must see
		wantCode int
	}{
		{"instance wants the body", true, 1, 200},
		{"instance refuses at once", false, 0, 417},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := make(chan string, 1)
			inst := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if !tt.readBody {
					w.WriteHeader(http.StatusExpectationFailed)
					return
				}
				b, _ := io.ReadAll(r.Body)
				got <- string(b)
				fmt.Fprintf(w, "got %d bytes", len(b))
			}))
			addr := proxyWith(t, New(Options{}), &Target{Addr: inst, Service: "reviews"})
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second)) // bounds a failing test
			const body = "hello"
			fmt.Fprintf(c, "POST /up HTTP/1.1\r\nHost: reviews\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", len(body))
			br := bufio.NewReader(c)
			continues := 0
			for {
				res, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatalf("after %d 100 Continue: %v", continues, err)
				}
				if res.StatusCode == http.StatusContinue {
					continues++
					if continues == 1 {
						io.WriteString(c, body) // as a client does on its 100
					}
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != tt.wantCode {
					t.Fatalf("status %d, want %d", res.StatusCode, tt.wantCode)
				}
				break
			}
			if continues != tt.want100 {
				t.Fatalf("%d 100 Continue, want %d", continues, tt.want100)
			}
			if tt.readBody {
				if b := <-got; b != body {
					t.Fatalf("instance got %q", b)
				}
			}
		})
	}
}

// An instance that ignores Expect (sends no 100 and waits for the body)
// still gets it: after expectContinueTimeout the body goes, and the
// client, which waits for a 100, gets one from the proxy.
func TestExpectContinueIgnoredByInstance(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		b, _ := io.ReadAll(io.LimitReader(br, req.ContentLength)) // no 100: straight to the body
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(b), b)
	}()
	addr := proxyWith(t, New(Options{}), &Target{Addr: ln.Addr().String(), Service: "reviews"})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second)) // bounds a failing test
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: reviews\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	if err != nil || res.StatusCode != http.StatusContinue {
		t.Fatalf("first answer %v %v, want 100 Continue", res, err)
	}
	io.WriteString(c, "hello")
	res, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || string(b) != "hello" {
		t.Fatalf("%d %q, want 200 hello", res.StatusCode, b)
	}
}
