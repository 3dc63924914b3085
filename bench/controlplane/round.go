package main

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// round is one measured change. It ends when every proxy has ACKed a
// version of typeURL that carries the change. Which version that is, the
// verifying proxy (proxy 0) finds out: it decodes each response and the
// first one that match accepts sets the target; any later version carries
// the change too (versions only grow). Other proxies may ACK the target
// before proxy 0 does, so every ACK of a version newer than base is kept
// until the target is known.
type round struct {
	typeURL string
	base    int // the version every proxy ran before the change
	match   func(*proxy) bool
	start   time.Time

	mu        sync.Mutex
	target    int             // 0 until proxy 0 has seen the change
	acks      [][]ack         // per proxy, versions newer than base, until counted
	at        []time.Duration // per proxy: start → its ACK of target (or newer); 0 while pending
	remaining int
	done      chan struct{}
}

type ack struct {
	version int
	at      time.Time
}

func newRound(typeURL, base string, proxies int, match func(*proxy) bool) *round {
	b, _ := strconv.Atoi(base)
	return &round{typeURL: typeURL, base: b, match: match,
		acks: make([][]ack, proxies), at: make([]time.Duration, proxies), remaining: proxies, done: make(chan struct{})}
}

// recorder routes every ACK of every proxy to the round in progress.
type recorder struct{ cur atomic.Pointer[round] }

// onResponse is called by the verifying proxy after it decoded a response
// and before it ACKs it.
func (r *recorder) onResponse(p *proxy, typeURL, version string) {
	rd := r.cur.Load()
	if rd == nil || typeURL != rd.typeURL || rd.match == nil || !rd.match(p) {
		return
	}
	v, err := strconv.Atoi(version)
	if err != nil {
		return
	}
	rd.setTarget(v)
}

func (r *recorder) onAck(idx int, typeURL, version string, at time.Time) {
	rd := r.cur.Load()
	if rd == nil || typeURL != rd.typeURL || idx < 0 || idx >= len(rd.at) {
		return
	}
	v, err := strconv.Atoi(version)
	if err != nil || v <= rd.base {
		return
	}
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if rd.at[idx] != 0 {
		return
	}
	if rd.target == 0 {
		rd.acks[idx] = append(rd.acks[idx], ack{v, at})
		return
	}
	rd.countLocked(idx, ack{v, at})
}

func (rd *round) setTarget(v int) {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if rd.target != 0 {
		return
	}
	rd.target = v
	for idx, as := range rd.acks {
		for _, a := range as {
			if rd.countLocked(idx, a) {
				break
			}
		}
		rd.acks[idx] = nil
	}
}

// countLocked records a as proxy idx's ACK of the change if it is one.
func (rd *round) countLocked(idx int, a ack) bool {
	if a.version < rd.target || rd.at[idx] != 0 {
		return false
	}
	rd.at[idx] = max(a.at.Sub(rd.start), 1)
	rd.remaining--
	if rd.remaining == 0 {
		close(rd.done)
	}
	return true
}

// results returns the latency of every proxy that ACKed the change and how
// many did not.
func (rd *round) results() (lat []time.Duration, missing int) {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	for _, d := range rd.at {
		if d == 0 {
			missing++
		} else {
			lat = append(lat, d)
		}
	}
	return lat, missing
}
