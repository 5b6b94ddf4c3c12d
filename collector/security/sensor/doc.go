// Package sensor is the eBPF security sensor: it reports, system-wide and
// from the kernel, the process behaviour that is not a new process but
// matters to a security monitor: ptrace attaches and pokes, kernel module
// loads, credential changes, memfd_create, BPF program loads by other
// processes, mounts, unmounts, setns and unshare (with bind mounts over
// /proc/<pid> flagged), and opens of another process's /proc/<pid>/mem
// for writing. Each event carries the caller's pid, tid, uid and euid,
// comm, cgroup id, process start time and the kernel's timestamp.
//
// # Requirements
//
// Linux >= 5.8 with BTF (/sys/kernel/btf/vmlinux), as
// collector/process/sensor, and root (or CAP_BPF and CAP_PERFMON). Open
// returns an error wrapping ErrUnsupported otherwise.
//
// # Attach points, and why
//
// Two BTF-typed tracepoint programs (tp_btf) attach to the raw_syscalls
// tracepoints sys_enter and sys_exit. A map filled from user space with
// this architecture's system call numbers (golang.org/x/sys/unix's SYS_*)
// says which calls matter; every other system call costs one array lookup
// in each program. The price is paid by every system call of the machine:
// with the tracepoints attached, every task takes the kernel's slow system
// call path. On the 2-core VM this was written on, a getppid took 1,010 ns
// without the sensor and 1,165 ns with it (BenchmarkSyscallOverhead), of
// which the programs themselves ran about 85 ns at entry and 55 ns at exit
// (BenchmarkBPFCost, from BPF_ENABLE_STATS).
//
// The obvious hooks would be fentry programs on the kernel functions every
// path to an event goes through (commit_creds, security_sb_mount,
// security_bpf_prog_load, ptrace_attach, mem_write), or BPF LSM programs
// (CONFIG_BPF_LSM=y and "bpf" in /sys/kernel/security/lsm on the 6.18
// kernel this was written on). All of them need BPF trampolines, and on
// that kernel loading any trampoline program (fentry, fexit or lsm, even
// one that only returns 0) fails with EPERM, while BTF-typed tracepoints
// load; the kernel also has no kprobes (CONFIG_KPROBES is off) and tracefs
// is not mounted, which classic syscalls:sys_enter_* tracepoints need.
// The raw_syscalls tracepoints are stable, exist on every architecture and
// need neither. What that costs in precision:
//
//   - Arguments are read at the call's exit from the saved registers, and
//     strings from the caller's memory then (another thread could change
//     them between the kernel's copy and ours). Every event carries the
//     call's result (Event.Result), so refused attempts are seen too,
//     except BPF loads, reported only on success.
//   - Mount targets are the paths as given, not resolved (a relative
//     target, or one through a symlink, is reported as written);
//     BindOverProcPID checks the given path. The new mount API
//     (open_tree, move_mount, fsmount) is not covered.
//   - Credential changes are those of the setuid, setgid, setre*id,
//     setres*id, setfs*id and capset calls: sys_enter keeps the caller's
//     credentials, sys_exit compares (uids, gids, effective and permitted
//     capabilities). A setuid exec is reported by the process sensor.
//   - /proc/<pid>/mem: the open for writing (O_WRONLY or O_RDWR, through
//     open, openat or openat2) of another process's mem file is reported,
//     with the target's pid from the file's proc inode, and then each
//     write, pwrite64, writev, pwritev and pwritev2 through that
//     descriptor by the process that opened it, until it closes it (an LRU
//     map by process and descriptor; until the first such open, the write
//     and close calls of the machine cost one array lookup more, and a
//     hash lookup after). A descriptor passed to another process or
//     duplicated is not followed: its writes are not reported, its open is.
//   - Module loads: init_module and finit_module (with the file's name
//     for finit_module) are reported with their result. A kernel built
//     without modules (as the 6.18 test kernel) answers ENOSYS.
//   - Only the native system call table is watched: 32-bit compat calls
//     on a 64-bit kernel are not.
//
// # Reading events
//
// Run decodes each ring-buffer record into a reused Event without
// allocating; its byte slices alias the record and are valid only during
// the callback. Stats returns the events lost in the kernel (per kind,
// from per-CPU counters) and the records that could not be decoded.
package sensor
