//go:build linux && amd64

package sensor

import "golang.org/x/sys/unix"

var openSyscalls = []struct {
	nr int
	sc Syscall
}{{unix.SYS_OPEN, SysOpen}}
