//go:build linux

package sensor

import (
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// sysClasses maps the amd64 system call numbers the BPF program handles to
// their CLS_* class in bpf/fs.bpf.c (which reads the arguments from the
// amd64 registers).
var sysClasses = map[uint32]uint32{
	unix.SYS_OPEN: 1, unix.SYS_OPENAT: 2, unix.SYS_CREAT: 3, unix.SYS_OPENAT2: 4,
	unix.SYS_FCHMOD: 5, unix.SYS_FCHOWN: 6, unix.SYS_FTRUNCATE: 7,
	unix.SYS_UNLINK: 8, unix.SYS_UNLINKAT: 9, unix.SYS_RENAME: 10, unix.SYS_RENAMEAT: 11, unix.SYS_RENAMEAT2: 11,
	unix.SYS_CHMOD: 12, unix.SYS_FCHMODAT: 13, unix.SYS_FCHMODAT2: 13,
	unix.SYS_CHOWN: 14, unix.SYS_LCHOWN: 14, unix.SYS_FCHOWNAT: 15,
	unix.SYS_LINK: 16, unix.SYS_LINKAT: 17, unix.SYS_SYMLINK: 18, unix.SYS_SYMLINKAT: 19, unix.SYS_TRUNCATE: 20,
}

// fillSysClass writes sysClasses into the program's sysclass map.
func fillSysClass(m *ebpf.Map) error {
	for nr, cls := range sysClasses {
		if err := m.Update(nr, cls, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("sensor: filling the system call map: %w", err)
		}
	}
	return nil
}
