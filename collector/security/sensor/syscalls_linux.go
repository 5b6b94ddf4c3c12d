//go:build linux

package sensor

import (
	"fmt"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"
)

// maxSyscall is the size of the BPF syscalls map (SYSCALLS in
// security.bpf.c).
const maxSyscall = 1024

// syscallTable maps this architecture's system call numbers to what
// security.bpf.c reports for them. openSyscalls adds open(2) where it
// exists (amd64).
var syscallTable = append([]struct {
	nr int
	sc Syscall
}{
	{unix.SYS_PTRACE, SysPtrace},
	{unix.SYS_INIT_MODULE, SysInitModule},
	{unix.SYS_FINIT_MODULE, SysFinitModule},
	{unix.SYS_SETUID, SysSetuid},
	{unix.SYS_SETGID, SysSetgid},
	{unix.SYS_SETREUID, SysSetreuid},
	{unix.SYS_SETREGID, SysSetregid},
	{unix.SYS_SETRESUID, SysSetresuid},
	{unix.SYS_SETRESGID, SysSetresgid},
	{unix.SYS_SETFSUID, SysSetfsuid},
	{unix.SYS_SETFSGID, SysSetfsgid},
	{unix.SYS_CAPSET, SysCapset},
	{unix.SYS_MEMFD_CREATE, SysMemfdCreate},
	{unix.SYS_BPF, SysBPF},
	{unix.SYS_MOUNT, SysMount},
	{unix.SYS_UMOUNT2, SysUmount2},
	{unix.SYS_SETNS, SysSetns},
	{unix.SYS_UNSHARE, SysUnshare},
	{unix.SYS_OPENAT, SysOpenat},
	{unix.SYS_OPENAT2, SysOpenat2},
	{unix.SYS_WRITE, SysWrite},
	{unix.SYS_PWRITE64, SysPwrite64},
	{unix.SYS_WRITEV, SysWritev},
	{unix.SYS_PWRITEV, SysPwritev},
	{unix.SYS_PWRITEV2, SysPwritev2},
	{unix.SYS_CLOSE, SysClose},
}, openSyscalls...)

// fillSyscalls writes syscallTable into the BPF syscalls map.
func fillSyscalls(m *ebpf.Map) error {
	for _, s := range syscallTable {
		if s.nr < 0 || s.nr >= maxSyscall {
			continue
		}
		if err := m.Put(uint32(s.nr), uint32(s.sc)); err != nil {
			return fmt.Errorf("security sensor: setting system call %d (%s): %w", s.nr, s.sc, err)
		}
	}
	return nil
}
