// Package sensor is the eBPF process sensor: it reports every exec, every
// new process and every process exit on the machine, with what the kernel
// knows at that moment, so that a process that lives a millisecond is seen
// with its path and argv.
//
// # Requirements
//
// Linux >= 5.8 (BPF ring buffers; BTF-typed tracepoints need 5.5) built
// with BTF (CONFIG_DEBUG_INFO_BTF=y, which publishes
// /sys/kernel/btf/vmlinux), on amd64 or arm64 (any architecture whose
// kernel has BTF should do), and root, or CAP_BPF and CAP_PERFMON (plus
// CAP_SYS_RESOURCE before 5.11, where BPF memory counts against
// RLIMIT_MEMLOCK). Open returns an error wrapping ErrUnsupported,
// which says what is missing, otherwise; a caller then falls back to
// another source of process events.
//
// # How
//
// Three programs attach to the scheduler's tracepoints as BTF-typed
// tracepoints (tp_btf) and read the kernel's structures with CO-RE
// relocations, which the loader (github.com/cilium/ebpf) adjusts to the
// running kernel's BTF:
//
//   - sched_process_exec, after a successful execve or execveat, reads
//     the new image's argv from its memory, the executed file's path
//     (walking dentries and mounts up to the process's root, as d_path
//     does), the cwd, the credentials, the login uid, the controlling
//     tty, the start time, the cgroup, and the pid and mount namespaces;
//   - sched_process_fork reports a new process (not a new thread);
//   - sched_process_exit reports the exit of a thread-group leader, with
//     its wait status. A process whose leader ends before its other
//     threads is reported when the leader ends.
//
// The events reach user space through one BPF ring buffer shared by all
// CPUs (Options.RingBytes). The programs do not wake the reader for each
// event, which would cost more than the rest of a fork or exit program:
// the reader polls every Options.Wakeup (20 ms by default, sleeping on a
// Go timer), and every 1 ms while it finds the ring buffer more than a
// sixteenth full. On a 2-vCPU VM
// the three programs then take about 9 µs of kernel time per exec'd
// process (fork, exec and exit), against about 44 µs with a wakeup per
// event. When it is full an event is lost: the kernel
// counts it per CPU and kind, and Stats reports the sums. Nothing is lost
// silently. The largest exec event is about 12.5 KiB (see the Max*
// limits); a ring buffer of a few MiB holds thousands of ordinary ones.
//
// Event, Exec, Fork and Exit document each field; Flags mark truncated
// values, deleted files, memfd images, and an exec that replaced the image
// of a process that had exec'd already (ImageReplaced).
//
// # Concurrency and cost
//
// A Sensor starts no goroutine. Run delivers events in the caller's
// goroutine and decodes them without reflection: fork and exit events
// allocate nothing, an exec event allocates one string for its path, cwd,
// filename and argv, and its Args slice (BenchmarkDecode). Read is a
// convenience that costs a few allocations per call. Close interrupts Run
// and Read.
//
// # Building
//
// The C source is bpf/process.bpf.c, with bpf/kernel.h, a hand-written
// header of the few kernel types it reads (instead of a generated
// vmlinux.h). bpf2go (pinned by the tool line in go.mod) compiles it and
// generates process_bpfel.go and process_bpfeb.go, which embed the objects
// process_bpfel.o and process_bpfeb.o. All of them are committed, so that
// building needs no C compiler; .ci/bpf-gen-check regenerates them with
// Debian 12's clang-16 at a pinned version and fails on any difference.
//
// The tests that load the programs need root and kernel BTF, and skip
// with a message otherwise; CI runs them as root.
package sensor
