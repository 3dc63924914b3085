//go:build !unix

package proxy

// defaultMaxConnections is DefaultMaxConnections: no RLIMIT_NOFILE here.
func defaultMaxConnections() int { return DefaultMaxConnections }
