/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kernel.h: the few kernel types, helpers and macros fs.bpf.c uses,
 * written by hand instead of a generated vmlinux.h so that a reviewer can
 * read all of it (as collector/process/sensor/bpf/kernel.h).
 *
 * Every struct carries preserve_access_index: clang records each field
 * access as a CO-RE relocation, and the loader (cilium/ebpf) rewrites the
 * offsets against the running kernel's BTF (/sys/kernel/btf/vmlinux). Only
 * the names and types of the fields used here matter; their order and the
 * missing fields do not. A field inside an anonymous struct or union in
 * the kernel (file.f_path, dentry.d_name, qstr.name) is written here as a
 * direct member: the relocation finds it by name.
 *
 * Kernel memory is read with bpf_probe_read_kernel (CORE_READ_INTO), as
 * in the process sensor.
 *
 * Helper numbers are the order of __BPF_FUNC_MAPPER in the UAPI
 * <linux/bpf.h>; they never change once released.
 */
#ifndef DAEMONEYE_FS_SENSOR_KERNEL_H
#define DAEMONEYE_FS_SENSOR_KERNEL_H

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef signed int __s32;
typedef signed long long __s64;
typedef __u8 u8;
typedef __u16 u16;
typedef __u32 u32;
typedef __u64 u64;
typedef __s32 s32;
typedef __s64 s64;
typedef int pid_t;
typedef unsigned short umode_t;
typedef unsigned int fmode_t;
typedef unsigned int dev_t;
typedef long long loff_t;
typedef _Bool bool;
#define true 1
#define false 0
#define NULL ((void *)0)

/* Map types and flags (UAPI enum bpf_map_type). */
#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_ARRAY 2
#define BPF_MAP_TYPE_LPM_TRIE 11
#define BPF_MAP_TYPE_RINGBUF 27
#define BPF_F_NO_PREALLOC (1U << 0)

#define SEC(name) __attribute__((section(name), used))
#define __always_inline inline __attribute__((always_inline))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name

/* CO-RE: the address of a field, relocated against the kernel's BTF. */
#define CORE_ADDR(expr) __builtin_preserve_access_index(&(expr))
/* CO-RE: copy one kernel field into a local of the same type. */
#define CORE_READ_INTO(dst, expr) \
	bpf_probe_read_kernel(&(dst), sizeof(dst), CORE_ADDR(expr))

/* Helpers (UAPI <linux/bpf.h>, __BPF_FUNC_MAPPER order). */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static u64 (*bpf_get_current_cgroup_id)(void) = (void *)80;
static long (*bpf_probe_read_user)(void *dst, u32 size, const void *unsafe_ptr) = (void *)112;
static long (*bpf_probe_read_user_str)(void *dst, u32 size, const void *unsafe_ptr) = (void *)114;
static long (*bpf_probe_read_kernel)(void *dst, u32 size, const void *unsafe_ptr) = (void *)113;
static long (*bpf_probe_read_kernel_str)(void *dst, u32 size, const void *unsafe_ptr) = (void *)115;
static u64 (*bpf_ktime_get_boot_ns)(void) = (void *)125;
static long (*bpf_ringbuf_output)(void *ringbuf, void *data, u64 size, u64 flags) = (void *)130;
static u64 (*bpf_ringbuf_query)(void *ringbuf, u64 flags) = (void *)134;
static struct task_struct *(*bpf_get_current_task_btf)(void) = (void *)158;

/* Ring-buffer flags (UAPI). */
#define BPF_RB_NO_WAKEUP (1ULL << 0)
#define BPF_RB_FORCE_WAKEUP (1ULL << 1)
#define BPF_RB_AVAIL_DATA 0

/* Kernel types: only the fields read. */
typedef struct {
	u32 val;
} kuid_t;
typedef struct {
	u32 val;
} kgid_t;

struct qstr {
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct super_block {
	dev_t s_dev;
} __attribute__((preserve_access_index));

struct inode {
	umode_t i_mode;
	kuid_t i_uid;
	kgid_t i_gid;
	unsigned long i_ino;
	loff_t i_size;
	struct super_block *i_sb;
} __attribute__((preserve_access_index));

struct dentry {
	struct dentry *d_parent;
	struct qstr d_name;
	struct inode *d_inode;
	struct super_block *d_sb;
} __attribute__((preserve_access_index));

struct vfsmount {
	struct dentry *mnt_root;
} __attribute__((preserve_access_index));

/* fs/mount.h: the mount that embeds each vfsmount. */
struct mount {
	struct mount *mnt_parent;
	struct dentry *mnt_mountpoint;
	struct vfsmount mnt;
} __attribute__((preserve_access_index));

struct path {
	struct vfsmount *mnt;
	struct dentry *dentry;
} __attribute__((preserve_access_index));

struct file {
	struct path f_path;
	unsigned int f_flags;
	fmode_t f_mode;
} __attribute__((preserve_access_index));

struct mm_struct {
	struct file *exe_file;
} __attribute__((preserve_access_index));

struct fs_struct {
	struct path root;
	struct path pwd;
} __attribute__((preserve_access_index));

struct cred {
	kuid_t uid;
	kuid_t euid;
} __attribute__((preserve_access_index));

struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} __attribute__((preserve_access_index));

struct files_struct {
	struct fdtable *fdt;
} __attribute__((preserve_access_index));

/* arch/x86/include/asm/ptrace.h: the registers saved at syscall entry. */
struct pt_regs {
	unsigned long r10;
	unsigned long r8;
	unsigned long dx;
	unsigned long si;
	unsigned long di;
	unsigned long orig_ax;
} __attribute__((preserve_access_index));

struct open_how {
	u64 flags;
	u64 mode;
	u64 resolve;
};

/* arch/x86/include/asm/thread_info.h: status has TS_COMPAT during a
 * 32-bit (ia32) system call, whose numbers and registers differ. */
struct thread_info {
	u32 status;
} __attribute__((preserve_access_index));
#define TS_COMPAT 0x0002

struct task_struct {
	struct thread_info thread_info;
	struct mm_struct *mm;
	struct files_struct *files;
	pid_t pid;
	pid_t tgid;
	struct task_struct *real_parent;
	struct task_struct *group_leader;
	u64 start_boottime;
	const struct cred *cred;
	struct fs_struct *fs;
	char comm[16];
} __attribute__((preserve_access_index));

#endif
