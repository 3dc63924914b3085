package main

import (
	"slices"
	"time"
)

// summary is the distribution of a set of durations.
type summary struct {
	N             int
	P50, P99, Max time.Duration
}

// summarize computes nearest-rank percentiles of ds (not modified). An
// empty input gives the zero summary.
func summarize(ds []time.Duration) summary {
	if len(ds) == 0 {
		return summary{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return summary{N: len(s), P50: percentile(s, 50), P99: percentile(s, 99), Max: s[len(s)-1]}
}

// percentile is the nearest-rank p-th percentile of sorted: the smallest
// value with at least p% of the values at or below it.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (len(sorted)*p + 99) / 100 // ceil(n·p/100)
	rank = max(rank, 1)
	return sorted[rank-1]
}

// ms formats d in milliseconds with a precision that suits its size.
func ms(d time.Duration) string {
	v := float64(d) / float64(time.Millisecond)
	switch {
	case v >= 100:
		return fmtFloat(v, 0)
	case v >= 10:
		return fmtFloat(v, 1)
	default:
		return fmtFloat(v, 2)
	}
}
