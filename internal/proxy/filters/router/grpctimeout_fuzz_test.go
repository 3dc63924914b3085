package router

import (
	"math/bits"
	"testing"
	"time"
)

// FuzzParseGRPCTimeout holds ParseGRPCTimeout to the gRPC spec
// (PROTOCOL-HTTP2.md: Timeout → TimeoutValue TimeoutUnit, the value a
// positive integer of at most 8 ASCII digits, the unit one of H M S m u
// n), with referenceGRPCTimeout as written from it: the same values are
// accepted, and they mean the same duration, capped at MaxGRPCTimeout and
// never below 1 ns (a "0S" deadline has passed already: it must not read
// as "no deadline").
func FuzzParseGRPCTimeout(f *testing.F) {
	for _, s := range []string{
		"1S", "0S", "00000000n", "99999999H", "99999999n", "12345678m", "1u", "100m", "5M", "2H",
		"", "S", "1", "1s", "1x", "-1S", "+1S", " 1S", "1S ", "1 S", "123456789S", "0x1S", "1_0S",
		"１S", "1\x00S", "9223372036854775807n", "18446744073709551616S",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := ParseGRPCTimeout(s)
		want, wantOK := referenceGRPCTimeout(s)
		if ok != wantOK || got != want {
			t.Fatalf("ParseGRPCTimeout(%q) = %v, %v; the spec says %v, %v", s, got, ok, want, wantOK)
		}
		if ok && (got < 1 || got > MaxGRPCTimeout) {
			t.Fatalf("ParseGRPCTimeout(%q) = %v, outside [1ns, %v]", s, got, MaxGRPCTimeout)
		}
	})
}

// referenceGRPCTimeout parses a grpc-timeout digit by digit, in 128-bit
// arithmetic where it cannot overflow.
func referenceGRPCTimeout(s string) (time.Duration, bool) {
	if len(s) < 2 || len(s) > 9 {
		return 0, false
	}
	units := map[byte]time.Duration{
		'H': time.Hour, 'M': time.Minute, 'S': time.Second,
		'm': time.Millisecond, 'u': time.Microsecond, 'n': time.Nanosecond,
	}
	unit, ok := units[s[len(s)-1]]
	if !ok {
		return 0, false
	}
	var n uint64
	for _, c := range []byte(s[:len(s)-1]) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0') // at most 8 digits: no overflow
	}
	hi, lo := bits.Mul64(n, uint64(unit))
	if hi != 0 || lo > uint64(MaxGRPCTimeout) {
		return MaxGRPCTimeout, true
	}
	return max(time.Duration(lo), 1), true
}
