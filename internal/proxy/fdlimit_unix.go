//go:build unix

package proxy

import "syscall"

// defaultMaxConnections is DefaultMaxConnections, or a quarter of the soft
// RLIMIT_NOFILE when that is less (at least 64): see Config.MaxConnections.
// (Go raises the soft limit to the hard one at start, on Linux.)
func defaultMaxConnections() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return DefaultMaxConnections
	}
	return int(max(min(rl.Cur/4, DefaultMaxConnections), 64))
}
