package proxy

import (
	"crypto/sha256"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"
)

// Only private, read-only mappings of the executable whose pages all come
// from the file are released.
func TestReleasableMappings(t *testing.T) {
	const exe = "/opt/my dir/trellis"
	smaps := `00400000-01205000 r-xp 00000000 fe:00 1234                           /opt/my dir/trellis
Size:              14356 kB
Rss:                9000 kB
Anonymous:             0 kB
Swap:                  0 kB
VmFlags: rd ex mr mw me dw sd
01205000-023b8000 r--p 00e05000 fe:00 1234                           /opt/my dir/trellis
Size:              18124 kB
Rss:                7000 kB
Anonymous:             0 kB
Swap:                  0 kB
023b8000-023b9000 r--p 01fb8000 fe:00 1234                           /opt/my dir/trellis
Size:                  4 kB
Rss:                   4 kB
Anonymous:             4 kB
Swap:                  0 kB
023b9000-023c0000 r--p 01fb9000 fe:00 1234                           /opt/my dir/trellis
Size:                 28 kB
Rss:                   4 kB
Anonymous:             0 kB
Swap:                  8 kB
023c0000-0245f000 rw-p 01fc0000 fe:00 1234                           /opt/my dir/trellis
Size:                636 kB
Rss:                 600 kB
Anonymous:           240 kB
Swap:                  0 kB
0245f000-02460000 rw-p 0205f000 fe:00 1234                           /opt/my dir/trellis
Size:                  4 kB
Rss:                   4 kB
Anonymous:             0 kB
Swap:                  0 kB
02460000-0246f000 r--s 00000000 fe:00 1234                           /opt/my dir/trellis
Size:                 64 kB
Rss:                  64 kB
Anonymous:             0 kB
Swap:                  0 kB
02470000-02480000 r--p 00000000 fe:00 1234                           /opt/my dir/trellis
Size:                 64 kB
Rss:                   0 kB
Anonymous:             0 kB
Swap:                  0 kB
02480000-02490000 r--p 00000000 fe:00 1234                           /opt/my dir/trellis
Size:                 64 kB
Rss:                  64 kB
7f0000000000-7f0000100000 r-xp 00026000 fe:00 99                     /usr/lib/x86_64-linux-gnu/libc.so.6
Size:               1024 kB
Rss:                 900 kB
Anonymous:             0 kB
Swap:                  0 kB
7f0000200000-7f0000300000 rw-p 00000000 00:00 0 
Size:               1024 kB
Rss:                1024 kB
Anonymous:          1024 kB
Swap:                  0 kB
`
	got, err := releasableMappings(strings.NewReader(smaps), exe)
	if err != nil {
		t.Fatal(err)
	}
	want := []mapping{
		{start: 0x400000, end: 0x1205000, perms: "r-xp", path: exe, rss: 9000 << 10},
		{start: 0x1205000, end: 0x23b8000, perms: "r--p", path: exe, rss: 7000 << 10},
	}
	if !slices.Equal(got, want) {
		t.Errorf("releasable:\n got %+v\nwant %+v", got, want)
	}
}

// releaseTestData is in the executable's writable data, initialised from
// the file: the release must not reset what the program wrote to it.
var releaseTestData = [3 * 4096]byte{0: 1, 4096: 1, 8191: 1}

// The release drops the resident pages of the executable's read-only
// mappings; they read the same afterwards, and writable data keeps what
// was written to it.
func TestReleaseExecutablePages(t *testing.T) {
	for i := range releaseTestData {
		releaseTestData[i] = 0xab
	}
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	before := exeMappings(t, exe)
	if len(before) == 0 {
		t.Fatalf("no releasable mapping of %s", exe)
	}
	text, ok := findMapping(before, "r-xp")
	if !ok {
		t.Fatalf("no text mapping in %+v", before)
	}
	sums := make([][32]byte, len(before))
	for i, m := range before {
		sums[i] = sha256.Sum256(readMemory(t, m)) // also makes every page resident
	}
	textRSS := rssOf(t, exe, text.start)

	released, err := releaseExecutablePages()
	if err != nil {
		t.Fatal(err)
	}
	textAfter := rssOf(t, exe, text.start)

	t.Logf("released %d KiB; text mapping resident %d → %d KiB", released>>10, textRSS>>10, textAfter>>10)
	if released <= 0 {
		t.Errorf("released %d bytes", released)
	}
	if textAfter >= textRSS {
		t.Errorf("text mapping resident %d KiB after the release, %d KiB before", textAfter>>10, textRSS>>10)
	}
	for i, m := range before {
		if sha256.Sum256(readMemory(t, m)) != sums[i] {
			t.Errorf("mapping %x-%x %s reads differently after the release", m.start, m.end, m.perms)
		}
	}
	for i, b := range releaseTestData {
		if b != 0xab {
			t.Fatalf("writable data changed at byte %d: %#x", i, b)
		}
	}
}

// A process that asked for it also drops the executable's pages when it
// releases memory after a config update.
func TestReleaseMemoryReleasesExecutable(t *testing.T) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	ReleaseExecutablePages(slog.New(slog.NewTextHandler(&logged, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { executableLog.Store(nil) })
	text, ok := findMapping(exeMappings(t, exe), "r-xp")
	if !ok {
		t.Fatal("no text mapping")
	}
	readMemory(t, text)
	before := rssOf(t, exe, text.start)
	releaseMemory()
	after := rssOf(t, exe, text.start)
	if after >= before {
		t.Errorf("text mapping resident %d KiB after the release, %d KiB before", after>>10, before>>10)
	}
	if !strings.Contains(logged.String(), "released the binary's pages") {
		t.Errorf("log: %q", logged.String())
	}
}

// exeMappings are the releasable mappings of exe now.
func exeMappings(t *testing.T, exe string) []mapping {
	t.Helper()
	smaps, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer smaps.Close()
	ms, err := releasableMappings(smaps, exe)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func findMapping(ms []mapping, perms string) (mapping, bool) {
	for _, m := range ms {
		if m.perms == perms {
			return m, true
		}
	}
	return mapping{}, false
}

// rssOf is the resident size of the mapping of exe that starts at start.
func rssOf(t *testing.T, exe string, start uintptr) int64 {
	t.Helper()
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for line := range strings.Lines(string(smaps)) {
		if m, path, ok := parseMapsLine([]byte(strings.TrimSuffix(line, "\n"))); ok {
			found = m.start == start && string(path) == exe
			continue
		}
		if key, val, _ := strings.Cut(line, ":"); found && key == "Rss" {
			return parseKB([]byte(val))
		}
	}
	t.Fatalf("no mapping of %s at %#x", exe, start)
	return 0
}

// readMemory reads the whole of m through /proc/self/mem.
func readMemory(t *testing.T, m mapping) []byte {
	t.Helper()
	f, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, m.end-m.start)
	if _, err := f.ReadAt(buf, int64(m.start)); err != nil {
		t.Fatalf("reading %x-%x: %v", m.start, m.end, err)
	}
	return buf
}
