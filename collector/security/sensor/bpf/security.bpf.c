// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// security.bpf.c: the eBPF security sensor. Two BTF-typed tracepoint
// programs (tp_btf, Linux >= 5.5; the ring buffer needs >= 5.8) on the
// raw_syscalls sys_enter and sys_exit tracepoints report ptrace attaches
// and pokes, module loads, credential changes, memfd_create, BPF program
// loads, mounts and unmounts, setns and unshare, and opens of and writes
// to another process's /proc/<pid>/mem into one BPF ring buffer. doc.go
// says why these attach points. Which system call numbers matter is set
// from user space in the syscalls map (the numbers differ per
// architecture); every other call costs one array lookup. The layouts
// below are decoded by hand in ../event.go: change both together, and the
// layout test in decode_test.go.

#include "kernel.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define KIND_PTRACE 1
#define KIND_MODULE 2
#define KIND_CREDS 3
#define KIND_MEMFD 4
#define KIND_BPF 5
#define KIND_MOUNT 6
#define KIND_NAMESPACE 7
#define KIND_PROCMEM 8
#define KIND_MAX 8

// The system calls, as the syscalls map names them (event.go's sc*).
#define SC_PTRACE 1
#define SC_INIT_MODULE 2
#define SC_FINIT_MODULE 3
#define SC_SETUID 4
#define SC_SETGID 5
#define SC_SETREUID 6
#define SC_SETREGID 7
#define SC_SETRESUID 8
#define SC_SETRESGID 9
#define SC_SETFSUID 10
#define SC_SETFSGID 11
#define SC_CAPSET 12
#define SC_MEMFD_CREATE 13
#define SC_BPF 14
#define SC_MOUNT 15
#define SC_UMOUNT2 16
#define SC_SETNS 17
#define SC_UNSHARE 18
#define SC_OPEN 19
#define SC_OPENAT 20
#define SC_OPENAT2 21
#define SC_WRITE 22
#define SC_PWRITE64 23
#define SC_WRITEV 24
#define SC_PWRITEV 25
#define SC_PWRITEV2 26
#define SC_CLOSE 27
#define SC_MAX 27

#define SYSCALLS 1024 // entries of the syscalls map

// Header flags.
#define F_NAME_TRUNC 0x01   // memfd, module: the name was cut
#define F_SOURCE_TRUNC 0x02 // mount: the source was cut
#define F_TARGET_TRUNC 0x04 // mount: the target was cut

#define PROC_SUPER_MAGIC 0x9fa0

#define PTRACE_POKETEXT 4
#define PTRACE_POKEDATA 5
#define PTRACE_POKEUSR 6
#define PTRACE_SETREGS 13
#define PTRACE_ATTACH 16
#define PTRACE_SETREGSET 0x4205
#define PTRACE_SEIZE 0x4206

#define BPF_PROG_LOAD 5
#define O_ACCMODE 3

#define TARGET_BYTES 1024
#define SOURCE_BYTES 256
#define FSTYPE_BYTES 64
#define MODNAME_BYTES 64
#define MEMFD_BYTES 256

struct header {
	u64 time;     // 0: bpf_ktime_get_boot_ns
	u32 kind;     // 8
	u32 pid;      // 12: tgid
	u32 tid;      // 16
	u32 uid;      // 20
	u32 euid;     // 24
	u32 flags;    // 28
	u64 cgroup;   // 32
	u64 start;    // 40: the thread-group leader's start_boottime
	char comm[16]; // 48
	s64 ret;      // 64: the system call's return value
};                // 72

struct ptrace_event {
	struct header h;
	u64 request;  // 72
	u64 addr;     // 80
	u32 target;   // 88: the pid as given
	u32 pad;      // 92
};                // 96

struct module_event {
	struct header h;
	u32 op;       // 72: SC_INIT_MODULE or SC_FINIT_MODULE
	s32 fd;       // 76: finit_module's fd
	u32 name_len; // 80: NUL included
	u32 pad;      // 84
	char name[MODNAME_BYTES]; // 88: the file's name for finit_module
};                // 152

struct cred_ids {
	u32 uid, euid, gid, egid;
	u64 cap_eff, cap_prm;
};

struct creds_event {
	struct header h;
	u32 op;             // 72: SC_SETUID .. SC_CAPSET
	u32 pad;            // 76
	struct cred_ids old; // 80
	struct cred_ids new; // 112
};                      // 144

struct memfd_event {
	struct header h;
	u32 mfd_flags; // 72
	u32 name_len;  // 76: NUL included
	char name[MEMFD_BYTES]; // 80
};                 // 336

struct bpf_event {
	struct header h;
	u32 prog_type; // 72
	u32 pad;       // 76
	char name[16]; // 80
};                 // 96

struct mount_event {
	struct header h;
	u32 op;          // 72: SC_MOUNT or SC_UMOUNT2
	u32 pad;         // 76
	u64 mnt_flags;   // 80: mount(2) flags, or umount2(2) flags
	u16 source_len;  // 88: NUL included
	u16 fstype_len;  // 90: NUL included
	u16 target_len;  // 92: NUL included
	u16 pad2;        // 94
	char source[SOURCE_BYTES];  // 96
	char fstype[FSTYPE_BYTES];  // 352
	char target[TARGET_BYTES];  // 416
};                              // 1440

struct ns_event {
	struct header h;
	u32 op;        // 72: SC_SETNS or SC_UNSHARE
	s32 fd;        // 76: setns's fd
	u64 ns_flags;  // 80: setns's nstype or unshare's flags
};                 // 88

struct procmem_event {
	struct header h;
	u32 target;    // 72: the pid whose mem file was opened
	s32 fd;        // 76: the descriptor returned, or written to
	u64 open_flags; // 80
	u32 op;        // 88: SC_OPEN, SC_OPENAT, SC_OPENAT2, or a write call
	u32 pad;       // 92
	u64 count;     // 96: write's and pwrite64's byte count asked, else 0
	s64 pos;       // 104: pwrite64's and pwritev's offset (the address), or -1
};                 // 112

struct procmem_key {
	u32 tgid;
	s32 fd;
};

struct procmem_file {
	u32 target;
	u32 pad;
	u64 open_flags;
};

// The /proc/<pid>/mem files of other processes open for writing, by
// (process, fd), from their open to their close, so that the writes to
// them are reported too. A descriptor inherited or duplicated is not
// followed.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct procmem_key);
	__type(value, struct procmem_file);
} procmem_fds SEC(".maps");

// How many entries procmem_fds was given (never decreased): while 0, the
// write and close calls of the machine cost no hash lookup.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, u64);
} procmem_used SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20); // replaced by Options.RingBytes at load
} events SEC(".maps");

// Ring-buffer writes that failed, per CPU, indexed by kind.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, KIND_MAX + 1);
	__type(key, u32);
	__type(value, u64);
} lost SEC(".maps");

// The system call numbers that matter, set from user space: SC_* or 0.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SYSCALLS);
	__type(key, u32);
	__type(value, u32);
} syscalls SEC(".maps");

// The credentials of each thread inside a credential-changing system
// call, from its entry to its exit (LRU: a thread killed in between
// leaves an entry that ages out).
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, u32);
	__type(value, struct cred_ids);
} old_creds SEC(".maps");

// Scratch space for the events too large for the BPF stack.
union scratch {
	struct mount_event m;
	struct memfd_event mf;
	struct module_event mod;
	struct creds_event c;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, union scratch);
} heap SEC(".maps");

// The thread-group ids whose BPF program loads are not reported (the
// loaders of DaemonEye's own sensors), set from user space.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, u32);
	__type(value, u8);
} bpf_excluded SEC(".maps");

const volatile u64 wakeup_bytes = 0;

static __always_inline u64 wakeup_flags(void)
{
	if (!wakeup_bytes)
		return 0;
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

static __always_inline void emit(void *e, u64 size, u32 kind)
{
	if (bpf_ringbuf_output(&events, e, size, wakeup_flags())) {
		u64 *c = bpf_map_lookup_elem(&lost, &kind);
		if (c)
			__sync_fetch_and_add(c, 1);
	}
}

static __always_inline void *scratch(void)
{
	u32 zero = 0;
	return bpf_map_lookup_elem(&heap, &zero);
}

// arg returns system call argument i (0..4) from the registers, on x86-64
// or arm64 (where x0 holds the return value at exit: orig_x0 keeps arg 0).
static __always_inline u64 arg(void *regs, int i)
{
	u64 v = 0;
	if (CORE_FIELD_EXISTS(((struct pt_regs___x86 *)0)->di)) {
		struct pt_regs___x86 *r = regs;
		switch (i) {
		case 0: CORE_READ_INTO(v, r->di); break;
		case 1: CORE_READ_INTO(v, r->si); break;
		case 2: CORE_READ_INTO(v, r->dx); break;
		case 3: CORE_READ_INTO(v, r->r10); break;
		default: CORE_READ_INTO(v, r->r8); break;
		}
	} else {
		struct pt_regs___arm64 *r = regs;
		switch (i) {
		case 0: CORE_READ_INTO(v, r->orig_x0); break;
		case 1: CORE_READ_INTO(v, r->regs[1]); break;
		case 2: CORE_READ_INTO(v, r->regs[2]); break;
		case 3: CORE_READ_INTO(v, r->regs[3]); break;
		default: CORE_READ_INTO(v, r->regs[4]); break;
		}
	}
	return v;
}

// syscall_nr returns the number of the system call a task leaves.
static __always_inline u32 syscall_nr(void *regs)
{
	if (CORE_FIELD_EXISTS(((struct pt_regs___x86 *)0)->orig_ax)) {
		unsigned long nr = 0;
		CORE_READ_INTO(nr, ((struct pt_regs___x86 *)regs)->orig_ax);
		return nr;
	}
	s32 nr = 0;
	CORE_READ_INTO(nr, ((struct pt_regs___arm64 *)regs)->syscallno);
	return nr;
}

static __always_inline u32 lookup_sc(u32 nr)
{
	u32 *sc = bpf_map_lookup_elem(&syscalls, &nr);
	return sc ? *sc : 0;
}

static __always_inline void read_creds(struct task_struct *task, struct cred_ids *c)
{
	const struct cred *cred = NULL;
	CORE_READ_INTO(cred, task->cred);
	c->uid = c->euid = c->gid = c->egid = 0;
	c->cap_eff = c->cap_prm = 0;
	CORE_READ_INTO(c->uid, cred->uid.val);
	CORE_READ_INTO(c->euid, cred->euid.val);
	CORE_READ_INTO(c->gid, cred->gid.val);
	CORE_READ_INTO(c->egid, cred->egid.val);
	if (CORE_FIELD_EXISTS(cred->cap_effective.val)) {
		CORE_READ_INTO(c->cap_eff, cred->cap_effective.val);
		CORE_READ_INTO(c->cap_prm, cred->cap_permitted.val);
	}
}

// fill_header fills what every event carries, about the current task.
static __always_inline struct task_struct *fill_header(struct header *h, u32 kind, s64 ret)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	u64 id = bpf_get_current_pid_tgid();
	const struct cred *cred = NULL;
	struct task_struct *leader = NULL;

	h->time = bpf_ktime_get_boot_ns();
	h->kind = kind;
	h->pid = id >> 32;
	h->tid = (u32)id;
	h->flags = 0;
	h->uid = 0;
	h->euid = 0;
	h->start = 0;
	h->ret = ret;
	CORE_READ_INTO(cred, task->cred);
	CORE_READ_INTO(h->uid, cred->uid.val);
	CORE_READ_INTO(h->euid, cred->euid.val);
	CORE_READ_INTO(leader, task->group_leader);
	CORE_READ_INTO(h->start, leader->start_boottime);
	h->cgroup = bpf_get_current_cgroup_id();
	bpf_get_current_comm(h->comm, sizeof(h->comm));
	return task;
}

// fd_file returns the open file fd of task, or NULL.
static __always_inline struct file *fd_file(struct task_struct *task, s64 fd)
{
	struct files_struct *files = NULL;
	struct fdtable *fdt = NULL;
	struct file **fds = NULL;
	struct file *f = NULL;
	unsigned int max = 0;

	CORE_READ_INTO(files, task->files);
	CORE_READ_INTO(fdt, files->fdt);
	CORE_READ_INTO(max, fdt->max_fds);
	if (fd < 0 || fd >= max)
		return NULL;
	CORE_READ_INTO(fds, fdt->fd);
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

// sys_enter keeps the credentials of a thread entering a credential-
// changing call, for sys_exit to compare.
SEC("tp_btf/sys_enter")
int sys_enter(u64 *ctx)
{
	u32 sc = lookup_sc((u32)ctx[1]);
	if (sc < SC_SETUID || sc > SC_CAPSET)
		return 0;
	struct cred_ids c;
	u32 tid = (u32)bpf_get_current_pid_tgid();
	read_creds((struct task_struct *)bpf_get_current_task(), &c);
	bpf_map_update_elem(&old_creds, &tid, &c, BPF_ANY);
	return 0;
}

static __always_inline void on_ptrace(void *regs, s64 ret)
{
	u64 request = arg(regs, 0);
	if (request != PTRACE_ATTACH && request != PTRACE_SEIZE && request != PTRACE_POKETEXT &&
	    request != PTRACE_POKEDATA && request != PTRACE_POKEUSR && request != PTRACE_SETREGS &&
	    request != PTRACE_SETREGSET)
		return;
	struct ptrace_event e;
	fill_header(&e.h, KIND_PTRACE, ret);
	e.request = request;
	e.target = arg(regs, 1);
	e.addr = arg(regs, 2);
	e.pad = 0;
	emit(&e, sizeof(e), KIND_PTRACE);
}

static __always_inline void on_module(void *regs, u32 sc, s64 ret)
{
	union scratch *s = scratch();
	if (!s)
		return;
	struct module_event *e = &s->mod;
	struct task_struct *task = fill_header(&e->h, KIND_MODULE, ret);
	e->op = sc;
	e->fd = -1;
	e->name_len = 0;
	e->pad = 0;
	e->name[0] = 0;
	if (sc == SC_FINIT_MODULE) {
		e->fd = arg(regs, 0);
		struct file *f = fd_file(task, e->fd);
		if (f) {
			struct dentry *d = NULL;
			const unsigned char *name = NULL;
			CORE_READ_INTO(d, f->f_path.dentry);
			CORE_READ_INTO(name, d->d_name.name);
			long n = bpf_probe_read_kernel_str(e->name, sizeof(e->name), name);
			if (n < 0)
				n = 0;
			if (n >= MODNAME_BYTES)
				e->h.flags |= F_NAME_TRUNC;
			e->name_len = n;
		}
	}
	emit(e, sizeof(*e), KIND_MODULE);
}

static __always_inline void on_creds(u32 sc, s64 ret)
{
	u32 tid = (u32)bpf_get_current_pid_tgid();
	struct cred_ids *old = bpf_map_lookup_elem(&old_creds, &tid);
	if (!old)
		return; // entered before the sensor attached
	union scratch *s = scratch();
	if (!s) {
		bpf_map_delete_elem(&old_creds, &tid);
		return;
	}
	struct creds_event *e = &s->c;
	e->old = *old;
	bpf_map_delete_elem(&old_creds, &tid);
	struct task_struct *task = fill_header(&e->h, KIND_CREDS, ret);
	read_creds(task, &e->new);
	if (e->old.uid == e->new.uid && e->old.euid == e->new.euid && e->old.gid == e->new.gid &&
	    e->old.egid == e->new.egid && e->old.cap_eff == e->new.cap_eff &&
	    e->old.cap_prm == e->new.cap_prm)
		return;
	e->op = sc;
	e->pad = 0;
	emit(e, sizeof(*e), KIND_CREDS);
}

static __always_inline void on_memfd(void *regs, s64 ret)
{
	union scratch *s = scratch();
	if (!s)
		return;
	struct memfd_event *e = &s->mf;
	fill_header(&e->h, KIND_MEMFD, ret);
	e->mfd_flags = arg(regs, 1);
	long n = bpf_probe_read_user_str(e->name, sizeof(e->name), (void *)arg(regs, 0));
	if (n < 0)
		n = 0;
	if (n >= MEMFD_BYTES)
		e->h.flags |= F_NAME_TRUNC;
	e->name_len = n;
	emit(e, sizeof(*e), KIND_MEMFD);
}

static __always_inline void on_bpf(void *regs, s64 ret)
{
	if (arg(regs, 0) != BPF_PROG_LOAD || ret < 0)
		return;
	u32 tgid = bpf_get_current_pid_tgid() >> 32;
	if (bpf_map_lookup_elem(&bpf_excluded, &tgid))
		return;
	struct bpf_event e;
	char *attr = (char *)arg(regs, 1);
	u64 size = arg(regs, 2);
	fill_header(&e.h, KIND_BPF, ret);
	e.prog_type = 0;
	e.pad = 0;
	__builtin_memset(e.name, 0, sizeof(e.name));
	bpf_probe_read_user(&e.prog_type, sizeof(e.prog_type), attr); // union bpf_attr.prog_type
	if (size >= 64)
		bpf_probe_read_user(e.name, sizeof(e.name), attr + 48); // .prog_name
	emit(&e, sizeof(e), KIND_BPF);
}

static __always_inline void on_mount(void *regs, u32 sc, s64 ret)
{
	union scratch *s = scratch();
	if (!s)
		return;
	struct mount_event *e = &s->m;
	fill_header(&e->h, KIND_MOUNT, ret);
	e->op = sc;
	e->pad = 0;
	e->pad2 = 0;
	e->source_len = 0;
	e->fstype_len = 0;
	long n;
	if (sc == SC_MOUNT) {
		e->mnt_flags = arg(regs, 3);
		n = bpf_probe_read_user_str(e->source, SOURCE_BYTES, (void *)arg(regs, 0));
		if (n > 0)
			e->source_len = n;
		if (n >= SOURCE_BYTES)
			e->h.flags |= F_SOURCE_TRUNC;
		n = bpf_probe_read_user_str(e->fstype, FSTYPE_BYTES, (void *)arg(regs, 2));
		if (n > 0)
			e->fstype_len = n;
		n = bpf_probe_read_user_str(e->target, TARGET_BYTES, (void *)arg(regs, 1));
	} else {
		e->mnt_flags = (u32)arg(regs, 1);
		n = bpf_probe_read_user_str(e->target, TARGET_BYTES, (void *)arg(regs, 0));
	}
	e->target_len = n > 0 ? n : 0;
	if (n >= TARGET_BYTES)
		e->h.flags |= F_TARGET_TRUNC;
	emit(e, sizeof(*e), KIND_MOUNT);
}

static __always_inline void on_ns(void *regs, u32 sc, s64 ret)
{
	struct ns_event e;
	fill_header(&e.h, KIND_NAMESPACE, ret);
	e.op = sc;
	if (sc == SC_SETNS) {
		e.fd = arg(regs, 0);
		e.ns_flags = (u32)arg(regs, 1);
	} else {
		e.fd = -1;
		e.ns_flags = arg(regs, 0);
	}
	emit(&e, sizeof(e), KIND_NAMESPACE);
}

// on_open reports a successful open for writing of a /proc/<pid>/mem file
// of another process.
static __always_inline void on_open(void *regs, u32 sc, s64 ret)
{
	u64 flags = 0;
	if (ret < 0)
		return;
	if (sc == SC_OPEN)
		flags = arg(regs, 1);
	else if (sc == SC_OPENAT)
		flags = arg(regs, 2);
	else
		bpf_probe_read_user(&flags, sizeof(flags), (void *)arg(regs, 2)); // open_how.flags
	if ((flags & O_ACCMODE) == 0)
		return; // O_RDONLY
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct file *f = fd_file(task, ret);
	if (!f)
		return;
	struct dentry *d = NULL;
	struct super_block *sb = NULL;
	unsigned long magic = 0;
	const unsigned char *name = NULL;
	char leaf[4] = {};
	CORE_READ_INTO(d, f->f_path.dentry);
	CORE_READ_INTO(sb, d->d_sb);
	CORE_READ_INTO(magic, sb->s_magic);
	if (magic != PROC_SUPER_MAGIC)
		return;
	CORE_READ_INTO(name, d->d_name.name);
	bpf_probe_read_kernel(leaf, sizeof(leaf), name);
	if (leaf[0] != 'm' || leaf[1] != 'e' || leaf[2] != 'm' || leaf[3] != 0)
		return;
	// The mem file's inode is a proc_inode naming the process.
	struct inode *inode = NULL;
	struct pid *pid = NULL;
	u32 target = 0;
	CORE_READ_INTO(inode, f->f_inode);
	struct proc_inode *pi = (struct proc_inode *)((char *)inode -
		CORE_FIELD_OFFSET(((struct proc_inode *)0)->vfs_inode));
	CORE_READ_INTO(pid, pi->pid);
	CORE_READ_INTO(target, pid->numbers[0].nr);
	if (target == (u32)(bpf_get_current_pid_tgid() >> 32))
		return;
	struct procmem_event e;
	fill_header(&e.h, KIND_PROCMEM, ret);
	e.target = target;
	e.fd = ret;
	e.open_flags = flags;
	e.op = sc;
	e.pad = 0;
	e.count = 0;
	e.pos = -1;
	emit(&e, sizeof(e), KIND_PROCMEM);

	struct procmem_key k = {.tgid = e.h.pid, .fd = ret};
	struct procmem_file v = {.target = target, .pad = 0, .open_flags = flags};
	bpf_map_update_elem(&procmem_fds, &k, &v, BPF_ANY);
	u32 zero = 0;
	u64 *used = bpf_map_lookup_elem(&procmem_used, &zero);
	if (used)
		__sync_fetch_and_add(used, 1);
}

static __always_inline bool procmem_any(void)
{
	u32 zero = 0;
	u64 *used = bpf_map_lookup_elem(&procmem_used, &zero);
	return used && *used;
}

// on_write reports a write to a descriptor on_open recorded; on_close
// forgets it.
static __always_inline void on_write(void *regs, u32 sc, s64 ret)
{
	if (!procmem_any())
		return;
	struct procmem_key k = {.tgid = bpf_get_current_pid_tgid() >> 32, .fd = (s32)arg(regs, 0)};
	struct procmem_file *f = bpf_map_lookup_elem(&procmem_fds, &k);
	if (!f)
		return;
	struct procmem_event e;
	fill_header(&e.h, KIND_PROCMEM, ret);
	e.target = f->target;
	e.fd = k.fd;
	e.open_flags = f->open_flags;
	e.op = sc;
	e.pad = 0;
	e.count = 0;
	if (sc == SC_WRITE || sc == SC_PWRITE64)
		e.count = arg(regs, 2); // what was asked; the result says what was written
	e.pos = -1;
	if (sc == SC_PWRITE64 || sc == SC_PWRITEV || sc == SC_PWRITEV2)
		e.pos = arg(regs, 3);
	emit(&e, sizeof(e), KIND_PROCMEM);
}

static __always_inline void on_close(void *regs)
{
	if (!procmem_any())
		return;
	struct procmem_key k = {.tgid = bpf_get_current_pid_tgid() >> 32, .fd = (s32)arg(regs, 0)};
	bpf_map_delete_elem(&procmem_fds, &k);
}

// sys_exit reports the calls that matter as they return, with their
// result. The arguments are still in the registers.
SEC("tp_btf/sys_exit")
int sys_exit(u64 *ctx)
{
	void *regs = (void *)ctx[0];
	s64 ret = (s64)ctx[1];
	u32 sc = lookup_sc(syscall_nr(regs));

	switch (sc) {
	case 0:
		return 0;
	case SC_PTRACE:
		on_ptrace(regs, ret);
		break;
	case SC_INIT_MODULE:
	case SC_FINIT_MODULE:
		on_module(regs, sc, ret);
		break;
	case SC_MEMFD_CREATE:
		on_memfd(regs, ret);
		break;
	case SC_BPF:
		on_bpf(regs, ret);
		break;
	case SC_MOUNT:
	case SC_UMOUNT2:
		on_mount(regs, sc, ret);
		break;
	case SC_SETNS:
	case SC_UNSHARE:
		on_ns(regs, sc, ret);
		break;
	case SC_OPEN:
	case SC_OPENAT:
	case SC_OPENAT2:
		on_open(regs, sc, ret);
		break;
	case SC_WRITE:
	case SC_PWRITE64:
	case SC_WRITEV:
	case SC_PWRITEV:
	case SC_PWRITEV2:
		on_write(regs, sc, ret);
		break;
	case SC_CLOSE:
		on_close(regs);
		break;
	default:
		if (sc >= SC_SETUID && sc <= SC_CAPSET)
			on_creds(sc, ret);
	}
	return 0;
}
