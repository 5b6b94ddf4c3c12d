package agent

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
)

// How the agent confines its collectors.
//
// Each collector talks to the broker over one end of a socketpair the
// agent makes for it and serves with server.ServeConn as
// CollectorIdentity(id); the collector inherits the other end as file
// descriptor 3. There is no token: nothing that connects to the socket can
// be authenticated as a collector, and a collector does not need the
// socket at all.
//
// When the agent runs as root, the collector also runs as an unprivileged
// user and group (Options.CollectorUID and CollectorGID, default 65534,
// "nobody", which every Linux system has), with no supplementary groups,
// with only the capabilities its kind needs as ambient capabilities, and
// with no_new_privs set (it sets it first thing in collector mode). So it
// cannot reach the socket (its directory is 0700 root), is not admitted
// by peer credentials if it connects anyway, cannot signal the agent, and
// cannot gain privileges by executing anything.
//
// Its capabilities are strong for reading: CAP_DAC_READ_SEARCH reads any
// file (/etc/shadow, the agent's keys) and CAP_SYS_PTRACE passes the
// ptrace access checks of /proc/<pid>/ of every process, the agent's
// included. What they would also allow, attaching to the agent, writing
// its memory and taking its descriptors, is refused by the
// seccomp filter collector mode installs on every thread before the
// collector runs (confineSyscalls: ptrace, process_vm_readv/writev,
// pidfd_getfd, opening any file for writing, /proc/<pid>/mem included, and
// the kernel interfaces that lead further, EPERM). A compromised
// collector keeps its own identity on its own connection, which the ACL
// confines, and read access to any file and to every process's /proc
// entries, the agent's memory included: /proc/<pid>/mem opened for
// reading is a read-only open the filter cannot tell from any other.
//
// When the agent is not root, it cannot change the collector's user: the
// collector runs as the agent's user, its connection is still the
// socketpair and confined by the ACL, but the process itself can connect
// to the socket as that user (an operator), signal the agent and read its
// memory through /proc; the seccomp filter still refuses ptrace and
// opening files for writing.

// DefaultCollectorUID and DefaultCollectorGID are the user and group a
// root agent runs its collectors as: nobody and nogroup.
const (
	DefaultCollectorUID = 65534
	DefaultCollectorGID = 65534
)

// Linux capability numbers (linux/capability.h).
const (
	capDACReadSearch = 2  // read any file and search any directory: /proc/<pid>/ files of others, executables to hash
	capSysPtrace     = 19 // ptrace-read access: /proc/<pid>/exe, cwd and the like of every process
	capNetAdmin      = 12 // join the netlink process connector's group and raise its receive buffer (SO_RCVBUFFORCE)
	capPerfmon       = 38 // with CAP_BPF: load and attach tracing programs (the eBPF process sensor)
	capBPF           = 39
)

// kindCaps are the capabilities each collector kind runs with when the
// agent is root: procmond reads every process's /proc entries, resolves
// its exe link and hashes the executable; with --source ebpf it also
// loads the eBPF process sensor, which needs CAP_BPF and CAP_PERFMON; with
// --source connector it subscribes to the netlink process connector, which
// needs CAP_NET_ADMIN; auto (the default) tries both, so it gets all three.
// With --source poll it gets none of them.
func kindCaps(kind string, args []string) []uintptr {
	if k, ok := kinds[kind]; ok {
		return k.caps(args)
	}
	return nil
}

// procmondCaps are procmond's capabilities (see kindCaps).
func procmondCaps(args []string) []uintptr {
	read := []uintptr{capDACReadSearch, capSysPtrace}
	switch procmondSource(args) {
	case "poll":
		return read
	case "ebpf":
		return append(read, capBPF, capPerfmon)
	case "connector":
		return append(read, capNetAdmin)
	}
	return append(read, capBPF, capPerfmon, capNetAdmin)
}

// procmondUsesBPF reports whether procmond with these args may open the
// eBPF sensor (--source ebpf or auto), and so needs the bpf call.
func procmondUsesBPF(args []string) bool {
	src := procmondSource(args)
	return src != "poll" && src != "connector"
}

// procmondSource returns the value of the last --source flag in procmond's
// args ("auto" when there is none), as its flag parsing would see it.
func procmondSource(args []string) string {
	src := "auto"
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			break
		}
		name, value, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "source" {
			continue
		}
		if !hasValue && i+1 < len(args) {
			i++
			value = args[i]
		}
		src = value
	}
	return src
}

// handover is what one collector process gets: its end of the socketpair
// (fd 3) and the binary to run (fd 4: run as /proc/self/fd/4, so that a
// binary in a directory the collector's user cannot search, such as go
// run's build directory, still runs), and, under a root agent, its user
// and capabilities.
type handover struct {
	conn  net.Conn   // the agent's end, for ServeConn
	files []*os.File // the child's: its end of the socketpair, the binary
	path  string     // what to execute
	cred  *syscall.Credential
	caps  []uintptr
}

// handover prepares a collector's start.
func (a *Agent) handover(spec CollectorSpec) (*handover, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("make the collector's connection: %w", err)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "agent-end"), os.NewFile(uintptr(fds[1]), "collector-end")
	nc, err := net.FileConn(mine)
	mine.Close()
	if err != nil {
		theirs.Close()
		return nil, fmt.Errorf("make the collector's connection: %w", err)
	}
	exe, err := os.Open(a.opts.Exe)
	if err != nil {
		nc.Close()
		theirs.Close()
		return nil, fmt.Errorf("open the collector's binary: %w", err)
	}
	h := &handover{conn: nc, files: []*os.File{theirs, exe}, path: "/proc/self/fd/4"}
	if os.Geteuid() == 0 {
		h.cred = &syscall.Credential{Uid: a.opts.CollectorUID, Gid: a.opts.CollectorGID, Groups: []uint32{}}
		h.caps = kindCaps(spec.Kind, spec.Args)
		if err := executableBy(exe, h.cred); err != nil {
			h.close()
			nc.Close()
			return nil, err
		}
	}
	return h, nil
}

// executableBy checks that the collector's user may execute the binary,
// so that a binary of mode 0700 fails with a message that says what to do
// rather than "permission denied".
func executableBy(exe *os.File, cred *syscall.Credential) error {
	fi, err := exe.Stat()
	if err != nil {
		return fmt.Errorf("the collector's binary: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	mode := fi.Mode().Perm()
	switch {
	case st.Uid == cred.Uid && mode&0o100 != 0, st.Gid == cred.Gid && mode&0o010 != 0, mode&0o001 != 0:
		return nil
	}
	return fmt.Errorf("the collectors run as uid %d, gid %d, which may not execute %s (mode %v): make it executable by others (chmod o+rx) or set collector_uid and collector_gid",
		cred.Uid, cred.Gid, exe.Name(), mode)
}

// close closes the child's descriptors in the agent, once the child has
// them.
func (h *handover) close() {
	for _, f := range h.files {
		f.Close()
	}
}

// confineCollector is what collector mode does first: no_new_privs on
// every thread, then the seccomp filter (confineSyscalls), which lets the
// collector call bpf only when allowBPF (procmond when its args ask for
// the eBPF sensor; the kernel-sensor collectors). The collector does not
// run if either fails.
func confineCollector(allowBPF bool) error {
	if err := noNewPrivs(); err != nil {
		return err
	}
	return confineSyscalls(allowBPF)
}

// noNewPrivs sets no_new_privs on every thread of this process: nothing
// it executes can gain privileges (setuid bits, file capabilities).
// Collector mode calls it first. The flag is per thread; where Go cannot
// set it on all threads at once (a binary linked with cgo), it sets it on
// this thread and executes this binary again from it: the new image's
// threads all inherit it.
func noNewPrivs() error {
	const prSetNoNewPrivs, prGetNoNewPrivs = 38, 39
	if v, _, errno := syscall.RawSyscall6(syscall.SYS_PRCTL, prGetNoNewPrivs, 0, 0, 0, 0, 0); errno == 0 && v == 1 {
		return nil // set before this image was executed: every thread has it
	}
	_, _, errno := syscall.AllThreadsSyscall(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0)
	switch errno {
	case 0:
		return nil
	case syscall.ENOTSUP: // cgo
	default:
		return fmt.Errorf("set no_new_privs: %w", errno)
	}
	runtime.LockOSThread() // for good: this thread executes the binary again
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_PRCTL, prSetNoNewPrivs, 1, 0, 0, 0, 0); errno != 0 {
		return fmt.Errorf("set no_new_privs: %w", errno)
	}
	if err := syscall.Exec("/proc/self/exe", os.Args, os.Environ()); err != nil {
		return fmt.Errorf("set no_new_privs: execute this binary again: %w", err)
	}
	return nil // not reached
}
