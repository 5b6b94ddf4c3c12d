/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * kernel.h: the few kernel types, helpers and macros network.bpf.c uses,
 * written by hand instead of a generated vmlinux.h so that a reviewer can
 * read all of it (as collector/process/sensor/bpf/kernel.h).
 *
 * Every kernel struct carries preserve_access_index: clang records each
 * field access as a CO-RE relocation, and the loader (cilium/ebpf)
 * rewrites the offsets against the running kernel's BTF. Only the names
 * and types of the fields used here matter. A field inside an anonymous
 * struct or union in the kernel (sock_common.skc_daddr, skc_dport,
 * skc_num) is written here as a direct member: the relocation finds it by
 * name. The socket address structs are UAPI and have fixed layouts.
 *
 * Helper numbers are the order of __BPF_FUNC_MAPPER in the UAPI
 * <linux/bpf.h>; they never change once released.
 */
#ifndef DAEMONEYE_NETSENSOR_KERNEL_H
#define DAEMONEYE_NETSENSOR_KERNEL_H

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
typedef _Bool bool;
#define true 1
#define false 0
#define NULL ((void *)0)

/* Map types (UAPI enum bpf_map_type). */
#define BPF_MAP_TYPE_PERCPU_ARRAY 6
#define BPF_MAP_TYPE_HASH 1
#define BPF_MAP_TYPE_LRU_HASH 9
#define BPF_MAP_TYPE_RINGBUF 27

/* bpf_map_update_elem flags. */
#define BPF_ANY 0
#define BPF_NOEXIST 1

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
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, u64 flags) = (void *)2;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
static u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
static u64 (*bpf_get_current_uid_gid)(void) = (void *)15;
static long (*bpf_get_current_comm)(void *buf, u32 size) = (void *)16;
static u64 (*bpf_get_current_cgroup_id)(void) = (void *)80;
static long (*bpf_probe_read_kernel)(void *dst, u32 size, const void *unsafe_ptr) = (void *)113;
static u64 (*bpf_ktime_get_boot_ns)(void) = (void *)125;
static void *(*bpf_ringbuf_reserve)(void *ringbuf, u64 size, u64 flags) = (void *)131;
static void (*bpf_ringbuf_submit)(void *data, u64 flags) = (void *)132;
static u64 (*bpf_ringbuf_query)(void *ringbuf, u64 flags) = (void *)134;
static u64 (*bpf_get_socket_cookie)(void *sk) = (void *)46;
static long (*bpf_probe_read_user)(void *dst, u32 size, const void *unsafe_ptr) = (void *)112;
static struct task_struct *(*bpf_get_current_task_btf)(void) = (void *)158;
static struct pt_regs *(*bpf_task_pt_regs)(struct task_struct *task) = (void *)175;

/* Ring-buffer flags (UAPI). */
#define BPF_RB_NO_WAKEUP (1ULL << 0)
#define BPF_RB_FORCE_WAKEUP (1ULL << 1)
#define BPF_RB_AVAIL_DATA 0

/* Address families and protocols (UAPI). */
#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define IPPROTO_UDP 17
#define ECONNABORTED 103

/* TCP states (include/net/tcp_states.h). */
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3
#define TCP_CLOSE 7
#define TCP_LISTEN 10

/* UAPI socket addresses: fixed layouts, ports and addresses big-endian. */
struct sockaddr_in {
	u16 sin_family;
	u16 sin_port;
	u32 sin_addr;
	u8 pad[8];
};

struct sockaddr_in6 {
	u16 sin6_family;
	u16 sin6_port;
	u32 sin6_flowinfo;
	u8 sin6_addr[16];
	u32 sin6_scope_id;
};

/* Kernel types: only the fields read. */
struct in6_addr {
	u8 s6_addr[16];
} __attribute__((preserve_access_index));

struct ns_common {
	unsigned int inum;
} __attribute__((preserve_access_index));

struct net {
	struct ns_common ns;
} __attribute__((preserve_access_index));

typedef struct {
	struct net *net;
} possible_net_t;

struct sock_common {
	u32 skc_daddr;          /* __be32 */
	u32 skc_rcv_saddr;      /* __be32 */
	u16 skc_dport;          /* __be16 */
	u16 skc_num;            /* host order */
	unsigned short skc_family;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
	possible_net_t skc_net;
} __attribute__((preserve_access_index));

/* sk_protocol is a u16 since Linux 5.6 (a bit field before). */
struct sock {
	struct sock_common __sk_common;
	u16 sk_protocol;
	int sk_err;
} __attribute__((preserve_access_index));

/* UAPI struct msghdr as user space passes it to sendmsg(2). */
struct user_msghdr {
	void *msg_name;
	int msg_namelen;
};

/* x86-64's saved user registers: the system call's number and arguments.
 * Other architectures lack these fields; the programs read them only when
 * Go set the system call numbers (on amd64). */
struct pt_regs {
	unsigned long r9;
	unsigned long r8;
	unsigned long si;
	unsigned long orig_ax;
} __attribute__((preserve_access_index));

struct task_struct {
	u64 start_boottime;
} __attribute__((preserve_access_index));

#endif
