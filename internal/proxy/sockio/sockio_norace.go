//go:build linux && !race

package sockio

import (
	"syscall"
	"unsafe"
)

// raceEnabled: this is not a race build (see sockio_race.go).
const raceEnabled = false

// sysRead is read(2) as a raw system call: no entersyscall/exitsyscall
// (see the package comment). It is inlined into Conn.read.
func sysRead(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}

// sysWrite is write(2) as a raw system call.
func sysWrite(fd uintptr, p []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	return int(n), e
}
