package main

import (
	"testing"
	"time"
)

func TestRoundWaitsForTheVersionCarryingTheChange(t *testing.T) {
	var rec recorder
	carries := false
	rd := newRound("rds", "5", 2, func(*proxy) bool { return carries })
	rd.start = time.Unix(100, 0)
	rec.cur.Store(rd)
	at := func(ms int) time.Time { return rd.start.Add(time.Duration(ms) * time.Millisecond) }

	rec.onAck(1, "rds", "5", at(1)) // the old version: ignored
	rec.onAck(1, "eds", "6", at(1)) // another type: ignored
	rec.onAck(1, "rds", "6", at(2)) // newer, but without the change (an unrelated publish)
	rec.onResponse(nil, "rds", "6") // proxy 0 decodes 6: no change in it
	rec.onAck(0, "rds", "6", at(2))
	rec.onAck(1, "rds", "7", at(3)) // before the target is known
	carries = true
	rec.onResponse(nil, "rds", "7") // proxy 0 decodes 7: the change
	rec.onAck(0, "rds", "7", at(4))
	rec.onAck(0, "rds", "8", at(9)) // already counted
	rec.onAck(5, "rds", "9", at(9)) // unknown proxy
	select {
	case <-rd.done:
	default:
		t.Fatal("not done after every proxy ACKed the change")
	}
	lat, missing := rd.results()
	if missing != 0 || len(lat) != 2 || lat[0] != 4*time.Millisecond || lat[1] != 3*time.Millisecond {
		t.Errorf("lat %v missing %d", lat, missing)
	}
}

func TestRoundPending(t *testing.T) {
	var rec recorder
	rd := newRound("eds", "1", 2, func(*proxy) bool { return true })
	rec.cur.Store(rd)
	rec.onResponse(nil, "eds", "3")
	rec.onAck(0, "eds", "3", rd.start.Add(time.Millisecond))
	rec.onAck(1, "eds", "2", rd.start.Add(time.Millisecond)) // older than the target
	select {
	case <-rd.done:
		t.Fatal("done with proxy 1 behind")
	default:
	}
	if _, missing := rd.results(); missing != 1 {
		t.Errorf("missing %d, want 1", missing)
	}
}
