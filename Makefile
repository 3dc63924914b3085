# Benchmarks (see docs/performance.md). Nothing here runs in `go test ./...`.
.PHONY: bench

# The data-plane comparison: direct, nginx, HAProxy and Trellis, one run (~13 min).
# BENCHFLAGS=-quick for a short run.
bench:
	go run ./bench $(BENCHFLAGS)
