//go:build linux

package agent

import "golang.org/x/sys/unix"

const (
	auditArch = unix.AUDIT_ARCH_X86_64
	x32Bit    = 0x40000000 // __X32_SYSCALL_BIT
)

// The legacy calls amd64 has beside openat: open takes its flags second;
// creat always creates.
var (
	archDenied  = []uint32{unix.SYS_CREAT}
	archFlagged = []struct{ nr, arg, mask uint32 }{{unix.SYS_OPEN, 1, openWriteFlags}}
)
