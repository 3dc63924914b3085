package main

import (
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	var ds []time.Duration
	for i := 100; i >= 1; i-- { // unsorted on purpose
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	s := summarize(ds)
	if s.N != 100 || s.P50 != 50*time.Millisecond || s.P99 != 99*time.Millisecond || s.Max != 100*time.Millisecond {
		t.Errorf("summary = %+v", s)
	}
	if ds[0] != 100*time.Millisecond {
		t.Error("summarize sorted its input")
	}
	if got := summarize(nil); got != (summary{}) {
		t.Errorf("empty: %+v", got)
	}
	one := summarize([]time.Duration{7})
	if one.P50 != 7 || one.P99 != 7 || one.Max != 7 {
		t.Errorf("one value: %+v", one)
	}
}

func TestPercentileSmallSets(t *testing.T) {
	s := []time.Duration{1, 2, 3}
	for p, want := range map[int]time.Duration{1: 1, 33: 1, 34: 2, 50: 2, 67: 3, 99: 3, 100: 3} {
		if got := percentile(s, p); got != want {
			t.Errorf("p%d = %d, want %d", p, got, want)
		}
	}
}

func TestMS(t *testing.T) {
	for d, want := range map[time.Duration]string{
		1500 * time.Microsecond:  "1.50",
		12340 * time.Microsecond: "12.3",
		1234 * time.Millisecond:  "1234",
	} {
		if got := ms(d); got != want {
			t.Errorf("ms(%v) = %q, want %q", d, got, want)
		}
	}
}
