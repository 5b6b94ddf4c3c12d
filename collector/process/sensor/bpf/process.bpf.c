// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// process.bpf.c: the eBPF process sensor. Three BTF-typed tracepoint
// programs (tp_btf, Linux >= 5.5; the ring buffer needs >= 5.8) report
// every exec, every new process and every process exit into one BPF ring
// buffer. The layouts below are decoded by hand in ../decode.go: change
// both together, and the offsets test in decode_test.go.
//
// The exec program reads what the tracepoint does not carry from the task
// and the linux_binprm at the moment of the exec, as Tetragon's
// bpf_execve_event.c does: argv from the new mm's arg_start..arg_end, the
// executed file's path from bprm->file by walking dentries and mounts up to
// the process's root (what d_path does; bpf_d_path is not allowed in
// tracepoint programs), the cwd the same way, credentials, login uid,
// controlling tty, namespaces and cgroup.

#include "kernel.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define KIND_EXEC 1
#define KIND_FORK 2
#define KIND_EXIT 3

// Exec flags, set by the kernel side (decode.go maps them to Flags).
#define F_ARGS_TRUNC 0x01      // argv longer than ARGS_MAX bytes
#define F_PATH_TRUNC 0x02      // path deeper than PATH_MAX_PARTS or longer than PATH_MAX_BYTES
#define F_CWD_TRUNC 0x04       // same for the cwd
#define F_PATH_UNLINKED 0x08   // the executed file has no name left (d_unlinked)
#define F_PATH_DETACHED 0x10   // the walk ended outside the process's root (memfd, pseudo files)
#define F_CWD_UNLINKED 0x20    // the cwd was removed
#define F_FILENAME_TRUNC 0x40  // bprm->filename filled FILENAME_MAX bytes
#define F_IMAGE_REPLACED 0x80  // the process had exec'd before since its fork
#define F_MEMORY 0x100         // vm_pages and rss_pages were read

#define DATA_SIZE 16384          // power of two: offsets are masked with DATA_MASK
#define DATA_MASK (DATA_SIZE - 1)
#define NAME_READ 256            // NAME_MAX + 1
#define PATH_MAX_BYTES 4096      // bytes of path components, NULs included
#define PATH_MAX_PARTS 40        // components walked per path
#define ARGS_MAX 4096            // bytes of argv
#define FILENAME_MAX 256         // bytes of bprm->filename, NUL included

// All events start with time, kind, pid (tgid) and tid.
struct exec_event {
	u64 time;       // 0: bpf_ktime_get_boot_ns
	u32 kind;       // 8
	u32 pid;        // 12: tgid
	u32 tid;        // 16
	u32 old_tid;    // 20: the thread that called execve
	u32 ppid;       // 24: real_parent->tgid
	u32 uid;        // 28
	u32 euid;       // 32
	u32 gid;        // 36
	u32 egid;       // 40
	u32 loginuid;   // 44
	u32 tty_major;  // 48
	u32 tty_minor;  // 52
	u32 pidns;      // 56
	u32 mntns;      // 60
	u32 nspid;      // 64
	u32 flags;      // 68
	u64 start;      // 72: start_boottime
	u64 cgroup;     // 80
	u16 path_len;   // 88: leaf-first NUL-terminated components
	u16 cwd_len;    // 90: same
	u16 filename_len; // 92: NUL included
	u16 args_len;   // 94: argv bytes copied
	u32 args_total; // 96: argv bytes the process has (capped at 2^32-1)
	u32 pad;        // 100
	u64 exe_ino;    // 104: the executed file's inode number
	u64 exe_size;   // 112: its size in bytes
	s64 exe_mtime_sec; // 120: its modification time
	u32 exe_mtime_nsec; // 128
	u32 exe_dev;    // 132: its file system's dev_t (major << 20 | minor)
	u64 vm_pages;   // 136: mm->total_vm after the exec
	u64 rss_pages;  // 144: file, anonymous and shmem resident pages
	// 152: path, cwd, filename, args
};

struct exec_buf {
	u32 cursor;     // the next byte of data to write
	u32 pad;
	struct exec_event e;
	char data[DATA_SIZE + ARGS_MAX];
};

struct fork_event {
	u64 time;       // 0
	u32 kind;       // 8
	u32 pid;        // 12: parent tgid
	u32 tid;        // 16: parent tid
	u32 child_pid;  // 20
	u64 child_start; // 24
};

struct exit_event {
	u64 time;       // 0
	u32 kind;       // 8
	u32 pid;        // 12
	u32 tid;        // 16
	u32 code;       // 20: task->exit_code (wait status)
	u64 start;      // 24
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 21); // replaced by Options.RingBytes at load
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct exec_buf);
} exec_heap SEC(".maps");

// Ring-buffer writes that failed, per CPU, indexed by kind.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4);
	__type(key, u32);
	__type(value, u64);
} lost SEC(".maps");

// Waking the reader costs more than the rest of a fork or exit program
// (an interrupt to run the wakeup, and often an IPI to the reader's CPU:
// about 10 µs per event on a VM). With wakeup_bytes > 0 (set at load from
// Options.Wakeup) the programs do not wake the reader, which polls, unless
// that many bytes wait unread. With 0 the kernel wakes the reader whenever
// it has caught up, that is for nearly every event.
const volatile u64 wakeup_bytes = 0;

static __always_inline u64 wakeup_flags(void)
{
	if (!wakeup_bytes)
		return 0;
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

static __always_inline void count_lost(u32 kind)
{
	u64 *c = bpf_map_lookup_elem(&lost, &kind);
	if (c)
		__sync_fetch_and_add(c, 1);
}

// The verifier explores every path through a program. Were the write
// offset and the flags kept in registers, each way out of the path walk
// would carry different values into the rest of the program and the paths
// would multiply past the verifier's limit. They live in the per-CPU buffer
// instead (volatile: reloaded each time), so that the verifier sees the
// same unknown value on every path and prunes them.
#define CURSOR (*(volatile u32 *)&b->cursor)
#define FLAGS (*(volatile u32 *)&b->e.flags)

// walk_path appends the components of the path (d, vm), leaf first, each
// NUL-terminated, at data[cursor...], up to the process's root (root_d,
// root_mnt), as d_path does, and advances the cursor. It sets f_trunc when
// the path is too deep or too long, and f_detached when the walk ends
// outside the root: at a pseudo dentry (memfd, anon inode), at a
// disconnected one, or at the top of a mount tree not below the root.
static __always_inline void walk_path(struct exec_buf *b, struct dentry *d,
				      struct vfsmount *vm, struct dentry *root_d,
				      struct vfsmount *root_mnt, u32 f_trunc,
				      u32 f_detached)
{
	u32 start = CURSOR;
	struct mount *m = (struct mount *)((char *)vm -
		__builtin_preserve_field_info(((struct mount *)0)->mnt, 0));

	for (int i = 0; i < PATH_MAX_PARTS; i++) {
		struct dentry *mnt_root = NULL, *parent = NULL;
		const unsigned char *name = NULL;

		if (d == root_d && vm == root_mnt)
			return;
		CORE_READ_INTO(mnt_root, vm->mnt_root);
		if (d == mnt_root) {
			struct mount *mp = NULL;
			CORE_READ_INTO(mp, m->mnt_parent);
			if (mp == m || !mp) {
				FLAGS |= f_detached;
				return;
			}
			CORE_READ_INTO(d, m->mnt_mountpoint);
			m = mp;
			vm = (struct vfsmount *)CORE_ADDR(mp->mnt);
			continue;
		}
		CORE_READ_INTO(parent, d->d_parent);
		CORE_READ_INTO(name, d->d_name.name);
		u32 off = CURSOR;
		if (off - start > PATH_MAX_BYTES - NAME_READ) {
			FLAGS |= f_trunc;
			return;
		}
		long n = bpf_probe_read_kernel_str(&b->data[off & DATA_MASK], NAME_READ, name);
		if (n <= 0) {
			FLAGS |= f_trunc;
			return;
		}
		CURSOR = off + (u32)n;
		if (d == parent || !parent) {
			// A pseudo file (memfd, anon inode) or a disconnected dentry.
			FLAGS |= f_detached;
			return;
		}
		d = parent;
	}
	FLAGS |= f_trunc;
}

static __always_inline bool d_unlinked(struct dentry *d)
{
	struct hlist_bl_node **pprev = NULL;
	struct dentry *parent = NULL;

	CORE_READ_INTO(pprev, d->d_hash.pprev);
	CORE_READ_INTO(parent, d->d_parent);
	return !pprev && parent != d;
}

// read_file_id records the executed file's identity (device, inode, size,
// modification time), with which user space finds its hash in a cache
// without a system call.
static __always_inline void read_file_id(struct exec_event *e, struct file *file)
{
	struct inode *ino = NULL;
	struct super_block *sb = NULL;
	e->exe_ino = 0;
	e->exe_size = 0;
	e->exe_mtime_sec = 0;
	e->exe_mtime_nsec = 0;
	e->exe_dev = 0;
	CORE_READ_INTO(ino, file->f_inode);
	if (!ino)
		return;
	CORE_READ_INTO(e->exe_ino, ino->i_ino);
	CORE_READ_INTO(e->exe_size, ino->i_size);
	CORE_READ_INTO(sb, ino->i_sb);
	CORE_READ_INTO(e->exe_dev, sb->s_dev);
	if (CORE_FIELD_EXISTS(ino->i_mtime_sec)) {
		CORE_READ_INTO(e->exe_mtime_sec, ino->i_mtime_sec);
		CORE_READ_INTO(e->exe_mtime_nsec, ino->i_mtime_nsec);
		return;
	}
	struct timespec64 ts = {};
	struct inode___v67 *i67 = (void *)ino;
	struct inode___v66 *i66 = (void *)ino;
	if (CORE_FIELD_EXISTS(i67->__i_mtime))
		CORE_READ_INTO(ts, i67->__i_mtime);
	else if (CORE_FIELD_EXISTS(i66->i_mtime))
		CORE_READ_INTO(ts, i66->i_mtime);
	e->exe_mtime_sec = ts.tv_sec;
	e->exe_mtime_nsec = ts.tv_nsec;
}

// read_memory records the new image's virtual size and resident pages
// (MM_FILEPAGES, MM_ANONPAGES, MM_SHMEMPAGES). Since 6.2 the resident
// counters are per-CPU and their folded count lags by up to a batch per
// CPU, as Falco's figure does.
static __always_inline void read_memory(struct exec_buf *b, struct mm_struct *mm)
{
	struct exec_event *e = &b->e;
	e->vm_pages = 0;
	e->rss_pages = 0;
	if (!mm)
		return;
	CORE_READ_INTO(e->vm_pages, mm->total_vm);
	s64 file = 0, anon = 0, shmem = 0;
	struct mm_struct___v61 *old = (void *)mm;
	if (CORE_FIELD_EXISTS(mm->rss_stat)) {
		CORE_READ_INTO(file, mm->rss_stat[0].count);
		CORE_READ_INTO(anon, mm->rss_stat[1].count);
		CORE_READ_INTO(shmem, mm->rss_stat[3].count);
	} else if (CORE_FIELD_EXISTS(old->rss_stat)) {
		CORE_READ_INTO(file, old->rss_stat.count[0]);
		CORE_READ_INTO(anon, old->rss_stat.count[1]);
		CORE_READ_INTO(shmem, old->rss_stat.count[3]);
	} else {
		return;
	}
	s64 rss = file + anon + shmem;
	e->rss_pages = rss > 0 ? rss : 0;
	FLAGS |= F_MEMORY;
}

SEC("tp_btf/sched_process_exec")
int sched_process_exec(u64 *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx[0];
	pid_t old_pid = (pid_t)ctx[1];
	struct linux_binprm *bprm = (struct linux_binprm *)ctx[2];
	u32 zero = 0;

	struct exec_buf *b = bpf_map_lookup_elem(&exec_heap, &zero);
	if (!b)
		return 0;
	struct exec_event *e = &b->e;

	e->time = bpf_ktime_get_boot_ns();
	e->kind = KIND_EXEC;
	e->old_tid = old_pid;
	e->flags = 0;
	e->pad = 0;
	e->args_len = 0;
	CORE_READ_INTO(e->pid, task->tgid);
	CORE_READ_INTO(e->tid, task->pid);
	CORE_READ_INTO(e->start, task->start_boottime);

	// begin_new_exec has bumped self_exec_id by now; a fork set the child's
	// parent_exec_id to the parent's self_exec_id, which the child copied.
	// So the first exec after a fork leaves self == parent + 1, and more
	// means this process had already exec'd: the exec replaced an image.
	u64 self_exec = 0, parent_exec = 0;
	CORE_READ_INTO(self_exec, task->self_exec_id);
	CORE_READ_INTO(parent_exec, task->parent_exec_id);
	if (self_exec - parent_exec > 1)
		e->flags |= F_IMAGE_REPLACED;

	struct task_struct *parent = NULL;
	CORE_READ_INTO(parent, task->real_parent);
	CORE_READ_INTO(e->ppid, parent->tgid);

	const struct cred *cred = NULL;
	CORE_READ_INTO(cred, task->cred);
	CORE_READ_INTO(e->uid, cred->uid.val);
	CORE_READ_INTO(e->euid, cred->euid.val);
	CORE_READ_INTO(e->gid, cred->gid.val);
	CORE_READ_INTO(e->egid, cred->egid.val);
	e->loginuid = 0xffffffff;
	if (CORE_FIELD_EXISTS(task->loginuid))
		CORE_READ_INTO(e->loginuid, task->loginuid.val);

	e->tty_major = 0;
	e->tty_minor = 0;
	struct signal_struct *sig = NULL;
	struct tty_struct *tty = NULL;
	CORE_READ_INTO(sig, task->signal);
	CORE_READ_INTO(tty, sig->tty);
	if (tty) {
		struct tty_driver *drv = NULL;
		int index = 0, major = 0, minor_start = 0;
		CORE_READ_INTO(index, tty->index);
		CORE_READ_INTO(drv, tty->driver);
		CORE_READ_INTO(major, drv->major);
		CORE_READ_INTO(minor_start, drv->minor_start);
		e->tty_major = major;
		e->tty_minor = minor_start + index;
	}

	// The pid namespace the task lives in, and its pid there.
	struct pid *tp = NULL;
	unsigned int level = 0;
	struct pid_namespace *pidns = NULL;
	CORE_READ_INTO(tp, task->thread_pid);
	CORE_READ_INTO(level, tp->level);
	struct upid *up = (struct upid *)((char *)CORE_ADDR(tp->numbers[0]) +
					  (u64)level * CORE_TYPE_SIZE(struct upid));
	e->nspid = 0;
	e->pidns = 0;
	CORE_READ_INTO(e->nspid, up->nr);
	CORE_READ_INTO(pidns, up->ns);
	CORE_READ_INTO(e->pidns, pidns->ns.inum);

	struct nsproxy *nsp = NULL;
	struct mnt_namespace *mntns = NULL;
	e->mntns = 0;
	CORE_READ_INTO(nsp, task->nsproxy);
	CORE_READ_INTO(mntns, nsp->mnt_ns);
	CORE_READ_INTO(e->mntns, mntns->ns.inum);

	e->cgroup = bpf_get_current_cgroup_id();

	struct fs_struct *fs = NULL;
	struct dentry *root_d = NULL, *d = NULL;
	struct vfsmount *root_mnt = NULL, *vm = NULL;
	CORE_READ_INTO(fs, task->fs);
	CORE_READ_INTO(root_d, fs->root.dentry);
	CORE_READ_INTO(root_mnt, fs->root.mnt);
	CURSOR = 0;

	// The executed file (the interpreter for a #! script), as the kernel
	// resolved it.
	struct file *file = NULL;
	CORE_READ_INTO(file, bprm->file);
	CORE_READ_INTO(d, file->f_path.dentry);
	CORE_READ_INTO(vm, file->f_path.mnt);
	if (d_unlinked(d))
		FLAGS |= F_PATH_UNLINKED;
	read_file_id(e, file);
	walk_path(b, d, vm, root_d, root_mnt, F_PATH_TRUNC, F_PATH_DETACHED);
	e->path_len = CURSOR;

	CORE_READ_INTO(d, fs->pwd.dentry);
	CORE_READ_INTO(vm, fs->pwd.mnt);
	if (d_unlinked(d))
		FLAGS |= F_CWD_UNLINKED;
	walk_path(b, d, vm, root_d, root_mnt, F_CWD_TRUNC, 0);
	u32 off = CURSOR;
	e->cwd_len = off - e->path_len;

	// The name execve was given ("/proc/self/fd/3", "/dev/fd/3" for
	// execveat(AT_EMPTY_PATH), the script for a #! script).
	const char *filename = NULL;
	CORE_READ_INTO(filename, bprm->filename);
	long n = bpf_probe_read_kernel_str(&b->data[off & DATA_MASK], FILENAME_MAX, filename);
	if (n < 0)
		n = 0;
	if (n >= FILENAME_MAX)
		FLAGS |= F_FILENAME_TRUNC;
	e->filename_len = n;
	off += n;

	// argv: NUL-separated strings in the new image's memory.
	struct mm_struct *mm = NULL;
	unsigned long arg_start = 0, arg_end = 0;
	CORE_READ_INTO(mm, task->mm);
	CORE_READ_INTO(arg_start, mm->arg_start);
	CORE_READ_INTO(arg_end, mm->arg_end);
	read_memory(b, mm);
	u64 total = arg_end > arg_start ? arg_end - arg_start : 0;
	u32 len = total;
	if (total > ARGS_MAX) {
		len = ARGS_MAX;
		FLAGS |= F_ARGS_TRUNC;
	}
	e->args_total = total > 0xffffffffULL ? 0xffffffff : (u32)total;
	asm volatile("" : "+r"(len));
	if (len > ARGS_MAX)
		len = ARGS_MAX;
	if (len > 0 && bpf_probe_read_user(&b->data[off & DATA_MASK], len, (void *)arg_start) == 0) {
		e->args_len = len;
		off += len;
	} else {
		e->args_len = 0;
		if (len > 0)
			FLAGS |= F_ARGS_TRUNC;
	}

	u32 size = off & DATA_MASK;
	if (bpf_ringbuf_output(&events, e, sizeof(struct exec_event) + size, wakeup_flags()))
		count_lost(KIND_EXEC);
	return 0;
}

SEC("tp_btf/sched_process_fork")
int sched_process_fork(u64 *ctx)
{
	struct task_struct *parent = (struct task_struct *)ctx[0];
	struct task_struct *child = (struct task_struct *)ctx[1];
	pid_t pid = 0, tgid = 0;

	CORE_READ_INTO(pid, child->pid);
	CORE_READ_INTO(tgid, child->tgid);
	if (pid != tgid)
		return 0; // a new thread, not a new process

	struct fork_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_lost(KIND_FORK);
		return 0;
	}
	e->time = bpf_ktime_get_boot_ns();
	e->kind = KIND_FORK;
	e->pid = 0;
	e->tid = 0;
	e->child_pid = tgid;
	e->child_start = 0;
	CORE_READ_INTO(e->pid, parent->tgid);
	CORE_READ_INTO(e->tid, parent->pid);
	CORE_READ_INTO(e->child_start, child->start_boottime);
	bpf_ringbuf_submit(e, wakeup_flags());
	return 0;
}

SEC("tp_btf/sched_process_exit")
int sched_process_exit(u64 *ctx)
{
	struct task_struct *task = (struct task_struct *)ctx[0];
	pid_t pid = 0, tgid = 0;

	CORE_READ_INTO(pid, task->pid);
	CORE_READ_INTO(tgid, task->tgid);
	if (pid != tgid)
		return 0; // a thread; the process exits with its leader

	struct exit_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_lost(KIND_EXIT);
		return 0;
	}
	e->time = bpf_ktime_get_boot_ns();
	e->kind = KIND_EXIT;
	e->pid = tgid;
	e->tid = pid;
	e->code = 0;
	e->start = 0;
	CORE_READ_INTO(e->code, task->exit_code);
	CORE_READ_INTO(e->start, task->start_boottime);
	bpf_ringbuf_submit(e, wakeup_flags());
	return 0;
}
