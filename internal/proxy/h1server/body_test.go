package h1server

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// A request body read after its handler returned — as a net/http
// transport does when it still sends the body on its own goroutine while
// the answer is already back — gets an error and never the bytes of the
// connection's next request, even while that request is being served: the
// body's buffer belongs to the connection again.
func TestBodyReadAfterHandlerReturned(t *testing.T) {
	bodies := make(chan io.Reader, 1)
	inNext := make(chan struct{})
	lateDone := make(chan struct{})
	ts := startServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/leaves-body":
			bodies <- r.Body // read by someone else, later
		case "/next":
			close(inNext)
			<-lateDone
			b, _ := io.ReadAll(r.Body)
			w.Write(b)
			return
		}
		io.WriteString(w, r.URL.Path)
	}))
	c := dial(t, ts.addr)
	c.send(post("/leaves-body", strings.Repeat("a", 100)))
	if r := c.read("POST"); r.body != "/leaves-body" {
		t.Fatalf("got %q", r.body)
	}
	body := <-bodies
	c.send(post("/next", "next body"))
	<-inNext // the next request's handler runs, its body unread
	buf := make([]byte, 64)
	n, err := body.Read(buf)
	close(lateDone)
	if n != 0 || err == nil || err == io.EOF {
		t.Errorf("a late read of the first body got %d bytes %q and error %v; want none and an error", n, buf[:n], err)
	}
	if r := c.read("POST"); r.body != "next body" {
		t.Fatalf("the next request's handler read %q, want its whole body", r.body)
	}
}
