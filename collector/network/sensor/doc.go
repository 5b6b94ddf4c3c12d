// Package sensor is the eBPF network sensor: it reports outbound TCP
// connects, inbound TCP connections, new listening sockets and the first
// send of each UDP socket, IPv4 and IPv6, with the process context of the
// call: pid, thread, uid, gid, comm, cgroup id and the process's start
// time (which, with the pid, keys a cache of what /proc says of it).
//
// # Requirements
//
// Linux >= 6.3 (the sock:sock_send_length tracepoint; BTF-typed
// tracepoints need 5.5, ring buffers 5.8) built with BTF
// (/sys/kernel/btf/vmlinux), and root, or CAP_BPF and CAP_PERFMON. Open
// returns an error wrapping ErrUnsupported, which says what is needed,
// otherwise. The destination of an unconnected UDP send (sendto) is read
// from the system call's arguments on amd64 only; elsewhere it is zero
// for such a send.
//
// # Attach points, and why
//
// Two BTF-typed tracepoints (tp_btf), read with CO-RE:
//
//   - sock:inet_sock_set_state, the TCP state machine, as Cilium's and
//     bcc's tcplife and tcpconnect tools (and Tetragon's socket tracking)
//     use it: CLOSE->SYN_SENT is connect(2) in the caller's context (who
//     called is remembered by socket cookie); SYN_SENT->ESTABLISHED or
//     ->CLOSE ends the handshake and is reported then, when the kernel has
//     chosen the local port, with the result; CLOSE->LISTEN is listen(2)
//     (who called is remembered by network namespace and port);
//     SYN_RECV->ESTABLISHED is an inbound connection ready for accept(2),
//     reported with the listener's caller.
//   - sock:sock_send_length, every send on a socket in the sender's
//     context: for UDP only, the first send of each socket (an LRU map of
//     socket cookies; cookies are never reused, so closed sockets need no
//     cleanup and simply age out).
//
// Tetragon attaches kprobes to tcp_connect, inet_csk_accept and
// udp_sendmsg, and Falco's modern probe to the system call tracepoints.
// Neither fits here: this kernel has no kprobes (CONFIG_KPROBES is off),
// and it refuses BPF trampolines (fentry, fexit and BPF LSM programs fail
// to load with EPERM), so the functions cannot be hooked; and the system
// call tracepoints would run a program on every system call of the
// machine (a file-heavy workload's cost, the budget fsmond needs),
// where these two run only on TCP state changes and socket sends.
// Tracepoints are also a stable interface, where kernel functions change
// (inet_csk_accept's arguments changed in 6.10).
//
// What follows from them: a connect is reported when its handshake ends
// (at once on loopback; after the timeout for a peer that does not
// answer), an accept when the connection is queued for accept(2), with
// the context of the thread that called listen(2), not the one that will
// call accept(2) (the same process, unless it handed the socket to
// another); a UDP connect(2), which sends nothing, is seen at the
// socket's first send. Event and Kind document each field.
//
// The events reach user space through one BPF ring buffer shared by all
// CPUs (Options.RingBytes), which the reader polls every Options.Wakeup,
// as the process sensor's. When it is full an event is lost: the kernel
// counts it per CPU and kind, and Stats reports the sums.
//
// # Concurrency and cost
//
// A Sensor starts no goroutine. Run delivers events in the caller's
// goroutine and decodes them without allocating (an Event holds no
// pointer). Read is a convenience that costs a few allocations per call.
// Close interrupts Run and Read.
//
// # Building
//
// The C source is bpf/network.bpf.c, with bpf/kernel.h, a hand-written
// header of the few kernel types it reads. bpf2go (pinned by the tool line
// in go.mod) compiles it into network_bpfel.o and network_bpfeb.o with
// their Go loaders, all committed; .ci/bpf-gen-check regenerates them with
// the pinned clang-16 and fails on any difference.
//
// The tests that load the programs need root and kernel BTF, and skip
// with a message otherwise.
package sensor
