package process

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"syscall"
	"unsafe"
)

// The parsers of the /proc files the scanner re-reads. They work on the
// bytes of one read; parseStat and parseStatusIDs allocate nothing. The
// fuzz tests check them against github.com/prometheus/procfs.

// procStat is what the scanner uses of /proc/<pid>/stat.
type procStat struct {
	comm         []byte // a sub-slice of the buffer read
	ppid         int64
	ttyNr        uint64 // controlling terminal, encoded as the kernel's new_encode_dev; 0: none
	flags        uint64
	utime, stime uint64 // clock ticks
	starttime    uint64 // clock ticks after boot
	vsize        uint64 // bytes
	rss          int64  // pages
	// image holds addresses an exec changes (start and end of the code,
	// start of the stack, start and end of the arguments; the last two are
	// 0 on kernels before 3.5). When the kernel hides them from this
	// reader it shows "1 1 0 ... 0": the start of the stack is 0 then, as
	// for a process without memory.
	image [5]uint64
}

// pfKthread is the kernel-thread flag of the stat flags field.
const pfKthread = 0x00200000

// errMalformed: a /proc file that does not read as proc(5) describes it
// (the scanner then skips the process, or marks its record inaccessible).
var errMalformed = errors.New("process: malformed /proc file")

// parseStat parses a /proc/<pid>/stat line: "pid (comm) state ppid ...".
// comm may hold spaces and parentheses, so it ends at the last ')'. It
// needs at least the 28 fields every supported kernel writes.
func parseStat(b []byte) (procStat, error) {
	var st procStat
	open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || end < open {
		return st, errMalformed
	}
	st.comm = b[open+1 : end]
	// Fields after the comm, numbered as in proc(5).
	rest := b[end+1:]
	field := 2
	var err error
	for field < 49 {
		var tok []byte
		if tok, rest = nextField(rest); tok == nil {
			break
		}
		field++
		switch field {
		case 4:
			st.ppid, err = parseInt(tok)
		case 7:
			var nr int64 // printed as a signed int
			nr, err = parseInt(tok)
			st.ttyNr = uint64(uint32(nr))
		case 9:
			st.flags, err = parseUint(tok)
		case 14:
			st.utime, err = parseUint(tok)
		case 15:
			st.stime, err = parseUint(tok)
		case 22:
			st.starttime, err = parseUint(tok)
		case 23:
			st.vsize, err = parseUint(tok)
		case 24:
			st.rss, err = parseInt(tok)
		case 26, 27, 28:
			st.image[field-26], err = parseUint(tok)
		case 48, 49:
			st.image[field-45], err = parseUint(tok)
		}
		if err != nil {
			return st, err
		}
	}
	if field < 28 {
		return st, errMalformed
	}
	return st, nil
}

// nextField returns the first whitespace-separated token of b and what
// follows it; tok is nil when there is none.
func nextField(b []byte) (tok, rest []byte) {
	i := 0
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	j := i
	for j < len(b) && !isSpace(b[j]) {
		j++
	}
	if i == j {
		return nil, nil
	}
	return b[i:j], b[j:]
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\v' || c == '\f'
}

// parseStatusIDs returns the real uid and gid from /proc/<pid>/status
// (the first numbers of its "Uid:" and "Gid:" lines).
func parseStatusIDs(b []byte) (uid, gid uint32, err error) {
	u, err1 := statusField(b, "Uid:")
	g, err2 := statusField(b, "Gid:")
	if err := errors.Join(err1, err2); err != nil {
		return 0, 0, err
	}
	if u > 1<<32-1 || g > 1<<32-1 {
		return 0, 0, errMalformed
	}
	return uint32(u), uint32(g), nil
}

// parseNSPid returns the last number of /proc/<pid>/status's "NSpid:"
// line: the process id in its innermost pid namespace (Linux 4.1 and
// later). ok is false when there is no such line or it does not parse.
func parseNSPid(b []byte) (pid uint32, ok bool) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		v, found := bytes.CutPrefix(line, []byte("NSpid:"))
		if !found {
			continue
		}
		var last []byte
		for {
			var tok []byte
			if tok, v = nextField(v); tok == nil {
				break
			}
			last = tok
		}
		n, err := parseUint(last)
		if err != nil || n > 1<<32-1 {
			return 0, false
		}
		return uint32(n), true
	}
	return 0, false
}

// statusField returns the first number after key at the start of a line.
func statusField(b []byte, key string) (uint64, error) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		v, ok := bytes.CutPrefix(line, []byte(key))
		if !ok {
			continue
		}
		v = bytes.TrimLeft(v, " \t")
		if i := bytes.IndexAny(v, " \t"); i >= 0 {
			v = v[:i]
		}
		return parseUint(v)
	}
	return 0, errMalformed
}

// splitCmdline splits /proc/<pid>/cmdline (arguments each ended by a NUL)
// as procfs's Proc.CmdLine does: nothing for an empty file, otherwise
// trailing NULs dropped, then split on NUL.
func splitCmdline(b []byte) []string {
	if len(b) == 0 {
		return []string{}
	}
	return strings.Split(string(bytes.TrimRight(b, "\x00")), "\x00")
}

func parseUint(b []byte) (uint64, error) {
	if len(b) == 0 || len(b) > 20 {
		return 0, errMalformed
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, errMalformed
		}
		d := uint64(c - '0')
		if v > (1<<64-1-d)/10 {
			return 0, errMalformed
		}
		v = v*10 + d
	}
	return v, nil
}

func parseInt(b []byte) (int64, error) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	u, err := parseUint(b)
	if err != nil || u > 1<<63 || (!neg && u == 1<<63) {
		return 0, errMalformed
	}
	if neg {
		return -int64(u), nil
	}
	return int64(u), nil
}

// appendPIDs appends the numeric names in a getdents64 buffer (the pids
// in a /proc listing) to pids.
func appendPIDs(pids []uint32, buf []byte) []uint32 {
	for len(buf) >= 19 {
		// struct linux_dirent64: ino u64, off s64, reclen u16, type u8, name.
		reclen := int(binary.NativeEndian.Uint16(buf[16:18]))
		if reclen < 19 || reclen > len(buf) {
			break
		}
		name := buf[19:reclen]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		if pid, err := parseUint(name); err == nil && pid > 0 && pid < 1<<32 {
			pids = append(pids, uint32(pid))
		}
		buf = buf[reclen:]
	}
	return pids
}

// maxRead bounds what preadAll reads of one file: 1 MiB. Only a command
// line can be longer; it is cut there.
const maxRead = 1 << 20

// preadAll reads the file behind fd from offset 0 into buf, growing it as
// needed up to maxRead, and returns the bytes and the (maybe grown)
// buffer. A read that does not fill the buffer ends it: the /proc files
// the scanner reads are produced whole by one read.
func preadAll(fd int, buf []byte) ([]byte, []byte, error) {
	n := 0
	for {
		m, err := syscall.Pread(fd, buf[n:], int64(n))
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, buf, err
		}
		n += m
		if m == 0 || n < len(buf) || n >= maxRead {
			return buf[:n], buf, nil
		}
		buf = append(buf, make([]byte, len(buf))...)
	}
}

var exeName = [...]byte{'e', 'x', 'e', 0}

// readlinkExe reads the exe link of the process whose /proc directory is
// open as dirfd, into buf (which bounds its length), without the path
// lookup and allocation of syscall.Readlink.
func readlinkExe(dirfd int, buf []byte) (int, error) {
	for {
		n, _, e := syscall.Syscall6(syscall.SYS_READLINKAT, uintptr(dirfd), uintptr(unsafe.Pointer(&exeName[0])),
			uintptr(unsafe.Pointer(unsafe.SliceData(buf))), uintptr(len(buf)), 0, 0)
		switch e {
		case 0:
			return int(n), nil
		case syscall.EINTR:
			continue
		}
		return 0, e
	}
}
