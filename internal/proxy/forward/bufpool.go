package forward

import "sync"

// bufferPool recycles ReverseProxy's copy buffers: without it each request
// allocates 32 KiB per hop.
//
// The pool holds *[copyBufferSize]byte, not *[]byte: Put gets a []byte
// (httputil.BufferPool's signature) and converting it back to an array
// pointer costs nothing, where taking the address of a slice header
// allocates one per request.
type bufferPool struct{ p sync.Pool }

const copyBufferSize = 32 << 10

type buffer = [copyBufferSize]byte

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { return new(buffer) }}}
}

func (b *bufferPool) Get() []byte { return b.p.Get().(*buffer)[:] }

func (b *bufferPool) Put(buf []byte) {
	if cap(buf) != copyBufferSize {
		return // not one of ours
	}
	b.p.Put((*buffer)(buf[:copyBufferSize]))
}
