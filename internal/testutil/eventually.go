// Package testutil holds the few helpers several packages' tests share.
package testutil

import (
	"testing"
	"time"
)

// Eventually polls cond until it holds and returns how long that took; it
// fails the test when within passes first. Tests wait on conditions this
// way instead of sleeping a fixed time, which flakes on shared machines.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > within {
			t.Fatalf("not within %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start)
}
