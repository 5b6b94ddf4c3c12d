// Package sensor is the eBPF filesystem sensor: it reports the file
// operations that touch watched path sets (opens for writing, creations,
// truncations, unlinks, renames, chmods, chowns, links and symlinks, and
// read-only opens of sensitive files), with the process that made them,
// and filters everything else out in the kernel, so that file activity
// elsewhere never reaches user space.
//
// # Requirements
//
// Linux >= 5.11 (BPF ring buffers, BTF-typed tracepoints,
// bpf_get_current_task_btf) built with BTF (CONFIG_DEBUG_INFO_BTF=y), on
// amd64, and root, or CAP_BPF and CAP_PERFMON. Open returns an error
// wrapping ErrUnsupported, which says what is missing, otherwise.
//
// # Why a system call tracepoint
//
// The natural hooks are the kernel's LSM entry points, as Tetragon uses
// them: security_file_open, security_path_{truncate,unlink,rename,chmod,
// chown,link,symlink}, reached by fentry programs or, when "bpf" is in the
// active LSM list (/sys/kernel/security/lsm), by BPF LSM programs. They
// give the kernel's own dentries for every operation, before it happens.
// On the kernel this package was built on (6.18, lockdown=integrity,
// "lockdown,capability,landlock,bpf" active, CONFIG_KPROBES off) both are
// refused: loading an fentry, fexit or lsm program fails with EPERM even
// as root, whatever the target function (security_file_open,
// security_path_chown, do_truncate, bpf_lsm_file_open), and kprobes are not
// built in. BTF-typed tracepoints load, and the VFS has no tracepoint of
// its own for these operations (only file-system specific ones, such as
// ext4_unlink_enter). So the sensor attaches one tp_btf program to
// raw_syscalls:sys_exit and handles the file system calls as they return
// successfully (a failed call is not reported):
//
//   - open, openat, openat2 and creat return a descriptor: the program
//     takes its struct file from the task's descriptor table, so the
//     filter sees the very file opened (symlinks, bind mounts, relative
//     paths and hard links resolved by the kernel), and its f_mode says
//     whether it was created (FMODE_CREATED) or opened for writing or
//     reading; O_TRUNC comes from the flags argument;
//   - fchmod, fchown and ftruncate name a descriptor too;
//   - unlink, rename, chmod, chown, link, symlink, truncate and their *at
//     variants name files by path, which the kernel has resolved and
//     forgotten by the time the call returns, and a BPF program cannot look
//     a path up. A relative path is matched by the identity of its base
//     directory (the cwd or the dirfd, and its parents: "cd /etc; rm x" is
//     seen) and of the name of its first component; an absolute path by a
//     longest-prefix-match trie of the watched paths as strings, in their
//     written and their symlink-resolved forms. A path with "//", "/./" or
//     "/../" is sent to user space as unresolved, and Run decides on the
//     cleaned path against the watched path strings (Stats.Unresolved
//     counts those it drops). A path that reaches a watched
//     directory through a symlink the trie does not know (a link in /tmp
//     to /etc/cron.d) is not seen for these calls; an open through it is.
//
// The program reads the amd64 system call numbers and registers. A 32-bit
// (ia32) process's calls have other numbers and registers: the program
// recognizes them (TS_COMPAT) and ignores them, so 32-bit programs are not
// seen (a known gap; their numbers could be added).
//
// The price of the tracepoint: enabling sys_exit makes every system call
// of every task take the kernel's slow exit path, and runs the program
// once per system call, which returns after one array lookup of the call
// number for the calls it does not handle. On the 2-vCPU VM it was
// measured on (BenchmarkSyscallCost, BenchmarkOverhead,
// BenchmarkTarExtract, alternating rounds detached and attached) that is
// about 0.3 µs more per system call of any kind (getppid: 2.0 -> 2.35 µs),
// about 0.5 µs per open+close of an unwatched file on a file system with
// watched directories (the program's own part of it is about 35 ns; the
// rest is the tracepoint), about 10% on extracting a tar of Go module
// sources to tmpfs, and within the disk's noise (0.6% in a quiet run)
// extracting it to ext4. See BENCHMARKS.md.
// Where fentry or BPF LSM programs are allowed they would cost only on the
// file operations, and see them before they happen: the filter
// (watch_match), the path walk and the record are written to move there
// unchanged.
//
// # The filter
//
// A chmod that sets the setuid or setgid bit (chmod u+s) is reported
// wherever the file is, watched or not: such calls are rare, and a setuid
// file in /tmp is what a rule looks for.
//
// See bpf/fs.bpf.c. User space (Resolve) turns the configured Watches into
// four maps: watched (device, inode) -> flags for directories (with their
// subtree) and files; names (directory identity, name) -> flags for names
// that must be watched whether or not they exist (/etc/shadow is replaced
// by a rename on every password change; ~/.bashrc may not exist yet);
// devs (device -> union of flags), so that a file on a file system with
// nothing watched costs one lookup; and prefixes, the string trie. The
// program walks from the file's dentry up at most MaxWalk parents, within
// one file system (the roots of mounts below a watched directory are
// watched entries of their own), looking each up. Only a match builds the
// event's paths (a bounded walk of dentries and mounts up to the process's
// root, as d_path does, like the process sensor's) and writes it.
//
// Identities are (i_sb->s_dev, i_ino), which stat(2) reports as st_dev
// and st_ino on ext4, xfs, tmpfs and most file systems; on btrfs
// subvolumes and overlayfs stat may report other numbers, and their
// directories are then only matched by the prefix trie.
//
// # Events
//
// The events reach user space through one BPF ring buffer shared by all
// CPUs (Options.RingBytes). As in the process sensor, the program does not
// wake the reader for each event: the reader polls every Options.Wakeup
// and is woken early when a quarter of the buffer is unread. When it is
// full an event is lost: the kernel counts it per CPU and operation, and
// Stats reports the sums, with how many calls the filter examined and how
// many it matched.
//
// # Concurrency and cost
//
// A Sensor starts no goroutine. Run delivers events in the caller's
// goroutine and decodes them without allocating: the paths are joined
// and cleaned into a buffer the decoder reuses (BenchmarkDecode), so an
// Event's byte slices are valid until the callback returns. Read is a
// convenience that copies. Resolve may run concurrently with Run. Close
// interrupts Run and Read.
//
// # Building
//
// The C source is bpf/fs.bpf.c, with bpf/kernel.h, a hand-written header
// of the kernel types it reads. bpf2go (pinned by the tool line in go.mod)
// compiles it and generates fs_bpfel.go and fs_bpfeb.go, which embed
// fs_bpfel.o and fs_bpfeb.o. All of them are committed; .ci/bpf-gen-check
// regenerates them with the pinned clang-16 and fails on any difference.
//
// The tests that load the program need root and kernel BTF, and skip with
// a message otherwise; CI runs them as root.
package sensor
