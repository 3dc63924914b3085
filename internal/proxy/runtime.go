package proxy

import (
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultGCPercent is the GOGC a process that is only a proxy runs with.
// In-process benchmarks at full speed spent 7-13% less CPU at 200 than at
// 100, but the bench/ harness at the fixed 1,000 rps measured the
// opposite twice (gateway HTTP/1.1: 0.098 vs 0.118 and 0.110 vs 0.154 CPU
// s per 1,000 requests, and +6-7 MB peak RSS at 200), so Go's default
// stays until a quiet-machine A/B says otherwise (docs/performance.md).
const DefaultGCPercent = 100

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
