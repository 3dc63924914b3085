package xdsclient

import (
	"math/rand/v2"
	"time"
)

// backoff is exponential with jitter: each delay doubles up to max, and is
// drawn from [d/2, d] so that proxies which lost the same control plane do
// not all come back at the same instant.
type backoff struct {
	min, max time.Duration
	cur      time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	return b.cur/2 + rand.N(b.cur/2+1)
}

func (b *backoff) reset() { b.cur = 0 }
