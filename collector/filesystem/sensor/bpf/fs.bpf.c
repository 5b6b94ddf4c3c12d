// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// fs.bpf.c: the eBPF filesystem sensor. One BTF-typed tracepoint program
// on raw_syscalls:sys_exit (tp_btf/sys_exit) sees each file system call
// as it returns successfully, decides in the kernel whether it touched a
// watched file, and reports only those into one BPF ring buffer. The
// record layout is decoded by hand in ../event.go: change both together,
// and the offsets test in decode_test.go. See ../doc.go for why this hook
// rather than fentry or BPF LSM programs on the security_* functions.
//
// The filter. User space (../resolve_linux.go) fills these maps from the
// configured path sets:
//   - watched: (device, inode) of a file or directory -> W_WRITE (writes
//     to it, or below it), W_READ (read-only opens of it, or of a regular
//     file below it), W_NAMES (names in this directory are watched);
//   - names: (device, inode of a directory, name) -> W_WRITE | W_READ for
//     the entry of that name, whether it exists or not (so that
//     ~/.bashrc is watched before it exists and after a rename replaced
//     it);
//   - devs: device -> the union of its entries' flags, so that a file
//     system with nothing watched costs one lookup;
//   - prefixes: an LPM trie of the watched paths as strings ("/etc/" for
//     below /etc, "/etc/shadow\0" for the file itself), for the calls that
//     name a file by an absolute path the kernel has already forgotten
//     (unlink, rename, chmod, chown, link, symlink, truncate);
//   - sysclass: system call number -> CLS_* (filled for the running
//     architecture's numbers), so that every other system call costs one
//     array lookup.
// Calls that return a file descriptor or take one (open*, fchmod,
// fchown, ftruncate) are matched by identity: the file's dentry and its
// parents are looked up in watched and names (WALK_MAX levels, within one
// file system; user space adds the roots of mounts below watched
// directories). Calls that take a path are matched by the identity of
// their base directory (the cwd or dirfd, and its parents) for a relative
// path, and by the prefixes trie for an absolute one. A path with "//",
// "/./" or "/../" in it is reported unresolved (an absolute one always, a
// relative one when its base matched), for user space to decide on the
// cleaned path (rare). A chmod that sets the setuid or setgid bit is
// reported wherever the file is. Only a match builds paths and writes an
// event.

#include "kernel.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

// Operations (Op in ../event.go).
#define OP_OPEN_WRITE 1
#define OP_CREATE 2
#define OP_TRUNCATE 3
#define OP_UNLINK 4
#define OP_RENAME 5
#define OP_CHMOD 6
#define OP_CHOWN 7
#define OP_LINK 8
#define OP_SYMLINK 9
#define OP_READ 10
#define OP_MAX 10

// System call classes (sysclass values; sysClasses in ../resolve_linux.go).
#define CLS_OPEN 1       // open(path, flags)
#define CLS_OPENAT 2     // openat(dfd, path, flags)
#define CLS_CREAT 3      // creat(path, mode)
#define CLS_OPENAT2 4    // openat2(dfd, path, how)
#define CLS_FCHMOD 5     // fchmod(fd, mode)
#define CLS_FCHOWN 6     // fchown(fd, uid, gid)
#define CLS_FTRUNCATE 7  // ftruncate(fd, len)
#define CLS_UNLINK 8     // unlink(path)
#define CLS_UNLINKAT 9   // unlinkat(dfd, path, flags)
#define CLS_RENAME 10    // rename(old, new)
#define CLS_RENAMEAT 11  // renameat(odfd, old, ndfd, new), renameat2(..., flags)
#define CLS_CHMOD 12     // chmod(path, mode)
#define CLS_FCHMODAT 13  // fchmodat(dfd, path, mode), fchmodat2(..., flags)
#define CLS_CHOWN 14     // chown(path, uid, gid), lchown
#define CLS_FCHOWNAT 15  // fchownat(dfd, path, uid, gid, flags)
#define CLS_LINK 16      // link(old, new)
#define CLS_LINKAT 17    // linkat(odfd, old, ndfd, new, flags)
#define CLS_SYMLINK 18   // symlink(target, new)
#define CLS_SYMLINKAT 19 // symlinkat(target, ndfd, new)
#define CLS_TRUNCATE 20  // truncate(path, len)
#define SYSCALLS 1024

// Watch flags (map values; Watch* in ../watch.go).
#define W_WRITE 0x1
#define W_READ 0x2
#define W_NAMES 0x4
#define W_UNRESOLVED 0x8 // event only: a path user space must check

// Event flags (ev.flags; Flags in ../event.go).
#define F_PATH_TRUNC 0x01
#define F_OLD_TRUNC 0x02
#define F_TARGET_TRUNC 0x04
#define F_EXE_TRUNC 0x08
#define F_PATH_DETACHED 0x10
#define F_OLD_DETACHED 0x20
#define F_EXE_DETACHED 0x40
#define F_RENAME_EXCHANGE 0x80

#define WALK_MAX 16              // parents the filter walks
#define NAME_KEY 64              // bytes of a watched name, NUL included
#define LPM_BYTES 256            // bytes of an absolute path the trie sees
#define DATA_SIZE 16384          // power of two: offsets are masked with DATA_MASK
#define DATA_MASK (DATA_SIZE - 1)
#define NAME_READ 256            // NAME_MAX + 1
#define PATH_MAX_BYTES 4096      // bytes of path components, NULs included
#define PATH_MAX_PARTS 40        // components walked per path
#define REL_MAX 1024             // bytes of a path argument, NUL included
#define TARGET_MAX 1024          // bytes of a symlink's target, NUL included

#define AT_FDCWD -100
#define AT_REMOVEDIR 0x200
#define RENAME_EXCHANGE (1 << 1)
#define O_WRONLY 01
#define O_CREAT 0100
#define O_TRUNC 01000
#define FMODE_READ 0x1
#define FMODE_WRITE 0x2
#define FMODE_CREATED (1U << 20) // include/linux/fs.h, unchanged since Linux 4.19
#define S_IFMT 0170000
#define S_IFREG 0100000
#define SETID 06000 // S_ISUID | S_ISGID

#define STAT_CALLS 0   // file system calls the filter examined
#define STAT_MATCHED 1 // calls it matched (written or lost)

struct ident {
	u64 ino;
	u32 dev;
	u32 pad;
};

struct name_key {
	u64 ino;
	u32 dev;
	u32 pad;
	char name[NAME_KEY];
};

struct lpm_key {
	u32 prefixlen; // bits
	u8 data[LPM_BYTES];
};

struct fs_event {
	u64 time;        // 0: bpf_ktime_get_boot_ns
	u64 start;       // 8: the process's start (group leader's start_boottime)
	u64 cgroup;      // 16
	u64 ino;         // 24: the file's inode (0 when only its path is known)
	u64 size;        // 32: its i_size
	u32 op;          // 40
	u32 pid;         // 44: tgid
	u32 tid;         // 48
	u32 ppid;        // 52: real_parent->tgid
	u32 uid;         // 56
	u32 euid;        // 60
	u32 dev;         // 64: the file's device (kernel dev_t)
	u32 mode;        // 68: its i_mode after the call
	u32 owner_uid;   // 72
	u32 owner_gid;   // 76
	u32 new_mode;    // 80: chmod
	u32 new_uid;     // 84: chown (0xffffffff: unchanged)
	u32 new_gid;     // 88
	u32 open_flags;  // 92: an open's flags argument
	u32 flags;       // 96: F_*
	u32 match;       // 100: the watch flags that matched, or W_UNRESOLVED
	u16 path_len;    // 104: the file's, or the base directory's, components, leaf first, NUL-terminated
	u16 rel_len;     // 106: the path argument as given, NUL included (0: none)
	u16 old_len;     // 108: same as path_len for the old name
	u16 old_rel_len; // 110
	u16 target_len;  // 112: NUL included
	u16 exe_len;     // 114: leaf-first components
	char comm[16];   // 116
	u32 pad;         // 132
	// 136: path, rel, old, old rel, target, exe
};

struct fs_buf {
	u32 cursor; // the next byte of data to write
	u32 pad;
	u64 root_d;   // the process's root directory, where walk_path stops
	u64 root_mnt;
	struct fs_event e;
	char data[DATA_SIZE + REL_MAX];
	struct name_key nk;
	struct lpm_key lk;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 21); // replaced by Options.RingBytes at load
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, u32);
	__type(value, struct fs_buf);
} heap SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384); // replaced by Options.MaxWatched at load
	__type(key, struct ident);
	__type(value, u32);
} watched SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16384); // replaced by Options.MaxWatched at load
	__type(key, struct name_key);
	__type(value, u32);
} names SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 16384); // replaced by Options.MaxWatched at load
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct lpm_key);
	__type(value, u32);
} prefixes SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, u32);
	__type(value, u32);
} devs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, SYSCALLS);
	__type(key, u32);
	__type(value, u32);
} sysclass SEC(".maps");

// Ring-buffer writes that failed, per CPU, indexed by op.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, OP_MAX + 1);
	__type(key, u32);
	__type(value, u64);
} lost SEC(".maps");

// STAT_* counters, per CPU.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, u32);
	__type(value, u64);
} stats SEC(".maps");

const volatile u64 wakeup_bytes = 0;

static __always_inline u64 wakeup_flags(void)
{
	if (!wakeup_bytes)
		return 0;
	if (bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= wakeup_bytes)
		return BPF_RB_FORCE_WAKEUP;
	return BPF_RB_NO_WAKEUP;
}

static __always_inline void count(void *map, u32 idx)
{
	u64 *c = bpf_map_lookup_elem(map, &idx);
	if (c)
		*c += 1; // per CPU; a rare lost increment only makes a statistic low
}

// Global (non-static, not inlined) functions are verified once, on their
// own, rather than at every call site: the filter's and the paths' loops
// would otherwise multiply the verifier's work past its limit. Their
// arguments are the buffer and scalars (kernel pointers as u64).
#define __global __attribute__((noinline))

#define CURSOR (*(volatile u32 *)&b->cursor)
#define FLAGS (*(volatile u32 *)&b->e.flags)

// name_match looks up the name at name (kernel memory when kern, else
// user memory; up to the first '/' or NUL) in directory (ino, dev).
__global u32 name_match(struct fs_buf *b, u64 ino, u32 dev, u64 name, u32 kern_want)
{
	if (!b)
		return 0;
	bool kern = kern_want >> 16;
	u32 want = kern_want & 0xffff;
	struct name_key *nk = &b->nk;
	u64 *z = (u64 *)nk;
#pragma unroll
	for (int i = 0; i < sizeof(*nk) / 8; i++)
		*(volatile u64 *)&z[i] = 0;
	nk->ino = ino;
	nk->dev = dev;
	if (kern)
		bpf_probe_read_kernel_str(nk->name, NAME_KEY, (void *)name);
	else
		bpf_probe_read_user_str(nk->name, NAME_KEY, (void *)name);
	// A relative path's first component: cut at its '/'.
	for (int i = 0; i < NAME_KEY; i++) {
		if (nk->name[i] == 0)
			break;
		if (nk->name[i] == '/') {
			for (int j = i; j < NAME_KEY; j++)
				*(volatile char *)&nk->name[j] = 0;
			break;
		}
	}
	u32 *nf = bpf_map_lookup_elem(&names, nk);
	if (nf && (*nf & want))
		return *nf & want;
	return 0;
}

// watch_match walks from d up its parents, within its file system, and
// returns the flags among want of the first watched entry it meets: d
// itself or an ancestor in watched, or the name of the entry below an
// ancestor that has W_NAMES. rel, when set, is a user-memory path
// relative to d whose first component is checked against d's names. 0:
// not watched.
__global u32 watch_match(struct fs_buf *b, u64 dp, u64 rel, u32 want)
{
	if (!b)
		return 0;
	struct dentry *d = (struct dentry *)dp;
	struct super_block *sb = NULL;
	u32 dev = 0;
	CORE_READ_INTO(sb, d->d_sb);
	if (!sb)
		return 0;
	CORE_READ_INTO(dev, sb->s_dev);
	u32 *dflags = bpf_map_lookup_elem(&devs, &dev);
	if (!dflags || !(*dflags & (want | W_NAMES)))
		return 0;

	struct ident k = {.dev = dev};
	struct dentry *child = NULL;
	for (int i = 0; i < WALK_MAX; i++) {
		struct inode *inode = NULL;
		CORE_READ_INTO(inode, d->d_inode);
		if (inode) {
			k.ino = 0;
			CORE_READ_INTO(k.ino, inode->i_ino);
			u32 *f = bpf_map_lookup_elem(&watched, &k);
			if (f) {
				u32 v = *f;
				if (v & want)
					return v & want;
				if (v & W_NAMES) {
					u32 m = 0;
					if (child) {
						const unsigned char *name = NULL;
						CORE_READ_INTO(name, child->d_name.name);
						m = name_match(b, k.ino, dev, (u64)name, 1 << 16 | want);
					} else if (rel) {
						m = name_match(b, k.ino, dev, rel, want);
					}
					if (m)
						return m;
				}
			}
		}
		struct dentry *parent = NULL;
		CORE_READ_INTO(parent, d->d_parent);
		if (!parent || parent == d)
			return 0;
		child = d;
		d = parent;
	}
	return 0;
}

// file_of returns the open file of descriptor fd of the current task.
static __always_inline struct file *file_of(struct task_struct *task, long fd)
{
	struct files_struct *files = NULL;
	struct fdtable *fdt = NULL;
	struct file **fds = NULL;
	struct file *f = NULL;
	unsigned int max = 0;
	if (fd < 0)
		return NULL;
	CORE_READ_INTO(files, task->files);
	CORE_READ_INTO(fdt, files->fdt);
	CORE_READ_INTO(max, fdt->max_fds);
	if ((unsigned long)fd >= max)
		return NULL;
	CORE_READ_INTO(fds, fdt->fd);
	bpf_probe_read_kernel(&f, sizeof(f), &fds[fd]);
	return f;
}

// base_of returns the directory a path relative to dfd starts from, with
// its mount in *vm.
static __always_inline struct dentry *base_of(struct task_struct *task, long dfd, struct vfsmount **vm)
{
	struct dentry *d = NULL;
	if ((int)dfd == AT_FDCWD) {
		struct fs_struct *fs = NULL;
		CORE_READ_INTO(fs, task->fs);
		CORE_READ_INTO(d, fs->pwd.dentry);
		CORE_READ_INTO(*vm, fs->pwd.mnt);
		return d;
	}
	struct file *f = file_of(task, dfd);
	if (!f)
		return NULL;
	CORE_READ_INTO(d, f->f_path.dentry);
	CORE_READ_INTO(*vm, f->f_path.mnt);
	return d;
}

// odd reports whether the path in lk has "//", "/./" or "/../" (or ends
// with "/." or "/.."), which the prefix trie cannot see through.
__global bool odd(struct fs_buf *b)
{
	if (!b)
		return 0;
	struct lpm_key *lk = &b->lk;
	for (int i = 0; i < LPM_BYTES - 3; i++) {
		u8 c = lk->data[i];
		if (c == 0)
			return false;
		if (c != '/')
			continue;
		u8 c1 = lk->data[i + 1], c2 = lk->data[i + 2], c3 = lk->data[i + 3];
		if (c1 == '/')
			return true;
		if (c1 == '.' && (c2 == '/' || c2 == 0 || (c2 == '.' && (c3 == '/' || c3 == 0))))
			return true;
	}
	return false;
}

// path_match matches the path argument p (user memory) relative to dfd.
// *base and *vm are set to the base directory of a relative path (NULL for
// an absolute one).
static __always_inline u32 path_match(struct fs_buf *b, struct task_struct *task, long dfd,
				      const char *p, u32 want, struct dentry **base, struct vfsmount **vm)
{
	struct lpm_key *lk = &b->lk;
	*base = NULL;
	long n = bpf_probe_read_user_str(lk->data, LPM_BYTES, p);
	if (n <= 0)
		return 0;
	if (lk->data[0] != '/') {
		struct dentry *d = base_of(task, dfd, vm);
		if (!d)
			return 0;
		*base = d;
		u32 m = watch_match(b, (u64)d, (u64)p, want);
		if (m && odd(b))
			return W_UNRESOLVED; // ".." may lead out of it
		return m;
	}
	if (odd(b))
		return W_UNRESOLVED; // the trie cannot see through it
	lk->prefixlen = (u32)n * 8;
	u32 *f = bpf_map_lookup_elem(&prefixes, lk);
	if (f && (*f & want))
		return *f & want;
	return 0;
}

// walk_path appends the components of the path (d, vm), leaf first, each
// NUL-terminated, at data[cursor...], up to the process's root (root_d,
// root_mnt), as d_path does (collector/process/sensor's walk), and
// advances the cursor.
__global int walk_path(struct fs_buf *b, u64 dp, u64 vmp, u32 f_trunc, u32 f_detached)
{
	if (!b)
		return 0;
	struct dentry *d = (struct dentry *)dp;
	struct vfsmount *vm = (struct vfsmount *)vmp;
	struct dentry *root_d = (struct dentry *)b->root_d;
	struct vfsmount *root_mnt = (struct vfsmount *)b->root_mnt;
	u32 start = CURSOR;
	struct mount *m = (struct mount *)((char *)vm -
		__builtin_preserve_field_info(((struct mount *)0)->mnt, 0));

	for (int i = 0; i < PATH_MAX_PARTS; i++) {
		struct dentry *mnt_root = NULL, *parent = NULL;
		const unsigned char *name = NULL;

		if (d == root_d && vm == root_mnt)
			return 0;
		CORE_READ_INTO(mnt_root, vm->mnt_root);
		if (d == mnt_root) {
			struct mount *mp = NULL;
			CORE_READ_INTO(mp, m->mnt_parent);
			if (mp == m || !mp) {
				FLAGS |= f_detached;
				return 0;
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
			return 0;
		}
		long n = bpf_probe_read_kernel_str(&b->data[off & DATA_MASK], NAME_READ, name);
		if (n <= 0) {
			FLAGS |= f_trunc;
			return 0;
		}
		CURSOR = off + (u32)n;
		if (d == parent || !parent) {
			FLAGS |= f_detached;
			return 0;
		}
		d = parent;
	}
	FLAGS |= f_trunc;
	return 0;
}

// append_user appends the user string p (NUL included) and returns its
// length.
__global u32 append_user(struct fs_buf *b, u64 p, u32 f_trunc)
{
	if (!b)
		return 0;
	u32 off = CURSOR;
	long n = bpf_probe_read_user_str(&b->data[off & DATA_MASK], REL_MAX, (void *)p);
	if (n <= 0)
		return 0;
	if (n >= REL_MAX)
		FLAGS |= f_trunc;
	CURSOR = off + (u32)n;
	return n;
}

// report writes one event. The file is (d, vm) with inode (NULL when only
// a path is known: then d is the base directory of the relative path rel,
// or NULL for an absolute rel); od, ovm and orel are the same for the old
// name of a rename or link, target the symlink's contents. The caller set
// b->e's op-specific fields first.
static __always_inline void report(struct fs_buf *b, struct task_struct *task, u32 op, u32 match,
				   struct inode *inode, struct dentry *d, struct vfsmount *vm, const char *rel,
				   struct dentry *od, struct vfsmount *ovm, const char *orel, const char *target)
{
	struct fs_event *e = &b->e;
	count(&stats, STAT_MATCHED);

	e->time = bpf_ktime_get_boot_ns();
	e->op = op;
	e->match = match;
	e->pid = 0;
	e->tid = 0;
	e->ppid = 0;
	e->uid = 0;
	e->euid = 0;
	e->start = 0;
	e->pad = 0;
	CORE_READ_INTO(e->pid, task->tgid);
	CORE_READ_INTO(e->tid, task->pid);
	struct task_struct *leader = NULL, *parent = NULL;
	CORE_READ_INTO(leader, task->group_leader);
	CORE_READ_INTO(e->start, leader->start_boottime);
	CORE_READ_INTO(parent, task->real_parent);
	CORE_READ_INTO(e->ppid, parent->tgid);
	const struct cred *cred = NULL;
	CORE_READ_INTO(cred, task->cred);
	CORE_READ_INTO(e->uid, cred->uid.val);
	CORE_READ_INTO(e->euid, cred->euid.val);
	bpf_probe_read_kernel(e->comm, sizeof(e->comm), CORE_ADDR(task->comm));
	e->cgroup = bpf_get_current_cgroup_id();

	e->ino = 0;
	e->size = 0;
	e->dev = 0;
	e->mode = 0;
	e->owner_uid = 0;
	e->owner_gid = 0;
	if (inode) {
		umode_t mode = 0;
		struct super_block *sb = NULL;
		CORE_READ_INTO(e->ino, inode->i_ino);
		CORE_READ_INTO(e->size, inode->i_size);
		CORE_READ_INTO(mode, inode->i_mode);
		CORE_READ_INTO(e->owner_uid, inode->i_uid.val);
		CORE_READ_INTO(e->owner_gid, inode->i_gid.val);
		CORE_READ_INTO(sb, inode->i_sb);
		CORE_READ_INTO(e->dev, sb->s_dev);
		e->mode = mode;
	}

	struct fs_struct *fs = NULL;
	struct dentry *root_d = NULL;
	struct vfsmount *root_mnt = NULL;
	CORE_READ_INTO(fs, task->fs);
	CORE_READ_INTO(root_d, fs->root.dentry);
	CORE_READ_INTO(root_mnt, fs->root.mnt);
	b->root_d = (u64)root_d;
	b->root_mnt = (u64)root_mnt;

	CURSOR = 0;
	if (d)
		walk_path(b, (u64)d, (u64)vm, F_PATH_TRUNC, F_PATH_DETACHED);
	u32 mark = CURSOR;
	e->path_len = mark;
	if (rel)
		append_user(b, (u64)rel, F_PATH_TRUNC);
	e->rel_len = CURSOR - mark;
	mark = CURSOR;
	if (od)
		walk_path(b, (u64)od, (u64)ovm, F_OLD_TRUNC, F_OLD_DETACHED);
	e->old_len = CURSOR - mark;
	mark = CURSOR;
	if (orel)
		append_user(b, (u64)orel, F_OLD_TRUNC);
	e->old_rel_len = CURSOR - mark;
	mark = CURSOR;
	if (target)
		append_user(b, (u64)target, F_TARGET_TRUNC);
	e->target_len = CURSOR - mark;
	mark = CURSOR;

	struct mm_struct *mm = NULL;
	struct file *exe = NULL;
	CORE_READ_INTO(mm, task->mm);
	if (mm)
		CORE_READ_INTO(exe, mm->exe_file);
	if (exe) {
		struct dentry *xd = NULL;
		struct vfsmount *xvm = NULL;
		CORE_READ_INTO(xd, exe->f_path.dentry);
		CORE_READ_INTO(xvm, exe->f_path.mnt);
		walk_path(b, (u64)xd, (u64)xvm, F_EXE_TRUNC, F_EXE_DETACHED);
	}
	u32 off = CURSOR;
	e->exe_len = off - mark;

	u32 size = off & DATA_MASK;
	if (bpf_ringbuf_output(&events, e, sizeof(struct fs_event) + size, wakeup_flags()))
		count(&lost, op);
}

// fd_op handles the calls that return or take a file descriptor.
static __always_inline void fd_op(struct fs_buf *b, struct task_struct *task, u32 cls, long fd, u32 oflags)
{
	struct file *f = file_of(task, fd);
	if (!f)
		return;
	fmode_t fmode = 0;
	struct dentry *d = NULL;
	struct vfsmount *vm = NULL;
	struct inode *inode = NULL;
	CORE_READ_INTO(fmode, f->f_mode);
	CORE_READ_INTO(d, f->f_path.dentry);
	CORE_READ_INTO(vm, f->f_path.mnt);
	CORE_READ_INTO(inode, d->d_inode);
	u32 want = W_WRITE, op;
	switch (cls) {
	case CLS_FCHMOD:
		op = OP_CHMOD;
		break;
	case CLS_FCHOWN:
		op = OP_CHOWN;
		break;
	case CLS_FTRUNCATE:
		op = OP_TRUNCATE;
		break;
	default:
		if (fmode & FMODE_WRITE) {
			if (fmode & FMODE_CREATED)
				op = OP_CREATE;
			else if (oflags & O_TRUNC)
				op = OP_TRUNCATE;
			else
				op = OP_OPEN_WRITE;
		} else if (fmode & FMODE_READ) {
			// Reads are reported for regular files only: listing a
			// watched directory is not reading a secret.
			umode_t mode = 0;
			CORE_READ_INTO(mode, inode->i_mode);
			if ((mode & S_IFMT) != S_IFREG)
				return;
			want = W_READ;
			op = OP_READ;
		} else {
			return;
		}
		b->e.open_flags = oflags;
	}
	u32 match = watch_match(b, (u64)d, 0, want);
	if (!match && op == OP_CHMOD && (b->e.new_mode & SETID))
		match = W_WRITE; // setuid and setgid bits are reported anywhere
	if (match)
		report(b, task, op, match, inode, d, vm, NULL, NULL, NULL, NULL, NULL);
}

SEC("tp_btf/sys_exit")
int sys_exit(u64 *ctx)
{
	struct pt_regs *regs = (struct pt_regs *)ctx[0];
	long ret = (long)ctx[1];
	if (ret < 0)
		return 0;
	u32 nr = 0;
	unsigned long a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0;
	CORE_READ_INTO(nr, regs->orig_ax);
	u32 *clsp = bpf_map_lookup_elem(&sysclass, &nr);
	if (!clsp || !*clsp)
		return 0;
	u32 cls = *clsp;
	struct task_struct *task = bpf_get_current_task_btf();
	u32 tstatus = 0;
	CORE_READ_INTO(tstatus, task->thread_info.status);
	if (tstatus & TS_COMPAT)
		return 0; // an ia32 call: another numbering (see ../doc.go)
	u32 zero = 0;
	count(&stats, STAT_CALLS);
	struct fs_buf *b = bpf_map_lookup_elem(&heap, &zero);
	if (!b)
		return 0;
	b->e.new_mode = 0;
	b->e.new_uid = 0xffffffff;
	b->e.new_gid = 0xffffffff;
	b->e.open_flags = 0;
	b->e.flags = 0;
	CORE_READ_INTO(a0, regs->di);
	CORE_READ_INTO(a1, regs->si);
	CORE_READ_INTO(a2, regs->dx);
	CORE_READ_INTO(a3, regs->r10);
	CORE_READ_INTO(a4, regs->r8);

	switch (cls) {
	case CLS_OPEN:
		fd_op(b, task, cls, ret, (u32)a1);
		return 0;
	case CLS_OPENAT:
		fd_op(b, task, cls, ret, (u32)a2);
		return 0;
	case CLS_CREAT:
		fd_op(b, task, cls, ret, O_CREAT | O_WRONLY | O_TRUNC);
		return 0;
	case CLS_OPENAT2: {
		u64 fl = 0;
		bpf_probe_read_user(&fl, sizeof(fl), (void *)a2);
		fd_op(b, task, cls, ret, (u32)fl);
		return 0;
	}
	case CLS_FCHMOD:
		b->e.new_mode = (u32)a1 & 07777;
		fd_op(b, task, cls, (long)(int)a0, 0);
		return 0;
	case CLS_FCHOWN:
		b->e.new_uid = (u32)a1;
		b->e.new_gid = (u32)a2;
		fd_op(b, task, cls, (long)(int)a0, 0);
		return 0;
	case CLS_FTRUNCATE:
		fd_op(b, task, cls, (long)(int)a0, 0);
		return 0;
	}

	// Calls that name files by path: (dfd, path) of the file, and of the
	// old name for rename and link.
	long dfd = AT_FDCWD, odfd = AT_FDCWD;
	const char *p = NULL, *op_ = NULL, *target = NULL;
	u32 op = 0;
	switch (cls) {
	case CLS_UNLINK:
		p = (const char *)a0;
		op = OP_UNLINK;
		break;
	case CLS_UNLINKAT:
		if (a2 & AT_REMOVEDIR)
			return 0;
		dfd = (int)a0;
		p = (const char *)a1;
		op = OP_UNLINK;
		break;
	case CLS_RENAME:
		op_ = (const char *)a0;
		p = (const char *)a1;
		op = OP_RENAME;
		break;
	case CLS_RENAMEAT:
		odfd = (int)a0;
		op_ = (const char *)a1;
		dfd = (int)a2;
		p = (const char *)a3;
		op = OP_RENAME;
		if (nr == 316 && (a4 & RENAME_EXCHANGE)) // renameat2 (x86-64)
			b->e.flags = F_RENAME_EXCHANGE;
		break;
	case CLS_CHMOD:
		p = (const char *)a0;
		b->e.new_mode = (u32)a1 & 07777;
		op = OP_CHMOD;
		break;
	case CLS_FCHMODAT:
		dfd = (int)a0;
		p = (const char *)a1;
		b->e.new_mode = (u32)a2 & 07777;
		op = OP_CHMOD;
		break;
	case CLS_CHOWN:
		p = (const char *)a0;
		b->e.new_uid = (u32)a1;
		b->e.new_gid = (u32)a2;
		op = OP_CHOWN;
		break;
	case CLS_FCHOWNAT:
		dfd = (int)a0;
		p = (const char *)a1;
		b->e.new_uid = (u32)a2;
		b->e.new_gid = (u32)a3;
		op = OP_CHOWN;
		break;
	case CLS_LINK:
		op_ = (const char *)a0;
		p = (const char *)a1;
		op = OP_LINK;
		break;
	case CLS_LINKAT:
		odfd = (int)a0;
		op_ = (const char *)a1;
		dfd = (int)a2;
		p = (const char *)a3;
		op = OP_LINK;
		break;
	case CLS_SYMLINK:
		target = (const char *)a0;
		p = (const char *)a1;
		op = OP_SYMLINK;
		break;
	case CLS_SYMLINKAT:
		target = (const char *)a0;
		dfd = (int)a1;
		p = (const char *)a2;
		op = OP_SYMLINK;
		break;
	case CLS_TRUNCATE:
		p = (const char *)a0;
		op = OP_TRUNCATE;
		break;
	default:
		return 0;
	}
	struct dentry *base = NULL, *obase = NULL;
	struct vfsmount *vm = NULL, *ovm = NULL;
	u32 match = path_match(b, task, dfd, p, W_WRITE, &base, &vm);
	if (op == OP_CHMOD && (b->e.new_mode & SETID) && match != W_WRITE)
		match = W_WRITE; // setuid and setgid bits are reported anywhere
	if (op_) {
		// A new name for a watched file (a hard link of /etc/shadow made
		// to read it elsewhere) matters as much as a new name in a
		// watched directory.
		u32 want = op == OP_LINK ? (W_WRITE | W_READ) : W_WRITE;
		u32 om = path_match(b, task, odfd, op_, want, &obase, &ovm);
		if (!match || (match == W_UNRESOLVED && om))
			match = om;
	}
	if (match)
		report(b, task, op, match, NULL, base, vm, p, obase, ovm, op_, target);
	return 0;
}
