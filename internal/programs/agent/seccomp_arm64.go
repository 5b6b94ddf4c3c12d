//go:build linux

package agent

import "golang.org/x/sys/unix"

const (
	auditArch = unix.AUDIT_ARCH_AARCH64
	x32Bit    = 0 // no such ABI
)

// arm64 has only openat.
var (
	archDenied  []uint32
	archFlagged []struct{ nr, arg, mask uint32 }
)
