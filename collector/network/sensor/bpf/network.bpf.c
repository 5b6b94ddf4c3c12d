// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
//
// network.bpf.c: the eBPF network sensor. Two BTF-typed tracepoint
// programs (tp_btf, Linux >= 5.5; sock_send_length needs >= 6.3, the ring
// buffer >= 5.8) report into one BPF ring buffer:
//
//   - sock:inet_sock_set_state, TCP only:
//       CLOSE -> SYN_SENT (in connect(2), the caller's context): the
//         caller is remembered in `connecting`, by socket cookie;
//       SYN_SENT -> ESTABLISHED or CLOSE (the handshake's end): a connect
//         event, with the remembered caller, the ports and addresses the
//         kernel chose, and the result (0, or -sk_err);
//       CLOSE -> LISTEN (in listen(2)): a listen event; the caller is
//         remembered in `listeners` by network namespace and port;
//       LISTEN -> CLOSE: forgotten;
//       SYN_RECV -> ESTABLISHED (an inbound connection queued for
//         accept(2)): an accept event with the listener's caller;
//   - sock:sock_send_length, UDP only (every send of a socket, in the
//     sender's context): the first send of each socket, found by its
//     cookie in the `udp_seen` LRU map. The destination of an unconnected
//     send is read from the system call's arguments (sendto, sendmsg,
//     sendmmsg) on amd64; a connected socket's from the socket.
//
// Socket cookies are never reused, so a closed socket needs no cleanup:
// its entry ages out of the LRU maps. The layout of struct net_event is
// decoded by hand in ../event.go: change both together; the live tests
// check every field.

#include "kernel.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define KIND_CONNECT 1
#define KIND_ACCEPT 2
#define KIND_LISTEN 3
#define KIND_UDP_SEND 4
#define KIND_MAX 4

#define COMM_LEN 16

struct net_event {
	u64 time;       // 0: bpf_ktime_get_boot_ns
	u32 kind;       // 8
	u32 pid;        // 12: tgid
	u32 tid;        // 16
	u32 uid;        // 20
	u32 gid;        // 24
	s32 result;     // 28: connect's result, listen's 0, send's return
	u64 cgroup;     // 32
	u64 start;      // 40: the process's start_boottime
	u64 cookie;     // 48: the socket's cookie
	u16 family;     // 56
	u16 protocol;   // 58
	u16 lport;      // 60: host order
	u16 rport;      // 62: host order
	u8 laddr[16];   // 64: IPv4 in the first 4 bytes
	u8 raddr[16];   // 80
	char comm[COMM_LEN]; // 96
	// 112
};

// The calling task, remembered for an event that completes later.
struct caller {
	u64 start;
	u64 cgroup;
	u32 pid, tid, uid, gid;
	char comm[COMM_LEN];
};

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

// TCP sockets in SYN_SENT: who called connect(2), by socket cookie.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 8192);
	__type(key, u64);
	__type(value, struct caller);
} connecting SEC(".maps");

// Listening TCP sockets: who called listen(2), by netns inode << 16 | port.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, u64);
	__type(value, struct caller);
} listeners SEC(".maps");

// UDP sockets that have been reported, by socket cookie (max_entries
// replaced by Options.UDPSockets at load).
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, u64);
	__type(value, u8);
} udp_seen SEC(".maps");

// As in the process sensor: with wakeup_bytes > 0 (set at load from
// Options.Wakeup) the programs do not wake the reader, which polls, unless
// that many bytes wait unread.
const volatile u64 wakeup_bytes = 0;

// The system call numbers of sendto, sendmsg and sendmmsg, set at load on
// amd64 (whose struct pt_regs kernel.h describes); 0 elsewhere: the
// destination of an unconnected UDP send is then not read.
const volatile u64 nr_sendto = 0;
const volatile u64 nr_sendmsg = 0;
const volatile u64 nr_sendmmsg = 0;

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

static __always_inline void current_caller(struct caller *c)
{
	u64 id = bpf_get_current_pid_tgid();
	u64 ug = bpf_get_current_uid_gid();
	c->pid = id >> 32;
	c->tid = (u32)id;
	c->uid = (u32)ug;
	c->gid = ug >> 32;
	c->cgroup = bpf_get_current_cgroup_id();
	struct task_struct *task = bpf_get_current_task_btf();
	c->start = 0;
	CORE_READ_INTO(c->start, task->start_boottime);
	if (bpf_get_current_comm(c->comm, sizeof(c->comm)))
		__builtin_memset(c->comm, 0, sizeof(c->comm));
}

// emit writes an event of kind for sk, with the caller c (NULL: none
// known) and result.
static __always_inline void emit(u32 kind, struct sock *sk, u64 cookie, struct caller *c, s32 result)
{
	struct net_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_lost(kind);
		return;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->time = bpf_ktime_get_boot_ns();
	e->kind = kind;
	e->result = result;
	e->cookie = cookie;
	if (c) {
		e->pid = c->pid;
		e->tid = c->tid;
		e->uid = c->uid;
		e->gid = c->gid;
		e->cgroup = c->cgroup;
		e->start = c->start;
		__builtin_memcpy(e->comm, c->comm, COMM_LEN);
	}
	u16 family = 0, dport = 0;
	CORE_READ_INTO(family, sk->__sk_common.skc_family);
	CORE_READ_INTO(e->protocol, sk->sk_protocol);
	CORE_READ_INTO(e->lport, sk->__sk_common.skc_num);
	CORE_READ_INTO(dport, sk->__sk_common.skc_dport);
	e->family = family;
	e->rport = __builtin_bswap16(dport);
	if (family == AF_INET6) {
		bpf_probe_read_kernel(e->laddr, 16, CORE_ADDR(sk->__sk_common.skc_v6_rcv_saddr));
		bpf_probe_read_kernel(e->raddr, 16, CORE_ADDR(sk->__sk_common.skc_v6_daddr));
	} else {
		bpf_probe_read_kernel(e->laddr, 4, CORE_ADDR(sk->__sk_common.skc_rcv_saddr));
		bpf_probe_read_kernel(e->raddr, 4, CORE_ADDR(sk->__sk_common.skc_daddr));
	}
	bpf_ringbuf_submit(e, wakeup_flags());
}

static __always_inline u64 listener_key(struct sock *sk)
{
	struct net *net = NULL;
	unsigned int inum = 0;
	u16 port = 0;
	CORE_READ_INTO(net, sk->__sk_common.skc_net.net);
	CORE_READ_INTO(inum, net->ns.inum);
	CORE_READ_INTO(port, sk->__sk_common.skc_num);
	return (u64)inum << 16 | port;
}

SEC("tp_btf/inet_sock_set_state")
int inet_sock_set_state(u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	int oldstate = (int)ctx[1];
	int newstate = (int)ctx[2];
	u16 proto = 0, family = 0;

	CORE_READ_INTO(proto, sk->sk_protocol);
	CORE_READ_INTO(family, sk->__sk_common.skc_family);
	if (proto != IPPROTO_TCP || (family != AF_INET && family != AF_INET6))
		return 0;

	if (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) {
		struct caller c = {};
		current_caller(&c);
		u64 cookie = bpf_get_socket_cookie(sk);
		bpf_map_update_elem(&connecting, &cookie, &c, BPF_ANY);
		return 0;
	}
	if (oldstate == TCP_SYN_SENT && (newstate == TCP_ESTABLISHED || newstate == TCP_CLOSE)) {
		u64 cookie = bpf_get_socket_cookie(sk);
		struct caller *c = bpf_map_lookup_elem(&connecting, &cookie);
		if (!c)
			return 0; // connect(2) was called before the sensor opened
		s32 result = 0;
		if (newstate == TCP_CLOSE) {
			int err = 0;
			CORE_READ_INTO(err, sk->sk_err);
			result = err ? -err : -ECONNABORTED;
		}
		emit(KIND_CONNECT, sk, cookie, c, result);
		bpf_map_delete_elem(&connecting, &cookie);
		return 0;
	}
	if (newstate == TCP_LISTEN) {
		struct caller c = {};
		current_caller(&c);
		u64 key = listener_key(sk);
		bpf_map_update_elem(&listeners, &key, &c, BPF_ANY);
		emit(KIND_LISTEN, sk, bpf_get_socket_cookie(sk), &c, 0);
		return 0;
	}
	// (A new connection's socket is cloned from the listener's and goes
	// from LISTEN to SYN_RECV: not the listener closing.)
	if (oldstate == TCP_LISTEN && newstate == TCP_CLOSE) {
		u64 key = listener_key(sk);
		bpf_map_delete_elem(&listeners, &key);
		return 0;
	}
	if (oldstate == TCP_SYN_RECV && newstate == TCP_ESTABLISHED) {
		u64 key = listener_key(sk);
		struct caller *c = bpf_map_lookup_elem(&listeners, &key);
		emit(KIND_ACCEPT, sk, bpf_get_socket_cookie(sk), c, 0);
	}
	return 0;
}

// read_dest reads the destination of the current sendto, sendmsg or
// sendmmsg (its first message) from user memory into e; false when there
// is none or it cannot be read.
static __always_inline bool read_dest(struct net_event *e, u16 family)
{
	if (!nr_sendto)
		return false;
	struct task_struct *task = bpf_get_current_task_btf();
	struct pt_regs *regs = bpf_task_pt_regs(task);
	u64 nr = 0, si = 0, r8 = 0, r9 = 0;
	CORE_READ_INTO(nr, regs->orig_ax);
	CORE_READ_INTO(si, regs->si);
	CORE_READ_INTO(r8, regs->r8);
	CORE_READ_INTO(r9, regs->r9);
	const void *name = NULL;
	int len = 0;
	if (nr == nr_sendto) {
		name = (const void *)r8;
		len = (int)r9;
	} else if (nr == nr_sendmsg || nr == nr_sendmmsg) {
		struct user_msghdr m = {};
		if (bpf_probe_read_user(&m, sizeof(m), (const void *)si))
			return false;
		name = m.msg_name;
		len = m.msg_namelen;
	}
	if (!name)
		return false;
	if (family == AF_INET6) {
		struct sockaddr_in6 sa6 = {};
		if (len < (int)sizeof(sa6) || bpf_probe_read_user(&sa6, sizeof(sa6), name) || sa6.sin6_family != AF_INET6)
			return false;
		e->rport = __builtin_bswap16(sa6.sin6_port);
		__builtin_memcpy(e->raddr, sa6.sin6_addr, 16);
		return true;
	}
	struct sockaddr_in sa = {};
	if (len < (int)sizeof(sa) || bpf_probe_read_user(&sa, sizeof(sa), name) || sa.sin_family != AF_INET)
		return false;
	e->rport = __builtin_bswap16(sa.sin_port);
	__builtin_memset(e->raddr, 0, 16);
	__builtin_memcpy(e->raddr, &sa.sin_addr, 4);
	return true;
}

SEC("tp_btf/sock_send_length")
int sock_send_length(u64 *ctx)
{
	struct sock *sk = (struct sock *)ctx[0];
	int ret = (int)ctx[1];
	u16 proto = 0, family = 0;

	if (!sk)
		return 0;
	CORE_READ_INTO(proto, sk->sk_protocol);
	if (proto != IPPROTO_UDP)
		return 0;
	CORE_READ_INTO(family, sk->__sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	u64 cookie = bpf_get_socket_cookie(sk);
	u8 one = 1;
	if (bpf_map_update_elem(&udp_seen, &cookie, &one, BPF_NOEXIST))
		return 0; // seen already

	struct net_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e) {
		count_lost(KIND_UDP_SEND);
		bpf_map_delete_elem(&udp_seen, &cookie); // report the next send
		return 0;
	}
	struct caller c = {};
	current_caller(&c);
	__builtin_memset(e, 0, sizeof(*e));
	e->time = bpf_ktime_get_boot_ns();
	e->kind = KIND_UDP_SEND;
	e->result = ret;
	e->cookie = cookie;
	e->pid = c.pid;
	e->tid = c.tid;
	e->uid = c.uid;
	e->gid = c.gid;
	e->cgroup = c.cgroup;
	e->start = c.start;
	__builtin_memcpy(e->comm, c.comm, COMM_LEN);
	e->family = family;
	e->protocol = proto;
	CORE_READ_INTO(e->lport, sk->__sk_common.skc_num);
	if (family == AF_INET6)
		bpf_probe_read_kernel(e->laddr, 16, CORE_ADDR(sk->__sk_common.skc_v6_rcv_saddr));
	else
		bpf_probe_read_kernel(e->laddr, 4, CORE_ADDR(sk->__sk_common.skc_rcv_saddr));
	if (!read_dest(e, family)) {
		u16 dport = 0;
		CORE_READ_INTO(dport, sk->__sk_common.skc_dport);
		e->rport = __builtin_bswap16(dport);
		if (family == AF_INET6)
			bpf_probe_read_kernel(e->raddr, 16, CORE_ADDR(sk->__sk_common.skc_v6_daddr));
		else
			bpf_probe_read_kernel(e->raddr, 4, CORE_ADDR(sk->__sk_common.skc_daddr));
	}
	bpf_ringbuf_submit(e, wakeup_flags());
	return 0;
}
