package sniff

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"slices"
	"testing"
	"time"
)

// FuzzSniff: no sniffer panics, and a verdict once given (match or no
// match) holds whatever bytes follow, which is what lets Detect stop
// reading early.
func FuzzSniff(f *testing.F) {
	seedCorpus(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		// Detect never looks past its reader's buffer (4 KiB), and every
		// prefix is sniffed here: keep it quadratic in something small.
		b = b[:min(len(b), 4096)]
		for _, s := range sniffers {
			final := s.sniff(b)
			for i := range len(b) {
				if v := s.sniff(b[:i]); v != NeedMore && v != final {
					t.Fatalf("%v: %q says %v, its prefix %q %v", s.proto, b, final, b[:i], v)
				}
			}
		}
		if h, ok := ParseClientHello(b); ok && SniffTLS(b) != Match {
			t.Fatalf("parsed %+v from bytes that are not a ClientHello", h)
		}
	})
}

// FuzzClientHello holds the hand parser to crypto/tls: when both parse a
// ClientHello, they read the same SNI and ALPN.
func FuzzClientHello(f *testing.F) {
	seedCorpus(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		h, ok := ParseClientHello(b)
		if !ok {
			return
		}
		info, ok := stdClientHello(b)
		if !ok {
			return
		}
		if info.ServerName != h.ServerName || !slices.Equal(info.SupportedProtos, h.ALPN) {
			t.Fatalf("crypto/tls read %q %q, ParseClientHello %q %q", info.ServerName, info.SupportedProtos, h.ServerName, h.ALPN)
		}
	})
}

// seedCorpus adds small seeds; the ClientHellos of a real crypto/tls
// client (Go 1.26: with an X25519MLKEM768 key share) are in
// testdata/fuzz, captured as clientHello does: making one in a fuzz worker,
// whose crypto code is instrumented for coverage, takes many seconds.
func seedCorpus(f *testing.F) {
	f.Add([]byte(preface))
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("SSH-2.0-OpenSSH_9.6\r\n"))
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 0x01, 0x00, 0x00, 0x01, 0x00})
}

var errSeen = errors.New("seen")

// stdClientHello runs a crypto/tls server handshake over b and returns the
// ClientHelloInfo it parsed, if it got that far.
func stdClientHello(b []byte) (*tls.ClientHelloInfo, bool) {
	var info *tls.ClientHelloInfo
	cfg := &tls.Config{GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
		info = chi
		return nil, errSeen
	}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = tls.Server(&replayConn{r: bytes.NewReader(b)}, cfg).HandshakeContext(ctx)
	return info, info != nil
}

// replayConn reads b, then EOF; writes vanish.
type replayConn struct {
	net.Conn
	r *bytes.Reader
}

func (c *replayConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *replayConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *replayConn) Close() error                     { return nil }
func (c *replayConn) SetDeadline(time.Time) error      { return nil }
func (c *replayConn) SetReadDeadline(time.Time) error  { return nil }
func (c *replayConn) SetWriteDeadline(time.Time) error { return nil }
func (c *replayConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *replayConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
