package sensor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Kind says which lifecycle step an Event reports.
type Kind uint8

// The kinds of Event. Their values are those the BPF programs write.
const (
	// KindExec is an execve or execveat that succeeded: the process
	// (Event.PID) now runs a new image, described by Event.Exec.
	KindExec Kind = 1
	// KindFork is a new process (not a thread): Event.PID created
	// Event.Fork.ChildPID.
	KindFork Kind = 2
	// KindExit is a process that ended: its thread-group leader exited.
	// Event.Exit has its exit code or signal.
	KindExit Kind = 3
)

// String returns "exec", "fork", "exit" or "kind(N)".
func (k Kind) String() string {
	switch k {
	case KindExec:
		return "exec"
	case KindFork:
		return "fork"
	case KindExit:
		return "exit"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Flags qualify an exec event's path, cwd and argv.
type Flags uint32

// The exec flags.
const (
	// ArgsTruncated: argv was longer than MaxArgsBytes, or had more than
	// Options.MaxArgs strings; Args holds the first of them, and its last
	// string may be cut.
	ArgsTruncated Flags = 1 << iota
	// PathTruncated: the executed file's path had more than
	// MaxPathComponents components or MaxPathBytes bytes; Path holds its
	// last components (the file and its nearest directories).
	PathTruncated
	// CwdTruncated: the same for Cwd.
	CwdTruncated
	// Deleted: the executed file had no name left in any directory when it
	// was executed (it was unlinked; d_path would append " (deleted)").
	// Path is the name it had.
	Deleted
	// MemFD: the executed file is a memfd_create(2) file; Path is
	// "/memfd:NAME" as in /proc/<pid>/exe, without " (deleted)".
	MemFD
	// Detached: the executed file is not reachable from the process's root
	// directory (a memfd or another pseudo file, or a file outside a chroot).
	Detached
	// CwdDeleted: the working directory had been removed.
	CwdDeleted
	// FilenameTruncated: Filename filled MaxFilenameBytes and may be cut.
	FilenameTruncated
	// ImageReplaced: the process had already exec'd since it was forked,
	// and this exec replaced that image (a shell's `exec cmd`), rather than
	// being the first exec of a new process (fork+exec). The kernel's
	// exec counters tell (task->self_exec_id against parent_exec_id). A
	// process cloned with CLONE_PARENT by a parent that had exec'd is
	// reported as ImageReplaced on its first exec (rare).
	ImageReplaced
)

var flagNames = [...]string{"ArgsTruncated", "PathTruncated", "CwdTruncated", "Deleted", "MemFD",
	"Detached", "CwdDeleted", "FilenameTruncated", "ImageReplaced"}

// String returns the names of the flags set, joined by "|" ("Deleted",
// "MemFD|Detached"), "0" for none, and unknown bits in hexadecimal.
func (f Flags) String() string {
	if f == 0 {
		return "0"
	}
	var b strings.Builder
	for i, name := range flagNames {
		if f&(1<<i) != 0 {
			if b.Len() > 0 {
				b.WriteByte('|')
			}
			b.WriteString(name)
			f &^= 1 << i
		}
	}
	if f != 0 {
		if b.Len() > 0 {
			b.WriteByte('|')
		}
		fmt.Fprintf(&b, "%#x", uint32(f))
	}
	return b.String()
}

// Limits of what an exec event carries. The kernel side enforces them; a
// longer value is cut and flagged.
const (
	// MaxArgsBytes is how many bytes of argv (NUL separators included) an
	// exec event carries.
	MaxArgsBytes = 4096
	// MaxPathBytes bounds the path and the cwd: bytes of their components,
	// one separator each included.
	MaxPathBytes = 4096
	// MaxPathComponents bounds the components walked for the path and the
	// cwd, mount points included.
	MaxPathComponents = 40
	// MaxFilenameBytes bounds Exec.Filename, its terminating NUL included.
	MaxFilenameBytes = 256
	// DefaultMaxArgs is Options.MaxArgs when it is 0.
	DefaultMaxArgs = 256
)

// NoLoginUID is Exec.LoginUID for a process that has none (a daemon started
// before any login, or a kernel without audit).
const NoLoginUID = 1<<32 - 1

// Exec is what an exec event carries. Its strings and Args are its own:
// they may be kept after the callback returns.
type Exec struct {
	// PPID is the parent's process id (real_parent's tgid).
	PPID uint32
	// OldTID is the thread that called execve; it differs from the PID when
	// a thread other than the leader exec'd.
	OldTID uint32
	// Path is the executed file's absolute path as the kernel resolved it,
	// relative to the process's root directory (symlinks followed; for a #!
	// script, the interpreter, as /proc/<pid>/exe shows). See Flags for
	// deleted and memfd files.
	Path string
	// Filename is the name execve was called with ("/bin/true", "./x",
	// "/dev/fd/3" for execveat with AT_EMPTY_PATH; the script for a #!
	// script).
	Filename string
	// Cwd is the working directory, relative to the process's root.
	Cwd string
	// Args is argv, argv[0] included, at most Options.MaxArgs strings and
	// MaxArgsBytes bytes (see ArgsTruncated).
	Args []string
	// ArgsBytes is the size of the process's whole argv in bytes, NULs
	// included, which exceeds what Args holds when it was truncated.
	ArgsBytes uint32
	// Flags qualify Path, Cwd, Filename and Args.
	Flags Flags
	// UID, EUID, GID and EGID are the real and effective ids after the exec
	// (a setuid image has EUID != UID).
	UID, EUID, GID, EGID uint32
	// LoginUID is the audit login uid, or NoLoginUID.
	LoginUID uint32
	// TTY is the controlling terminal's device number (major<<20 | minor,
	// as in the kernel's dev_t, not the stat(2) encoding), or 0 for none.
	TTY uint32
	// Start is the process's start time, as time since boot
	// (task->start_boottime, CLOCK_BOOTTIME). With the PID it identifies
	// the process.
	Start time.Duration
	// CgroupID is the cgroup v2 id (the inode number of its directory in
	// the cgroup2 file system).
	CgroupID uint64
	// PidNS and MntNS are the inode numbers of the process's pid and mount
	// namespaces, as in /proc/<pid>/ns/{pid,mnt}.
	PidNS, MntNS uint32
	// NSPID is the process id in its own pid namespace (equal to the PID in
	// the initial namespace).
	NSPID uint32
	// File identifies the executed file (the interpreter for a #! script)
	// as it was at the exec: a cache of hashes keyed by it needs no system
	// call to tell a file it has hashed.
	File FileID
	// HasMemory says VMBytes and RSSBytes were read.
	HasMemory bool
	// VMBytes is the new image's virtual memory size (mm->total_vm).
	VMBytes uint64
	// RSSBytes is its resident memory: file, anonymous and shared pages.
	// Since Linux 6.2 the kernel keeps these counts per CPU and folds them
	// in batches, so right after an exec this may be low by up to a batch
	// (32 pages or more) per CPU.
	RSSBytes uint64
}

// FileID identifies a file's content as the kernel saw it: its file
// system's device, its inode, size and modification time.
type FileID struct {
	// Dev is the file system's device number, in the kernel's encoding
	// (major<<20 | minor, not the stat(2) encoding): see StatDev.
	Dev uint32
	// Ino is the inode number.
	Ino uint64
	// Size is the size in bytes.
	Size int64
	// ModTime is the modification time in nanoseconds since the epoch.
	ModTime int64
}

// StatDev returns Dev in the encoding stat(2) reports as st_dev.
func (f FileID) StatDev() uint64 {
	major, minor := uint64(f.Dev>>20), uint64(f.Dev&(1<<20-1))
	return minor&0xff | major&0xfff<<8 | (minor&^0xff)<<12 | (major&^0xfff)<<32
}

// TTYMajor returns the major number of the controlling terminal.
func (x *Exec) TTYMajor() uint32 { return x.TTY >> 20 }

// TTYMinor returns the minor number of the controlling terminal.
func (x *Exec) TTYMinor() uint32 { return x.TTY & (1<<20 - 1) }

// Fork is what a fork event carries: Event.PID and Event.TID are the
// parent process and the thread that called fork, vfork or clone.
type Fork struct {
	// ChildPID is the new process's id.
	ChildPID uint32
	// ChildStart is its start time since boot.
	ChildStart time.Duration
}

// Exit is what an exit event carries.
type Exit struct {
	// Status is the raw wait status (task->exit_code): decode it with
	// Code, Signal and CoreDumped.
	Status uint32
	// Start is the process's start time since boot.
	Start time.Duration
}

// Code returns the exit code when the process exited (Signal() == 0).
func (x *Exit) Code() int { return int(x.Status>>8) & 0xff }

// Signal returns the signal that killed the process, or 0 if it exited.
func (x *Exit) Signal() int { return int(x.Status & 0x7f) }

// CoreDumped reports whether the signal dumped core.
func (x *Exit) CoreDumped() bool { return x.Status&0x80 != 0 }

// Event is one process lifecycle event. Exec, Fork and Exit hold the part
// of its Kind; the others are zero.
type Event struct {
	// Kind says which of Exec, Fork and Exit is set.
	Kind Kind
	// Time is when the kernel saw it (CLOCK_BOOTTIME, converted to wall
	// time with the offset taken when the sensor opened).
	Time time.Time
	// PID is the process id (tgid) in the initial pid namespace: the
	// process that exec'd or exited, or the parent of a fork.
	PID uint32
	// TID is the thread: the thread that called fork, the one that exited,
	// or the process's (new) leader after an exec.
	TID uint32
	// Exec is set for KindExec.
	Exec Exec
	// Fork is set for KindFork.
	Fork Fork
	// Exit is set for KindExit.
	Exit Exit
}

// errMalformed is returned by decode for a record that is not one of the
// layouts of bpf/process.bpf.c.
var errMalformed = errors.New("malformed sensor record")

// Record layouts of bpf/process.bpf.c (struct exec_event, fork_event,
// exit_event).
const (
	execHeaderSize = 152
	forkSize       = 32
	exitSize       = 32
)

// Kernel-side exec flags (F_* in bpf/process.bpf.c).
const (
	kArgsTrunc     = 0x01
	kPathTrunc     = 0x02
	kCwdTrunc      = 0x04
	kPathUnlinked  = 0x08
	kPathDetached  = 0x10
	kCwdUnlinked   = 0x20
	kFilenameTrunc = 0x40
	kImageReplaced = 0x80
	kMemory        = 0x100
)

// decoder turns ring-buffer records into Events. Its zero value is not
// usable: set maxArgs and wallOffset.
type decoder struct {
	maxArgs    int
	wallOffset int64 // wall-clock ns minus CLOCK_BOOTTIME ns
}

var ne = binary.NativeEndian

// pageSize converts the kernel's page counts to bytes.
var pageSize = uint64(os.Getpagesize())

// decode fills e from one record. It allocates only for an exec: one
// string holding the path, cwd, filename and argv, and the Args slice.
func (d *decoder) decode(raw []byte, e *Event) error {
	if len(raw) < 20 {
		return fmt.Errorf("%w: %d bytes", errMalformed, len(raw))
	}
	*e = Event{
		Kind: Kind(ne.Uint32(raw[8:])),
		Time: time.Unix(0, d.wallOffset+int64(ne.Uint64(raw[0:]))),
		PID:  ne.Uint32(raw[12:]),
		TID:  ne.Uint32(raw[16:]),
	}
	switch e.Kind {
	case KindExec:
		return d.decodeExec(raw, &e.Exec)
	case KindFork:
		if len(raw) < forkSize {
			return fmt.Errorf("%w: fork record of %d bytes", errMalformed, len(raw))
		}
		e.Fork = Fork{
			ChildPID:   ne.Uint32(raw[20:]),
			ChildStart: time.Duration(ne.Uint64(raw[24:])),
		}
	case KindExit:
		if len(raw) < exitSize {
			return fmt.Errorf("%w: exit record of %d bytes", errMalformed, len(raw))
		}
		e.Exit = Exit{
			Status: ne.Uint32(raw[20:]),
			Start:  time.Duration(ne.Uint64(raw[24:])),
		}
	default:
		return fmt.Errorf("%w: kind %d", errMalformed, uint32(e.Kind))
	}
	return nil
}

func (d *decoder) decodeExec(raw []byte, x *Exec) error {
	if len(raw) < execHeaderSize {
		return fmt.Errorf("%w: exec record of %d bytes", errMalformed, len(raw))
	}
	pathLen := int(ne.Uint16(raw[88:]))
	cwdLen := int(ne.Uint16(raw[90:]))
	fnLen := int(ne.Uint16(raw[92:]))
	argsLen := int(ne.Uint16(raw[94:]))
	if execHeaderSize+pathLen+cwdLen+fnLen+argsLen > len(raw) {
		return fmt.Errorf("%w: exec sections of %d bytes in a record of %d", errMalformed,
			pathLen+cwdLen+fnLen+argsLen, len(raw))
	}
	data := raw[execHeaderSize:]
	path := data[:pathLen]
	cwd := data[pathLen : pathLen+cwdLen]
	fn := data[pathLen+cwdLen : pathLen+cwdLen+fnLen]
	args := data[pathLen+cwdLen+fnLen : pathLen+cwdLen+fnLen+argsLen]
	if n := len(fn); n > 0 && fn[n-1] == 0 {
		fn = fn[:n-1]
	}
	if (pathLen > 0 && path[pathLen-1] != 0) || (cwdLen > 0 && cwd[cwdLen-1] != 0) {
		return fmt.Errorf("%w: a path section does not end with NUL", errMalformed)
	}
	kflags := ne.Uint32(raw[68:])

	*x = Exec{
		PPID:      ne.Uint32(raw[24:]),
		OldTID:    ne.Uint32(raw[20:]),
		UID:       ne.Uint32(raw[28:]),
		EUID:      ne.Uint32(raw[32:]),
		GID:       ne.Uint32(raw[36:]),
		EGID:      ne.Uint32(raw[40:]),
		LoginUID:  ne.Uint32(raw[44:]),
		PidNS:     ne.Uint32(raw[56:]),
		MntNS:     ne.Uint32(raw[60:]),
		NSPID:     ne.Uint32(raw[64:]),
		Start:     time.Duration(ne.Uint64(raw[72:])),
		CgroupID:  ne.Uint64(raw[80:]),
		ArgsBytes: ne.Uint32(raw[96:]),
		File: FileID{
			Ino:     ne.Uint64(raw[104:]),
			Size:    int64(ne.Uint64(raw[112:])),
			ModTime: int64(ne.Uint64(raw[120:]))*1e9 + int64(ne.Uint32(raw[128:])),
			Dev:     ne.Uint32(raw[132:]),
		},
	}
	if kflags&kMemory != 0 {
		x.HasMemory = true
		x.VMBytes = ne.Uint64(raw[136:]) * pageSize
		x.RSSBytes = ne.Uint64(raw[144:]) * pageSize
	}
	if major := ne.Uint32(raw[48:]); major != 0 {
		x.TTY = major<<20 | ne.Uint32(raw[52:])&(1<<20-1)
	}

	// One string for everything: the path and the cwd (each component
	// becomes "/" + name, so each takes its section's size, or 1 byte for
	// "/"), the filename and argv as they came.
	var b strings.Builder
	b.Grow(max(pathLen, 1) + max(cwdLen, 1) + len(fn) + len(args))
	writePath(&b, path)
	writePath(&b, cwd)
	b.Write(fn)
	b.Write(args)
	all := b.String()
	o := max(pathLen, 1)
	x.Path = all[:o]
	x.Cwd = all[o : o+max(cwdLen, 1)]
	o += max(cwdLen, 1)
	x.Filename = all[o : o+len(fn)]
	o += len(fn)
	argv := all[o:]

	var f Flags
	if kflags&kArgsTrunc != 0 {
		f |= ArgsTruncated
	}
	if kflags&kPathTrunc != 0 {
		f |= PathTruncated
	}
	if kflags&kCwdTrunc != 0 {
		f |= CwdTruncated
	}
	if kflags&kPathUnlinked != 0 {
		f |= Deleted
	}
	if kflags&kPathDetached != 0 {
		f |= Detached
		if strings.HasPrefix(x.Path, "/memfd:") && strings.Count(x.Path, "/") == 1 {
			f |= MemFD
		}
	}
	if kflags&kCwdUnlinked != 0 {
		f |= CwdDeleted
	}
	if kflags&kFilenameTrunc != 0 {
		f |= FilenameTruncated
	}
	if kflags&kImageReplaced != 0 {
		f |= ImageReplaced
	}

	// argv: NUL-terminated strings; the last one lacks its NUL when cut.
	n := strings.Count(argv, "\x00")
	if len(argv) > 0 && argv[len(argv)-1] != 0 {
		n++
	}
	if n > d.maxArgs {
		n = d.maxArgs
		f |= ArgsTruncated
	}
	if n > 0 {
		x.Args = make([]string, 0, n)
		for len(argv) > 0 && len(x.Args) < n {
			i := strings.IndexByte(argv, 0)
			if i < 0 {
				x.Args = append(x.Args, argv)
				break
			}
			x.Args = append(x.Args, argv[:i])
			argv = argv[i+1:]
		}
	}
	x.Flags = f
	return nil
}

// writePath writes the components of sec, which the kernel wrote leaf
// first, each NUL-terminated (decodeExec checked the last NUL), as an
// absolute path: "/" for none.
func writePath(b *strings.Builder, sec []byte) {
	if len(sec) == 0 {
		b.WriteByte('/')
		return
	}
	end := len(sec) - 1 // the NUL after the root-most component
	for end >= 0 {
		start := end
		for start > 0 && sec[start-1] != 0 {
			start--
		}
		b.WriteByte('/')
		b.Write(sec[start:end])
		end = start - 1
	}
}
