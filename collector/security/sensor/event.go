package sensor

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"time"
)

// Kind says what an Event reports. Its values are those the BPF programs
// write.
type Kind uint8

// The kinds of Event.
const (
	// KindPtrace is a PTRACE_ATTACH or PTRACE_SEIZE (before the kernel's
	// permission check, so refused attempts are seen too), or a write to
	// an attached tracee (PTRACE_POKETEXT, POKEDATA, POKEUSR, SETREGS,
	// SETREGSET). Event.Ptrace.
	KindPtrace Kind = 1
	// KindModule is a kernel module load: finit_module(2) (the module's
	// file name) or init_module(2) (no name), before the module is parsed.
	// Event.Module.
	KindModule Kind = 2
	// KindCredentials is a change of a task's uids, gids or capabilities
	// (setuid family, setgid family, capset, a setuid or file-capability
	// exec). Event.Creds.
	KindCredentials Kind = 3
	// KindMemfd is a memfd_create(2) call. Event.Memfd.
	KindMemfd Kind = 4
	// KindBPF is a BPF program load that passed the verifier, by a process
	// not excluded. Event.BPF.
	KindBPF Kind = 5
	// KindMount is a mount(2) or umount2(2). Event.Mount.
	KindMount Kind = 6
	// KindNamespace is a setns(2) or unshare(2) call. Event.Namespace.
	KindNamespace Kind = 7
	// KindProcMem is a write to another process's /proc/<pid>/mem.
	// Event.ProcMem.
	KindProcMem Kind = 8
	// KindMax is the largest Kind.
	KindMax = KindProcMem
)

var kindNames = [...]string{"", "ptrace", "module", "credentials", "memfd", "bpf", "mount", "namespace", "procmem"}

// String returns the kind's topic suffix ("ptrace", "module",
// "credentials", "memfd", "bpf", "mount", "namespace", "procmem") or
// "kind(N)".
func (k Kind) String() string {
	if k >= 1 && k <= KindMax {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Flags qualify an event.
type Flags uint32

// The flags.
const (
	// NameTruncated: Memfd.Name or Module.Name was cut.
	NameTruncated Flags = 1 << iota
	// SourceTruncated: Mount.Source was cut.
	SourceTruncated
	// TargetTruncated: Mount.Target was cut.
	TargetTruncated
	// BindOverProcPID: a bind mount whose target, as given, is
	// /proc/<digits> or below it: the way to hide a process from ps. Set
	// by the decoder.
	BindOverProcPID
)

// Limits of what an event carries; longer values are cut and flagged.
const (
	// MaxTargetBytes bounds Mount.Target, NUL included.
	MaxTargetBytes = 1024
	// MaxSourceBytes bounds Mount.Source, NUL included.
	MaxSourceBytes = 256
	// MaxFSTypeBytes bounds Mount.FSType, NUL included.
	MaxFSTypeBytes = 64
	// MaxMemfdNameBytes bounds Memfd.Name, NUL included.
	MaxMemfdNameBytes = 256
	// MaxModuleNameBytes bounds Module.Name, NUL included.
	MaxModuleNameBytes = 64
)

// The ptrace requests reported (UAPI <linux/ptrace.h>).
const (
	PtracePokeText  = 4
	PtracePokeData  = 5
	PtracePokeUser  = 6
	PtraceSetRegs   = 13
	PtraceAttach    = 16
	PtraceSetRegSet = 0x4205
	PtraceSeize     = 0x4206
)

// Ptrace is what a KindPtrace event carries.
type Ptrace struct {
	// Request is the ptrace(2) request (PtraceAttach, PtraceSeize,
	// PtracePokeData, ...).
	Request uint64
	// Addr is the request's addr argument (the address poked).
	Addr uint64
	// TargetPID is the pid argument: the tracee's thread id as the caller's
	// pid namespace numbers it.
	TargetPID uint32
}

// Syscall names the system call an event reports, where a kind has more
// than one. The values are those security.bpf.c writes.
type Syscall uint32

// The system calls.
const (
	SysPtrace      Syscall = 1
	SysInitModule  Syscall = 2
	SysFinitModule Syscall = 3
	SysSetuid      Syscall = 4
	SysSetgid      Syscall = 5
	SysSetreuid    Syscall = 6
	SysSetregid    Syscall = 7
	SysSetresuid   Syscall = 8
	SysSetresgid   Syscall = 9
	SysSetfsuid    Syscall = 10
	SysSetfsgid    Syscall = 11
	SysCapset      Syscall = 12
	SysMemfdCreate Syscall = 13
	SysBPF         Syscall = 14
	SysMount       Syscall = 15
	SysUmount2     Syscall = 16
	SysSetns       Syscall = 17
	SysUnshare     Syscall = 18
	SysOpen        Syscall = 19
	SysOpenat      Syscall = 20
	SysOpenat2     Syscall = 21
	SysWrite       Syscall = 22
	SysPwrite64    Syscall = 23
	SysWritev      Syscall = 24
	SysPwritev     Syscall = 25
	SysPwritev2    Syscall = 26
	SysClose       Syscall = 27
	sysMax                 = SysClose
)

var syscallNames = [...]string{"", "ptrace", "init_module", "finit_module", "setuid", "setgid", "setreuid",
	"setregid", "setresuid", "setresgid", "setfsuid", "setfsgid", "capset", "memfd_create", "bpf", "mount",
	"umount2", "setns", "unshare", "open", "openat", "openat2", "write", "pwrite64", "writev", "pwritev", "pwritev2",
	"close"}

// String returns the system call's name ("setresuid") or "syscall(N)".
func (c Syscall) String() string {
	if c >= 1 && c <= sysMax {
		return syscallNames[c]
	}
	return fmt.Sprintf("syscall(%d)", uint32(c))
}

// Module is what a KindModule event carries.
type Module struct {
	// Syscall is SysInitModule or SysFinitModule.
	Syscall Syscall
	// FD is finit_module's file descriptor, -1 for init_module.
	FD int32
	// Name is the module file's name for finit_module, empty for
	// init_module. It aliases the record: valid only during the Run
	// callback.
	Name []byte
}

// Cred are the ids and capability sets compared for a credential change.
type Cred struct {
	UID, EUID, GID, EGID uint32
	// CapEffective and CapPermitted are capability bit sets (bit n is
	// capability n); 0 on kernels before 6.3, whose sets are not read.
	CapEffective, CapPermitted uint64
}

// Creds is what a KindCredentials event carries.
type Creds struct {
	// Syscall is SysSetuid .. SysCapset.
	Syscall  Syscall
	Old, New Cred
}

// Memfd is what a KindMemfd event carries.
type Memfd struct {
	// Flags are memfd_create's flags (MFD_CLOEXEC, MFD_ALLOW_SEALING, ...).
	Flags uint32
	// Name is the name given, without the "memfd:" prefix; it aliases the
	// record: valid only during the Run callback.
	Name []byte
}

// BPFLoad is what a KindBPF event carries.
type BPFLoad struct {
	// ProgType is the program's enum bpf_prog_type.
	ProgType uint32
	// Name is the program's name (up to 15 bytes); it aliases the record.
	Name []byte
}

// MsBind is mount(2)'s MS_BIND flag.
const MsBind = 0x1000

// Mount is what a KindMount event carries. Its byte slices alias the
// record: valid only during the Run callback.
type Mount struct {
	// Syscall is SysMount or SysUmount2.
	Syscall Syscall
	// Flags are mount(2)'s mountflags (MS_BIND, MS_REMOUNT, ...) or
	// umount2(2)'s flags.
	Flags uint64
	// Source is mount's source as given (a device, or the path for a bind
	// mount), empty for an unmount.
	Source []byte
	// FSType is mount's file system type as given, empty for an unmount
	// and for bind mounts.
	FSType []byte
	// Target is the mount point as given (relative to the caller's cwd if
	// it does not start with "/").
	Target []byte
}

// Namespace is what a KindNamespace event carries.
type Namespace struct {
	// Syscall is SysSetns or SysUnshare.
	Syscall Syscall
	// FD is setns's file descriptor, -1 for unshare.
	FD int32
	// Flags are setns's nstype or unshare's flags (CLONE_NEW*).
	Flags uint64
}

// ProcMem is what a KindProcMem event carries: a successful open for
// writing of another process's /proc/<pid>/mem (Syscall SysOpen, SysOpenat
// or SysOpenat2), or a write through the descriptor such an open returned
// (SysWrite, SysPwrite64, SysWritev, SysPwritev, SysPwritev2), by the
// process that opened it, until it closes it.
type ProcMem struct {
	// Syscall is the open or write call.
	Syscall Syscall
	// TargetPID is the process whose memory file was opened (the initial
	// pid namespace's number).
	TargetPID uint32
	// FD is the file descriptor the open returned.
	FD int32
	// OpenFlags are the open's flags (O_WRONLY or O_RDWR, ...).
	OpenFlags uint64
	// Count is the byte count write or pwrite64 asked for (0 otherwise;
	// Event.Result is what was written).
	Count uint64
	// Pos is the offset (the target's address) of pwrite64, pwritev and
	// pwritev2, -1 otherwise.
	Pos int64
}

// Event is one security event. Run reuses it and its byte slices alias the
// record: copy what is kept past the callback. Only the member named after
// Kind is set.
type Event struct {
	Kind Kind
	// Time is when the kernel saw the event (the boot clock converted to
	// wall time at Open).
	Time time.Time
	// BootNS is the event's time in the kernel's boot clock, ns.
	BootNS uint64
	// PID and TID are the caller's process (tgid) and thread ids.
	PID, TID uint32
	// UID and EUID are the caller's real and effective uids (for
	// KindCredentials, the new ones).
	UID, EUID uint32
	Flags     Flags
	// CgroupID is the caller's cgroup v2 id.
	CgroupID uint64
	// Start is the caller's process start time in the boot clock (ns),
	// which with PID names a process uniquely.
	Start uint64
	// Comm is the caller thread's name (up to 15 bytes).
	Comm []byte
	// Result is the system call's return value (a negative errno on
	// failure). BPF events are only reported on success.
	Result int64

	Ptrace    Ptrace
	Module    Module
	Creds     Creds
	Memfd     Memfd
	BPF       BPFLoad
	Mount     Mount
	Namespace Namespace
	ProcMem   ProcMem
}

// Record sizes and offsets; security.bpf.c defines them.
const (
	headerSize  = 72
	ptraceSize  = 96
	moduleSize  = 152
	credsSize   = 144
	memfdSize   = 336
	bpfSize     = 96
	mountSize   = 1440
	nsSize      = 88
	procmemSize = 112
	mountSource = 96
	mountFSType = mountSource + MaxSourceBytes
	mountTarget = mountFSType + MaxFSTypeBytes
	moduleName  = 88
	memfdName   = 80
	bpfName     = 80
	commOffset  = 48
	commSize    = 16
	kernelFlags = NameTruncated | SourceTruncated | TargetTruncated
)

var sizes = [...]int{0, ptraceSize, moduleSize, credsSize, memfdSize, bpfSize, mountSize, nsSize, procmemSize}

var ne = binary.NativeEndian

// decoder turns records into Events without allocating.
type decoder struct {
	wallOffset int64 // CLOCK_REALTIME - CLOCK_BOOTTIME at Open, ns
}

// cstr returns b[:n] up to its first NUL; n is the length the kernel
// reported, NUL included (0: empty).
func cstr(b []byte, n int) ([]byte, error) {
	if n > len(b) {
		return nil, fmt.Errorf("%w: string length %d over %d", errMalformed, n, len(b))
	}
	b = b[:n]
	if i := bytes.IndexByte(b, 0); i >= 0 {
		return b[:i], nil
	}
	return b, nil // cut: the kernel filled the buffer
}

// decode fills e from raw, a record as the BPF programs write it.
func (d *decoder) decode(raw []byte, e *Event) error {
	if len(raw) < headerSize {
		return fmt.Errorf("%w: %d bytes", errMalformed, len(raw))
	}
	kind := ne.Uint32(raw[8:])
	if kind == 0 || kind > uint32(KindMax) {
		return fmt.Errorf("%w: kind %d", errMalformed, kind)
	}
	k := Kind(kind)
	if len(raw) != sizes[k] {
		return fmt.Errorf("%w: %s record of %d bytes, want %d", errMalformed, k, len(raw), sizes[k])
	}
	e.Kind = k
	e.BootNS = ne.Uint64(raw[0:])
	e.Time = time.Unix(0, int64(e.BootNS)+d.wallOffset)
	e.PID = ne.Uint32(raw[12:])
	e.TID = ne.Uint32(raw[16:])
	e.UID = ne.Uint32(raw[20:])
	e.EUID = ne.Uint32(raw[24:])
	e.Flags = Flags(ne.Uint32(raw[28:])) & kernelFlags
	e.CgroupID = ne.Uint64(raw[32:])
	e.Start = ne.Uint64(raw[40:])
	e.Comm, _ = cstr(raw[commOffset:commOffset+commSize], commSize)
	e.Result = int64(ne.Uint64(raw[64:]))
	var err error
	switch k {
	case KindPtrace:
		e.Ptrace = Ptrace{Request: ne.Uint64(raw[72:]), Addr: ne.Uint64(raw[80:]), TargetPID: ne.Uint32(raw[88:])}
	case KindModule:
		e.Module.Syscall = Syscall(ne.Uint32(raw[72:]))
		e.Module.FD = int32(ne.Uint32(raw[76:]))
		e.Module.Name, err = cstr(raw[moduleName:moduleName+MaxModuleNameBytes], int(ne.Uint32(raw[80:])))
	case KindCredentials:
		e.Creds = Creds{Syscall: Syscall(ne.Uint32(raw[72:])), Old: cred(raw[80:]), New: cred(raw[112:])}
	case KindMemfd:
		e.Memfd.Flags = ne.Uint32(raw[72:])
		e.Memfd.Name, err = cstr(raw[memfdName:memfdName+MaxMemfdNameBytes], int(ne.Uint32(raw[76:])))
	case KindBPF:
		e.BPF.ProgType = ne.Uint32(raw[72:])
		e.BPF.Name, _ = cstr(raw[bpfName:bpfName+16], 16)
	case KindMount:
		err = decodeMount(raw, e)
	case KindNamespace:
		e.Namespace = Namespace{Syscall: Syscall(ne.Uint32(raw[72:])), FD: int32(ne.Uint32(raw[76:])), Flags: ne.Uint64(raw[80:])}
	case KindProcMem:
		e.ProcMem = ProcMem{TargetPID: ne.Uint32(raw[72:]), FD: int32(ne.Uint32(raw[76:])), OpenFlags: ne.Uint64(raw[80:]),
			Syscall: Syscall(ne.Uint32(raw[88:])), Count: ne.Uint64(raw[96:]), Pos: int64(ne.Uint64(raw[104:]))}
	}
	return err
}

// cred decodes a struct cred_ids.
func cred(b []byte) Cred {
	return Cred{UID: ne.Uint32(b[0:]), EUID: ne.Uint32(b[4:]), GID: ne.Uint32(b[8:]), EGID: ne.Uint32(b[12:]),
		CapEffective: ne.Uint64(b[16:]), CapPermitted: ne.Uint64(b[24:])}
}

func decodeMount(raw []byte, e *Event) error {
	m := &e.Mount
	m.Syscall = Syscall(ne.Uint32(raw[72:]))
	m.Flags = ne.Uint64(raw[80:])
	var err error
	if m.Source, err = cstr(raw[mountSource:mountSource+MaxSourceBytes], int(ne.Uint16(raw[88:]))); err != nil {
		return err
	}
	if m.FSType, err = cstr(raw[mountFSType:mountFSType+MaxFSTypeBytes], int(ne.Uint16(raw[90:]))); err != nil {
		return err
	}
	if m.Target, err = cstr(raw[mountTarget:mountTarget+MaxTargetBytes], int(ne.Uint16(raw[92:]))); err != nil {
		return err
	}
	if m.Syscall == SysMount && m.Flags&MsBind != 0 && BelowProcPID(m.Target) {
		e.Flags |= BindOverProcPID
	}
	return nil
}

// BelowProcPID reports whether the path p is /proc/<digits> or below it
// (after removing repeated and trailing slashes and "." components).
func BelowProcPID(p []byte) bool {
	// Walk the components: "proc", then digits.
	i := 0
	next := func() []byte {
		for {
			for i < len(p) && p[i] == '/' {
				i++
			}
			j := i
			for j < len(p) && p[j] != '/' {
				j++
			}
			c := p[i:j]
			i = j
			if len(c) == 1 && c[0] == '.' {
				continue
			}
			return c
		}
	}
	if len(p) == 0 || p[0] != '/' || string(next()) != "proc" {
		return false
	}
	c := next()
	if len(c) == 0 {
		return false
	}
	for _, b := range c {
		if b < '0' || b > '9' {
			return false
		}
	}
	return true
}
