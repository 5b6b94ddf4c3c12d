//go:build linux && !amd64

package sensor

// openSyscalls is empty: open(2) exists only as openat(2) here.
var openSyscalls []struct {
	nr int
	sc Syscall
}
