//go:build !linux

package sockio

import "net"

// Wrap returns c: the raw-syscall path is Linux-only.
func Wrap(c net.Conn) net.Conn { return c }

// PeerClosed reports false: without a non-blocking peek nothing is known.
func PeerClosed(c net.Conn) bool { return false }
