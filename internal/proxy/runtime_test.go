package proxy

import (
	"runtime/debug"
	"testing"
)

func TestParseMemoryLimit(t *testing.T) {
	for in, want := range map[string]int64{
		"max\n": 0, "536870912\n": 536870912, "9223372036854771712\n": 0, "0": 0, "junk": 0,
	} {
		got, ok := parseMemoryLimit(in)
		if got != want || ok != (want > 0) {
			t.Errorf("parseMemoryLimit(%q) = %d, %v", in, got, ok)
		}
	}
}

func TestSetRuntimeDefaultsKeepsTheEnvironments(t *testing.T) {
	t.Setenv("GOGC", "77")
	t.Setenv("GOMEMLIMIT", "1GiB")
	before := debug.SetGCPercent(77)
	defer debug.SetGCPercent(before)
	SetRuntimeDefaults()
	if got := debug.SetGCPercent(before); got != 77 {
		t.Errorf("GOGC set in the environment was overridden: %d", got)
	}
}
