package forward

import "testing"

func TestBufferPoolPutDoesNotAllocate(t *testing.T) {
	p := newBufferPool()
	p.Put(p.Get()) // warm the pool
	if n := testing.AllocsPerRun(100, func() { p.Put(p.Get()) }); n != 0 {
		t.Fatalf("Get+Put allocates %v times, want 0", n)
	}
	p.Put(make([]byte, 10)) // a foreign buffer is dropped, not kept
	if b := p.Get(); len(b) != copyBufferSize {
		t.Fatalf("Get returned %d bytes, want %d", len(b), copyBufferSize)
	}
}
