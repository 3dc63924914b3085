//go:build linux

package sockio

import (
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
)

// raceChildEnv names the racy scenario TestRaceChild runs in a child
// process of TestRaceDetectorSeesSockio.
const raceChildEnv = "SOCKIO_RACE_CHILD"

// TestRaceDetectorSeesSockio: under -race, a buffer written by another
// goroutine while a Conn writes it out, or read while a Conn reads into
// it, is reported as a data race, which it was not while the raw system
// calls hid the Conn's accesses (sockio_race.go). The racy program runs in
// a child process (this test binary, running TestRaceChild), since a race
// reported here would fail this test whatever it found.
func TestRaceDetectorSeesSockio(t *testing.T) {
	if !raceEnabled {
		t.Skip("needs a race build (go test -race)")
	}
	for _, scenario := range []struct{ name, frame string }{
		{"write", "sockio.(*Conn).Write"},
		{"read", "sockio.(*Conn).Read"},
	} {
		t.Run(scenario.name, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestRaceChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), raceChildEnv+"="+scenario.name, "GORACE=halt_on_error=1")
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the racy child passed: the race detector did not see sockio's %s\n%s", scenario.name, out)
			}
			report := string(out)
			if !strings.Contains(report, "WARNING: DATA RACE") {
				t.Fatalf("the child failed (%v) without a race report:\n%s", err, out)
			}
			// The race found is the one on the buffer, seen in sockio.
			if !strings.Contains(report, scenario.frame) {
				t.Fatalf("the race report does not name %s:\n%s", scenario.frame, out)
			}
		})
	}
}

// TestRaceChild is the racy program of TestRaceDetectorSeesSockio; it does
// nothing unless run by it.
func TestRaceChild(t *testing.T) {
	scenario := os.Getenv(raceChildEnv)
	if scenario == "" {
		t.Skip("run by TestRaceDetectorSeesSockio")
	}
	a, b := tcpPair(t)
	w := wrap(t, a)
	buf := []byte("a buffer that sockio moves while another goroutine uses it")
	var wg sync.WaitGroup
	switch scenario {
	case "write":
		// A Write of buf, and buf reused at the same time (a pooled buffer
		// handed back before the write was done): nothing orders the two.
		wg.Go(func() {
			if _, err := w.Write(buf); err != nil {
				t.Error(err)
			}
		})
		copy(buf, "reused")
		wg.Wait()
		io.ReadFull(b, make([]byte, len(buf)))
	case "read":
		// The bytes are there before the Read starts; buf is read by this
		// goroutine while the Read fills it.
		if _, err := b.Write(buf); err != nil {
			t.Fatal(err)
		}
		into := make([]byte, len(buf))
		wg.Go(func() {
			if _, err := io.ReadFull(w, into); err != nil {
				t.Error(err)
			}
		})
		sum := 0
		for _, c := range into {
			sum += int(c)
		}
		wg.Wait()
		t.Log(sum)
	default:
		t.Fatalf("unknown scenario %q", scenario)
	}
}
