/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kernel.h: the few kernel types, helpers and macros process.bpf.c uses,
 * written by hand instead of a generated vmlinux.h so that a reviewer can
 * read all of it.
 *
 * Every struct carries preserve_access_index: clang records each field
 * access as a CO-RE relocation, and the loader (cilium/ebpf) rewrites the
 * offsets against the running kernel's BTF (/sys/kernel/btf/vmlinux). Only
 * the names and types of the fields used here matter; their order and the
 * missing fields do not. A field inside an anonymous struct or union in
 * the kernel (file.f_path, dentry.d_name, qstr.len, mm_struct.arg_start)
 * is written here as a direct member: the relocation finds it by name.
 *
 * Helper numbers are the order of __BPF_FUNC_MAPPER in the UAPI
 * <linux/bpf.h>; they never change once released.
 */
#ifndef DAEMONEYE_SENSOR_KERNEL_H
#define DAEMONEYE_SENSOR_KERNEL_H

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
typedef _Bool bool;
#define true 1
#define false 0
#define NULL ((void *)0)

/* Map types and flags (UAPI enum bpf_map_type). */
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_RINGBUF 27

#define SEC(name) __attribute__((section(name), used))
#define __always_inline inline __attribute__((always_inline))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name

/* CO-RE: the address of a field, relocated against the kernel's BTF. */
#define CORE_ADDR(expr) __builtin_preserve_access_index(&(expr))
/* CO-RE: copy one kernel field into a local of the same type. */
#define CORE_READ_INTO(dst, expr) \
	bpf_probe_read_kernel(&(dst), sizeof(dst), CORE_ADDR(expr))
/* Whether the running kernel has the field (1) or not (0). */
#define CORE_FIELD_EXISTS(field) __builtin_preserve_field_info(field, 2)
/* The running kernel's size of a type. */
#define CORE_TYPE_SIZE(type) __builtin_preserve_type_info(*(typeof(type) *)0, 1)

/* Helpers (UAPI <linux/bpf.h>, __BPF_FUNC_MAPPER order). */
static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static u64 (*bpf_get_current_cgroup_id)(void) = (void *)80;
static long (*bpf_probe_read_user)(void *dst, u32 size, const void *unsafe_ptr) = (void *)112;
static long (*bpf_probe_read_kernel)(void *dst, u32 size, const void *unsafe_ptr) = (void *)113;
static long (*bpf_probe_read_kernel_str)(void *dst, u32 size, const void *unsafe_ptr) = (void *)115;
static u64 (*bpf_ktime_get_boot_ns)(void) = (void *)125;
static long (*bpf_ringbuf_output)(void *ringbuf, void *data, u64 size, u64 flags) = (void *)130;
static void *(*bpf_ringbuf_reserve)(void *ringbuf, u64 size, u64 flags) = (void *)131;
static void (*bpf_ringbuf_submit)(void *data, u64 flags) = (void *)132;
static u64 (*bpf_ringbuf_query)(void *ringbuf, u64 flags) = (void *)134;

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
	u32 len;
	const unsigned char *name;
} __attribute__((preserve_access_index));

struct hlist_bl_node {
	struct hlist_bl_node **pprev;
} __attribute__((preserve_access_index));

struct dentry {
	struct hlist_bl_node d_hash;
	struct dentry *d_parent;
	struct qstr d_name;
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

struct super_block {
	u32 s_dev; /* dev_t: major << 20 | minor */
} __attribute__((preserve_access_index));

struct timespec64 {
	s64 tv_sec;
	long tv_nsec;
} __attribute__((preserve_access_index));

/* The modification time moved twice: i_mtime (a timespec64) until 6.6,
 * __i_mtime in 6.7 to 6.10, i_mtime_sec and i_mtime_nsec since 6.11. The
 * ___flavour suffixes name the older layouts; CO-RE ignores them. */
struct inode {
	struct super_block *i_sb;
	unsigned long i_ino;
	s64 i_size;
	s64 i_mtime_sec;
	u32 i_mtime_nsec;
} __attribute__((preserve_access_index));

struct inode___v67 {
	struct timespec64 __i_mtime;
} __attribute__((preserve_access_index));

struct inode___v66 {
	struct timespec64 i_mtime;
} __attribute__((preserve_access_index));

struct file {
	struct path f_path;
	struct inode *f_inode;
} __attribute__((preserve_access_index));

struct linux_binprm {
	struct file *file;
	const char *filename;
} __attribute__((preserve_access_index));

/* The resident-page counters: percpu_counters since 6.2 (count is their
 * folded sum, without the per-CPU deltas), atomics before. */
struct percpu_counter {
	s64 count;
} __attribute__((preserve_access_index));

struct mm_struct {
	unsigned long arg_start;
	unsigned long arg_end;
	unsigned long total_vm;
	struct percpu_counter rss_stat[4];
} __attribute__((preserve_access_index));

struct mm_rss_stat___v61 {
	long count[4];
} __attribute__((preserve_access_index));

struct mm_struct___v61 {
	struct mm_rss_stat___v61 rss_stat;
} __attribute__((preserve_access_index));

struct fs_struct {
	struct path root;
	struct path pwd;
} __attribute__((preserve_access_index));

struct cred {
	kuid_t uid;
	kgid_t gid;
	kuid_t euid;
	kgid_t egid;
} __attribute__((preserve_access_index));

struct tty_driver {
	int major;
	int minor_start;
} __attribute__((preserve_access_index));

struct tty_struct {
	int index;
	struct tty_driver *driver;
} __attribute__((preserve_access_index));

struct signal_struct {
	struct tty_struct *tty;
} __attribute__((preserve_access_index));

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct pid_namespace {
	struct ns_common ns;
} __attribute__((preserve_access_index));

struct mnt_namespace {
	struct ns_common ns;
} __attribute__((preserve_access_index));

struct nsproxy {
	struct mnt_namespace *mnt_ns;
} __attribute__((preserve_access_index));

struct upid {
	int nr;
	struct pid_namespace *ns;
} __attribute__((preserve_access_index));

struct pid {
	unsigned int level;
	struct upid numbers[1];
} __attribute__((preserve_access_index));

struct task_struct {
	struct mm_struct *mm;
	int exit_code;
	pid_t pid;
	pid_t tgid;
	struct task_struct *real_parent;
	struct pid *thread_pid;
	u64 start_boottime;
	const struct cred *cred;
	struct fs_struct *fs;
	struct nsproxy *nsproxy;
	struct signal_struct *signal;
	kuid_t loginuid;
	/* Bumped by each exec (u64 since Linux 5.7); a fork copies it and sets
	 * parent_exec_id to the parent's self_exec_id. */
	u64 parent_exec_id;
	u64 self_exec_id;
} __attribute__((preserve_access_index));

#endif
