package breaker

import "testing"

func TestRetryBudget(t *testing.T) {
	for _, tc := range []struct {
		name     string
		active   int
		percent  float64
		min      int
		wantOnes int // retries allowed in a row
	}{
		{"min wins when few are active", 4, 20, 3, 3},
		{"share wins when many are active", 100, 20, 3, 20},
		{"no minimum, none active", 0, 20, 0, 0},
		{"percent 100", 10, 100, 0, 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var s Budgets
			b := s.For("reviews")
			for range tc.active {
				b.Begin()
			}
			got := 0
			for b.TryRetry(tc.percent, tc.min) {
				got++
				if got > 1000 {
					t.Fatal("unbounded")
				}
			}
			if got != tc.wantOnes {
				t.Fatalf("%d retries allowed, want %d", got, tc.wantOnes)
			}
			// Ending the requests gives the retries back.
			for i := range tc.active {
				if i == 0 {
					b.End(got)
				} else {
					b.End(0)
				}
			}
			if a, r := b.InFlight(); a != 0 || r != 0 {
				t.Fatalf("in flight after End: %d requests, %d retries", a, r)
			}
			if s.For("reviews") != b {
				t.Fatal("For returned another budget for the same cluster")
			}
		})
	}
}
