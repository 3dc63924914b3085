//go:build !linux

package sniff

import (
	"net"
	"time"
)

// DetectPeek needs Linux (recv MSG_PEEK waited for through the netpoller,
// and the socket's TCP state); elsewhere it is ErrNotSocket, and callers
// keep their behaviour without detection.
func DetectPeek(c net.Conn, buf []byte, first, total time.Duration) (Result, error) {
	return Result{}, ErrNotSocket
}
