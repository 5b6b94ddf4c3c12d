//go:build linux && (amd64 || arm64)

package agent

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// How the collector confines what its capabilities reach.
//
// procmond keeps CAP_SYS_PTRACE because the kernel guards /proc/<pid>/exe,
// cwd and the like of other users' processes by ptrace access mode; the
// same capability would let it attach to the root agent, write its memory
// (ptrace, process_vm_writev, /proc/<pid>/mem) or take its descriptors
// (pidfd_getfd). Collector mode therefore installs, after no_new_privs and
// before the collector runs, a seccomp filter on every thread of the
// process (SECCOMP_FILTER_FLAG_TSYNC; threads created later inherit it,
// and so would anything it executed) that refuses those calls with EPERM:
//
//   - ptrace, process_vm_readv, process_vm_writev, pidfd_getfd, kcmp,
//     process_madvise;
//   - open and openat with a flag that writes or creates (O_WRONLY,
//     O_RDWR, O_CREAT, O_TRUNC), creat, and open_by_handle_at: the
//     collector only reads files, and /proc/<pid>/mem is written through a
//     descriptor opened for writing. openat2 passes its flags in a struct
//     the filter cannot read, so it fails with ENOSYS, the answer for a
//     kernel without it, and Go and libc fall back to openat;
//   - io_uring (its operations bypass the filter), bpf (unless procmond
//     runs with --source ebpf or auto: the eBPF sensor loads its programs
//     and reads its loss counters with it), perf_event_open,
//     userfaultfd, the keyring calls, module and kexec loading, namespaces
//     (setns, unshare, clone with a CLONE_NEW* flag; clone3, whose flags
//     are in a struct, gets ENOSYS), and mounting, chroot, swap and reboot.
//
// Reading stays possible: /proc/<pid>/mem opened read-only is an open
// the filter cannot tell from reading /proc/<pid>/status, since it sees
// flags but not paths; process_vm_readv is refused anyway.
//
// Everything else is allowed: it is a deny list, so a call it does not
// name is decided by the kernel's ordinary checks, which the collector's
// user and its two capabilities pass for reading only. The process
// connector's calls (socket(AF_NETLINK), bind, setsockopt, write,
// recvfrom) pass, and its group is joined with CAP_NET_ADMIN, which
// procmond gets only with --source connector or auto. A call made through
// another ABI than the binary's own (32-bit int 0x80 on amd64, or x32)
// kills the process.

// seccompDenied are the calls refused outright with EPERM.
var seccompDenied = append([]uint32{
	unix.SYS_PTRACE, unix.SYS_PROCESS_VM_READV, unix.SYS_PROCESS_VM_WRITEV,
	unix.SYS_PIDFD_GETFD, unix.SYS_KCMP, unix.SYS_PROCESS_MADVISE,
	unix.SYS_OPEN_BY_HANDLE_AT,
	unix.SYS_IO_URING_SETUP, unix.SYS_IO_URING_ENTER, unix.SYS_IO_URING_REGISTER,
	unix.SYS_PERF_EVENT_OPEN, unix.SYS_USERFAULTFD,
	unix.SYS_KEYCTL, unix.SYS_ADD_KEY, unix.SYS_REQUEST_KEY,
	unix.SYS_INIT_MODULE, unix.SYS_FINIT_MODULE, unix.SYS_DELETE_MODULE,
	unix.SYS_KEXEC_LOAD, unix.SYS_KEXEC_FILE_LOAD,
	unix.SYS_SETNS, unix.SYS_UNSHARE,
	unix.SYS_MOUNT, unix.SYS_UMOUNT2, unix.SYS_PIVOT_ROOT, unix.SYS_CHROOT,
	unix.SYS_OPEN_TREE, unix.SYS_MOVE_MOUNT, unix.SYS_FSOPEN, unix.SYS_FSCONFIG,
	unix.SYS_FSMOUNT, unix.SYS_FSPICK, unix.SYS_MOUNT_SETATTR,
	unix.SYS_SWAPON, unix.SYS_SWAPOFF, unix.SYS_REBOOT,
}, archDenied...)

// seccompNoSys are the calls whose arguments the filter cannot inspect
// and that callers retry with an older call when told ENOSYS.
var seccompNoSys = []uint32{unix.SYS_OPENAT2, unix.SYS_CLONE3}

const (
	openWriteFlags = unix.O_WRONLY | unix.O_RDWR | unix.O_CREAT | unix.O_TRUNC
	cloneNSFlags   = unix.CLONE_NEWNS | unix.CLONE_NEWCGROUP | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC |
		unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWTIME
)

// seccompFlagged are calls refused with EPERM when one of the bits of
// mask is set in the low 32 bits of argument arg.
var seccompFlagged = append([]struct{ nr, arg, mask uint32 }{
	{unix.SYS_OPENAT, 2, openWriteFlags},
	{unix.SYS_CLONE, 0, cloneNSFlags},
}, archFlagged...)

// Offsets in struct seccomp_data: int nr; __u32 arch; __u64
// instruction_pointer; __u64 args[6]. The arguments' low 32 bits come
// first on the little-endian architectures this file is built for.
const (
	seccompDataNR   = 0
	seccompDataArch = 4
	seccompDataArgs = 16
)

const (
	retAllow = unix.SECCOMP_RET_ALLOW
	retKill  = unix.SECCOMP_RET_KILL_PROCESS
	retEPERM = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	retNoSys = unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)
)

// bpf helpers: one classic BPF instruction each.
func bpfStmt(code uint16, k uint32) unix.SockFilter {
	return unix.SockFilter{Code: code, K: k}
}

func bpfJump(code uint16, k uint32, jt, jf uint8) unix.SockFilter {
	return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
}

// seccompProgram builds the collector's filter. Each rule is a
// self-contained block that either returns or falls through to the next
// with the syscall number still in the accumulator, so no jump crosses a
// block.
func seccompProgram(allowBPF bool) []unix.SockFilter {
	const (
		ldW  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jset = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		ret  = unix.BPF_RET | unix.BPF_K
	)
	p := []unix.SockFilter{
		// Another ABI than this binary's: its numbers mean other calls.
		bpfStmt(ldW, seccompDataArch),
		bpfJump(jeq, auditArch, 1, 0),
		bpfStmt(ret, retKill),
		bpfStmt(ldW, seccompDataNR),
	}
	if x32Bit != 0 { // the x32 ABI shares AUDIT_ARCH_X86_64 and sets this bit in nr
		p = append(p, bpfJump(jset, x32Bit, 0, 1), bpfStmt(ret, retKill))
	}
	denied := seccompDenied
	if !allowBPF {
		denied = append(denied[:len(denied):len(denied)], unix.SYS_BPF)
	}
	for _, nr := range denied {
		p = append(p, bpfJump(jeq, nr, 0, 1), bpfStmt(ret, retEPERM))
	}
	for _, nr := range seccompNoSys {
		p = append(p, bpfJump(jeq, nr, 0, 1), bpfStmt(ret, retNoSys))
	}
	for _, f := range seccompFlagged {
		p = append(p,
			bpfJump(jeq, f.nr, 0, 4), // not this call: skip the block
			bpfStmt(ldW, seccompDataArgs+8*f.arg),
			bpfJump(jset, f.mask, 0, 1),
			bpfStmt(ret, retEPERM),
			bpfStmt(ret, retAllow),
		)
	}
	return append(p, bpfStmt(ret, retAllow))
}

// errSeccomp is returned when the collector's filter cannot be installed;
// the collector does not run without it.
var errSeccomp = errors.New("install the collector's seccomp filter (needs Linux 3.17 or later with CONFIG_SECCOMP_FILTER)")

// confineSyscalls installs the collector's seccomp filter on every thread
// of this process. no_new_privs must already be set (noNewPrivs). bpf is
// refused unless allowBPF (procmond with the eBPF sensor).
func confineSyscalls(allowBPF bool) error {
	prog := seccompProgram(allowBPF)
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	r, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog)))
	switch {
	case errno != 0:
		return fmt.Errorf("%w: %w", errSeccomp, errno)
	case r != 0: // TSYNC: the thread that could not be synchronised
		return fmt.Errorf("%w: thread %d has another filter", errSeccomp, r)
	}
	return nil
}
