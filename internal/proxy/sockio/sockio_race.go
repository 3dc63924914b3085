//go:build linux && race

package sockio

import "syscall"

// raceEnabled: built with -race.
const raceEnabled = true

// Under the race detector, sockio's reads and writes go through
// syscall.Read and syscall.Write rather than raw system calls.
//
// The detector instruments the memory accesses of Go code only; a raw
// read(2) writing into a buffer, or write(2) reading one, is invisible to
// it, so a buffer reused by one goroutine while sockio still writes it out
// on another was a race that `go test -race` could not report.
// syscall.Read and syscall.Write annotate exactly what the kernel touched:
// after a read, a write of the n bytes read (race.WriteRange); after a
// write, a read of the n bytes written (race.ReadRange). They are what
// net.Conn uses (internal/poll), so -race now sees a sockio.Conn as it
// sees a net.Conn — including the happens-before edge they add from every
// Write to every later Read (race.ReleaseMerge/Acquire on syscall's
// ioSync), which models data passing through the kernel. Annotating the
// buffers by hand around the raw calls (runtime.RaceReadRange, or
// touching each byte in Go code) would lack that edge, and then report as
// races the many programs (and tests) that synchronise only through what
// one side writes and the other reads on a socket, while net.Conn is fine
// with them.
//
// The cost is the one the package avoids, entersyscall/exitsyscall per
// call, paid in race builds only; normal builds use sockio_norace.go.
func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Read(int(fd), p)
	if err != nil {
		return 0, errno(err)
	}
	return n, 0
}

func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, err := syscall.Write(int(fd), p)
	if err != nil {
		return 0, errno(err)
	}
	return n, 0
}

// errno is err as the syscall.Errno it is (syscall.Read and Write return
// nothing else on Linux).
func errno(err error) syscall.Errno {
	if e, ok := err.(syscall.Errno); ok {
		return e
	}
	return syscall.EIO
}
