//go:build linux

package proxy

import (
	"bufio"
	"bytes"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// releaseExecutablePages drops this process's resident pages of the
// read-only mappings of its own executable (text and read-only data), and
// returns how many bytes were resident in them.
//
// Why: trellis is one binary for every role, and at start every package's
// init runs — etcd's server, the control plane, gRPC, the Envoy protos'
// descriptors — touching code and data all over the binary once. The
// kernel maps a file page on a fault together with its neighbours (fault-
// around, 64 KiB), so nearly all of the binary's text and read-only data
// ends up resident (about 22 MB of a sidecar's RSS) though the proxy never
// runs that code again. After madvise(MADV_DONTNEED) only what the proxy
// really uses comes back, on its next use.
//
// Why it is safe: a private file mapping that is not writable holds clean
// copies of the file; dropping them loses nothing, and the next access
// faults the same bytes back in from the page cache (kernel reclaim drops
// such pages the same way under memory pressure; like reclaim, it needs the
// file to stay readable, which a binary on a network filesystem whose
// server is gone is not). Only the page table entries of this process go:
// the page cache — shared with every process running the binary — stays.
// Skipped, and never released:
//
//   - writable mappings (data, bss): MADV_DONTNEED would reset them to the
//     file's contents or zero, losing what the program wrote;
//   - read-only mappings with anonymous or swapped pages: pages written
//     before the mapping was made read-only (relocations of a RELRO
//     segment in a PIE binary, done by the dynamic loader) are private
//     copies that the file does not hold.
//
// MADV_PAGEOUT is not used: it would evict the page cache other processes
// share.
func releaseExecutablePages() (int64, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0, err
	}
	smaps, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, err
	}
	defer smaps.Close()
	mappings, err := releasableMappings(smaps, exe)
	if err != nil {
		return 0, err
	}
	var released int64
	for _, m := range mappings {
		// The raw call: unix.Madvise takes a []byte, and making one of an
		// address read from smaps would take unsafe.
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED); errno != 0 {
			return released, os.NewSyscallError("madvise", errno)
		}
		released += m.rss
	}
	return released, nil
}

// mapping is one entry of /proc/self/smaps, as far as releasing needs.
type mapping struct {
	start, end uintptr
	perms      string // "r-xp"
	path       string
	rss        int64 // bytes
	anon, swap int64 // bytes: pages the file does not hold
}

// releasable: a private, read-only mapping whose pages all come from the
// file, and some of them are resident.
func (m *mapping) releasable() bool {
	private, readOnly := m.perms[3] == 'p', m.perms[1] != 'w'
	return private && readOnly && m.anon == 0 && m.swap == 0 && m.rss > 0
}

// releasableMappings reads /proc/self/smaps and returns the mappings of
// the file exe that can be released (mapping.releasable). It reads line by
// line into a small buffer: the release runs right after a collection, and
// garbage made then stays resident until the next one.
func releasableMappings(smaps io.Reader, exe string) ([]mapping, error) {
	var out []mapping
	var cur mapping
	ours := false // cur is a mapping of exe
	done := func() {
		if ours && cur.releasable() {
			out = append(out, cur)
		}
	}
	sc := bufio.NewScanner(smaps)
	for sc.Scan() {
		line := sc.Bytes()
		if m, path, ok := parseMapsLine(line); ok {
			done()
			ours = string(path) == exe
			if ours {
				cur = m
				cur.path = exe
				cur.anon, cur.swap = -1, -1 // unknown until their lines are read
			}
			continue
		}
		if !ours {
			continue
		}
		key, val, _ := bytes.Cut(line, []byte(":"))
		switch string(key) {
		case "Rss":
			cur.rss = parseKB(val)
		case "Anonymous":
			cur.anon = parseKB(val)
		case "Swap":
			cur.swap = parseKB(val)
		}
	}
	done()
	return out, sc.Err()
}

// parseMapsLine parses a mapping's first line, returning its path apart:
//
//	00400000-00e3a000 r-xp 00000000 fe:00 1234   /usr/local/bin/trellis
func parseMapsLine(line []byte) (m mapping, path []byte, ok bool) {
	// Five fields and the path, which may hold spaces.
	rest := line
	var fields [5][]byte
	for i := range fields {
		rest = bytes.TrimLeft(rest, " ")
		f, r, found := bytes.Cut(rest, []byte(" "))
		if !found && i < len(fields)-1 {
			return m, nil, false
		}
		fields[i], rest = f, r
	}
	lo, hi, found := bytes.Cut(fields[0], []byte("-"))
	start, ok1 := parseHex(lo)
	end, ok2 := parseHex(hi)
	if !found || !ok1 || !ok2 || end <= start || len(fields[1]) != 4 {
		return m, nil, false
	}
	m.start, m.end = uintptr(start), uintptr(end)
	m.perms = string(fields[1])
	return m, bytes.TrimLeft(rest, " "), true
}

func parseHex(b []byte) (uint64, bool) {
	var n uint64
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			n = n<<4 | uint64(c-'0')
		case 'a' <= c && c <= 'f':
			n = n<<4 | uint64(c-'a'+10)
		default:
			return 0, false
		}
	}
	return n, len(b) > 0 && len(b) <= 16
}

// parseKB reads " 1234 kB" as bytes; -1 if it is not a number of kB.
func parseKB(b []byte) int64 {
	b, ok := bytes.CutSuffix(bytes.TrimSpace(b), []byte(" kB"))
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return -1
		}
		n = n*10 + int64(c-'0')
	}
	if !ok || len(b) == 0 {
		return -1
	}
	return n << 10
}
