package sensor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Op is the file operation an Event reports.
type Op uint8

// The operations. Their values are those the BPF programs write.
const (
	// OpOpenWrite is an existing file opened for writing (open(2) with
	// O_WRONLY or O_RDWR, without O_TRUNC).
	OpOpenWrite Op = 1
	// OpCreate is a file created by open(2) with O_CREAT.
	OpCreate Op = 2
	// OpTruncate is open(2) with O_TRUNC of an existing file, or
	// truncate(2). ftruncate(2) is not reported: the file was opened for
	// writing first.
	OpTruncate Op = 3
	// OpUnlink is a name removed by unlink(2) (not rmdir).
	OpUnlink Op = 4
	// OpRename is rename(2): Path is the destination, OldPath the source.
	OpRename Op = 5
	// OpChmod is chmod(2), fchmod(2) or fchmodat(2): NewMode is the mode
	// requested.
	OpChmod Op = 6
	// OpChown is chown(2) and its variants: NewUID and NewGID, or
	// Unchanged.
	OpChown Op = 7
	// OpLink is link(2): Path is the new name, OldPath the existing file.
	OpLink Op = 8
	// OpSymlink is symlink(2): Path is the link, Target its contents.
	OpSymlink Op = 9
	// OpRead is a regular file opened for reading only.
	OpRead Op = 10
)

var opNames = [...]string{OpOpenWrite: "open_write", OpCreate: "create", OpTruncate: "truncate",
	OpUnlink: "unlink", OpRename: "rename", OpChmod: "chmod", OpChown: "chown", OpLink: "link",
	OpSymlink: "symlink", OpRead: "read"}

// String returns the operation's name as the collector's topics and
// FileOperation spell it in lower case ("open_write", "rename"), or
// "op(N)".
func (o Op) String() string {
	if int(o) < len(opNames) && opNames[o] != "" {
		return opNames[o]
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Flags qualify an Event's paths.
type Flags uint32

// The event flags.
const (
	// PathTruncated: Path had more than MaxPathComponents components or
	// MaxPathBytes bytes; it holds its leaf-most components.
	PathTruncated Flags = 1 << iota
	// OldPathTruncated: the same for OldPath.
	OldPathTruncated
	// TargetTruncated: the symlink target was longer than MaxTargetBytes.
	TargetTruncated
	// ExeTruncated: the same as PathTruncated for Exe.
	ExeTruncated
	// PathDetached: Path is not reachable from the process's root (a file
	// outside its chroot, or on a detached mount); it holds the components
	// up to where the walk ended.
	PathDetached
	// OldPathDetached: the same for OldPath.
	OldPathDetached
	// ExeDetached: the same for Exe (a memfd image: "/memfd:NAME").
	ExeDetached
	// RenameExchange: renameat2(RENAME_EXCHANGE) swapped Path and OldPath.
	RenameExchange
)

var flagNames = [...]string{"PathTruncated", "OldPathTruncated", "TargetTruncated", "ExeTruncated",
	"PathDetached", "OldPathDetached", "ExeDetached", "RenameExchange"}

// String returns the names of the flags set, joined by "|", "0" for none,
// and unknown bits in hexadecimal.
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

// Limits of what an event carries. The kernel side enforces them; a longer
// value is cut and flagged.
const (
	// MaxPathBytes bounds Path, OldPath and Exe: bytes of their
	// components, one separator each included.
	MaxPathBytes = 4096
	// MaxPathComponents bounds the components walked for each path, mount
	// points included.
	MaxPathComponents = 40
	// MaxTargetBytes bounds Target, its terminating NUL included.
	MaxTargetBytes = 1024
	// MaxWalk is how many parents the kernel filter walks up from a file to
	// find a watched directory: a file deeper than that below the nearest
	// watched directory is not seen.
	MaxWalk = 16
	// MaxNameBytes bounds a watched name (the last component of a
	// Watch.Path watched by name).
	MaxNameBytes = 63
)

// Unchanged is Event.NewUID or NewGID when chown left it as it was.
const Unchanged = 1<<32 - 1

// Event is one file operation on a watched file. The byte slices (Path,
// OldPath, Target, Exe, Comm) alias a buffer that Run reuses: copy what
// you keep (string(e.Path)).
type Event struct {
	// Op is the operation.
	Op Op
	// Match is the watch that matched: WatchWrites, or WatchReads for
	// OpRead (and OpLink of a read-watched file).
	Match WatchFlags
	// Flags qualify the paths.
	Flags Flags
	// Time is when the kernel saw it (CLOCK_BOOTTIME, converted to wall
	// time with the offset taken when the sensor opened).
	Time time.Time
	// PID is the acting process (tgid) in the initial pid namespace; TID
	// its thread; PPID its parent (real_parent's tgid).
	PID, TID, PPID uint32
	// UID and EUID are the acting thread's real and effective user ids.
	UID, EUID uint32
	// Start is the acting process's start time since boot (its leader's
	// start_boottime); with PID it identifies the process.
	Start time.Duration
	// CgroupID is the acting thread's cgroup v2 id.
	CgroupID uint64
	// Comm is the acting thread's name (task->comm, at most 15 bytes).
	Comm []byte
	// Path is the file's absolute path relative to the process's root
	// directory: for OpRename the destination, for OpLink the new name,
	// for OpSymlink the link.
	Path []byte
	// OldPath is the source of OpRename and the existing file of OpLink;
	// empty otherwise.
	OldPath []byte
	// Target is the contents of an OpSymlink's link; empty otherwise.
	Target []byte
	// Exe is the acting process's executable path (mm->exe_file), empty
	// for a kernel thread.
	Exe []byte
	// Dev and Ino identify the file (for OpRename and OpLink, the file
	// renamed or linked); both 0 for OpSymlink. Dev is the kernel's dev_t
	// (major<<20 | minor), not the stat(2) encoding.
	Dev uint32
	Ino uint64
	// Mode is the file's st_mode (type and permission bits) before the
	// operation; Size its size; OwnerUID and OwnerGID its owner.
	Mode               uint32
	Size               uint64
	OwnerUID, OwnerGID uint32
	// NewMode is what OpChmod asked for (the permission bits, 07777).
	NewMode uint32
	// NewUID and NewGID are what OpChown asked for, or Unchanged.
	NewUID, NewGID uint32
	// OpenFlags are the open(2) flags of OpOpenWrite, OpCreate, OpRead
	// and an OpTruncate by open(2).
	OpenFlags uint32
}

// SetUID reports whether an OpChmod sets the setuid bit.
func (e *Event) SetUID() bool { return e.Op == OpChmod && e.NewMode&0o4000 != 0 }

// SetGID reports whether an OpChmod sets the setgid bit.
func (e *Event) SetGID() bool { return e.Op == OpChmod && e.NewMode&0o2000 != 0 }

// errMalformed is returned by decode for a record that is not the layout of
// bpf/fs.bpf.c.
var errMalformed = errors.New("malformed sensor record")

// headerSize is the size of struct fs_event in bpf/fs.bpf.c.
const headerSize = 136

// Kernel-side event flags (F_* in bpf/fs.bpf.c) are Flags bit for bit.

var ne = binary.NativeEndian

// decoder turns ring-buffer records into Events without allocating: the
// paths are written into buf, which grows to the largest event once.
type decoder struct {
	wallOffset int64 // wall-clock ns minus CLOCK_BOOTTIME ns
	buf        []byte
}

// decode fills e from one record; e's slices alias d.buf and raw.
func (d *decoder) decode(raw []byte, e *Event) error {
	if len(raw) < headerSize {
		return fmt.Errorf("%w: %d bytes", errMalformed, len(raw))
	}
	var lens [6]int // path, rel, old, old rel, target, exe
	total := 0
	for i := range lens {
		lens[i] = int(ne.Uint16(raw[104+2*i:]))
		total += lens[i]
	}
	if headerSize+total > len(raw) {
		return fmt.Errorf("%w: sections of %d bytes in a record of %d", errMalformed, total, len(raw))
	}
	var secs [6][]byte
	data := raw[headerSize:]
	for i, n := range lens {
		secs[i], data = data[:n], data[n:]
	}
	path, rel, old, oldRel, target, exe := secs[0], secs[1], secs[2], secs[3], secs[4], secs[5]
	for _, sec := range [...][]byte{path, old, exe} {
		if len(sec) > 0 && sec[len(sec)-1] != 0 {
			return fmt.Errorf("%w: a path section does not end with NUL", errMalformed)
		}
	}
	rel, oldRel, target = cutNUL(rel), cutNUL(oldRel), cutNUL(target)
	comm := raw[116:132]
	if i := bytes.IndexByte(comm, 0); i >= 0 {
		comm = comm[:i]
	}

	// Each path takes at most its sections' sizes plus a separator and
	// "/", and the cleaning only shortens it.
	need := len(path) + len(rel) + len(old) + len(oldRel) + len(exe) + 8
	if cap(d.buf) < need {
		d.buf = make([]byte, 0, max(need, 512))
	}
	b := d.buf[:0]
	b = appendJoined(b, path, rel)
	pEnd := len(b)
	if len(old) > 0 || len(oldRel) > 0 {
		b = appendJoined(b, old, oldRel)
	}
	oEnd := len(b)
	b = appendPath(b, exe, false)
	d.buf = b
	op := ne.Uint32(raw[40:])
	if op < uint32(OpOpenWrite) || op > uint32(OpRead) {
		return fmt.Errorf("%w: op %d", errMalformed, op)
	}

	*e = Event{
		Op:        Op(op),
		Match:     WatchFlags(ne.Uint32(raw[100:])),
		Flags:     Flags(ne.Uint32(raw[96:])),
		Time:      time.Unix(0, d.wallOffset+int64(ne.Uint64(raw[0:]))),
		Start:     time.Duration(ne.Uint64(raw[8:])),
		CgroupID:  ne.Uint64(raw[16:]),
		Ino:       ne.Uint64(raw[24:]),
		Size:      ne.Uint64(raw[32:]),
		PID:       ne.Uint32(raw[44:]),
		TID:       ne.Uint32(raw[48:]),
		PPID:      ne.Uint32(raw[52:]),
		UID:       ne.Uint32(raw[56:]),
		EUID:      ne.Uint32(raw[60:]),
		Dev:       ne.Uint32(raw[64:]),
		Mode:      ne.Uint32(raw[68:]),
		OwnerUID:  ne.Uint32(raw[72:]),
		OwnerGID:  ne.Uint32(raw[76:]),
		NewMode:   ne.Uint32(raw[80:]),
		NewUID:    ne.Uint32(raw[84:]),
		NewGID:    ne.Uint32(raw[88:]),
		OpenFlags: ne.Uint32(raw[92:]),
		Comm:      comm,
		Path:      b[:pEnd:pEnd],
		OldPath:   b[pEnd:oEnd:oEnd],
		Exe:       b[oEnd:],
		Target:    target,
	}
	return nil
}

func cutNUL(b []byte) []byte {
	if n := len(b); n > 0 && b[n-1] == 0 {
		return b[:n-1]
	}
	return b
}

// appendJoined appends the path of a base directory's components (as
// appendPath) joined with rel, a path argument as the process gave it: rel
// alone when it is absolute, the base alone when rel is empty. The result
// is cleaned lexically (path.Clean: "//", "." and ".." resolved as text,
// symlinks not followed), without allocating.
func appendJoined(b, base, rel []byte) []byte {
	start := len(b)
	if len(rel) == 0 || rel[0] != '/' {
		b = appendPath(b, base, true)
	}
	if len(rel) > 0 {
		b = append(b, '/')
		b = append(b, rel...)
	}
	return cleanInPlace(b, start)
}

// cleanInPlace cleans the absolute path b[start:] lexically, as path.Clean,
// in place.
func cleanInPlace(b []byte, start int) []byte {
	p := b[start:]
	n := len(p)
	w := 1 // p[0] is '/'
	r := 1
	for r < n {
		switch {
		case p[r] == '/':
			r++
		case p[r] == '.' && (r+1 == n || p[r+1] == '/'):
			r++
		case p[r] == '.' && p[r+1] == '.' && (r+2 == n || p[r+2] == '/'):
			r += 2
			for w > 1 {
				w--
				if p[w] == '/' {
					break
				}
			}
		default:
			if w > 1 {
				p[w] = '/'
				w++
			}
			for r < n && p[r] != '/' {
				p[w] = p[r]
				w++
				r++
			}
		}
	}
	return b[:start+w]
}

// appendPath appends the components of sec, which the kernel wrote leaf
// first, each NUL-terminated (decode checked the last NUL), as an absolute
// path: "/" for none when root, nothing otherwise.
func appendPath(b, sec []byte, root bool) []byte {
	if len(sec) == 0 {
		if root {
			b = append(b, '/')
		}
		return b
	}
	end := len(sec) - 1 // the NUL after the root-most component
	for end >= 0 {
		start := end
		for start > 0 && sec[start-1] != 0 {
			start--
		}
		b = append(b, '/')
		b = append(b, sec[start:end]...)
		end = start - 1
	}
	return b
}

// Clone returns a copy of e whose byte slices are its own.
func (e *Event) Clone() Event {
	c := *e
	c.Comm = bytes.Clone(e.Comm)
	c.Path = bytes.Clone(e.Path)
	c.OldPath = bytes.Clone(e.OldPath)
	c.Target = bytes.Clone(e.Target)
	c.Exe = bytes.Clone(e.Exe)
	return c
}
