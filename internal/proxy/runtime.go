package proxy

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultGCPercent is the GOGC a process that is only a proxy runs with.
// A proxy's live heap is small (~3 MB with 1,000 services in its config)
// and everything a request allocates is garbage when it ends, so the GC
// runs often and each cycle costs little: at GOGC=100 it was 7-13% of the
// CPU of BenchmarkOutboundInboundHTTP1/H2C and BenchmarkGatewayHTTP1 more
// than at 200, for 8 MB more resident under load and nothing more idle
// (config updates hand memory back: see release.go). 400 saved a few
// percent more for another 14 MB (docs/performance.md, "Proxy hot path").
const DefaultGCPercent = 200

// memoryLimitShare is the part of a cgroup's memory limit the Go heap is
// told to stay under (GOMEMLIMIT), leaving room for stacks, buffers and the
// binary: near the limit the GC works harder instead of the kernel killing
// the proxy.
const memoryLimitShare = 0.9

// SetRuntimeDefaults tunes the Go runtime for a process whose job is to be
// a proxy — trellis proxy, trellis gateway, trellis run — and not for one
// that is a proxy among other things (trellis demo, tests): GOGC to
// DefaultGCPercent, and GOMEMLIMIT to 90% of the cgroup's memory limit when
// there is one. What the environment sets (GOGC, GOMEMLIMIT) wins. GOMAXPROCS
// needs nothing: since Go 1.25 it follows the cgroup's CPU limit.
func SetRuntimeDefaults() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(DefaultGCPercent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		if limit, ok := cgroupMemoryLimit(); ok {
			debug.SetMemoryLimit(int64(float64(limit) * memoryLimitShare))
		}
	}
}

// cgroupMemoryLimit is the memory limit of this process's cgroup (v2, or
// v1), if it has one.
func cgroupMemoryLimit() (int64, bool) {
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		return parseMemoryLimit(string(raw))
	}
	return 0, false
}

// parseMemoryLimit reads a cgroup memory limit: "max" (v2) or a number
// near 2^63 (v1) mean none.
func parseMemoryLimit(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n >= 1<<62 {
		return 0, false
	}
	return n, true
}
