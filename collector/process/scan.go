package process

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// userHZ is the kernel's clock tick for /proc times (USER_HZ), 100 on
// every Linux architecture Go supports.
const userHZ = 100

// Key identifies a process across pid reuse: its pid and its start time
// in clock ticks after boot.
type Key struct {
	PID   uint32
	Start uint64
}

// Scanner reads the processes from /proc. It keeps what it needs between
// scans: CPU times for percentages, user names, executable hashes, the
// previous record of every process (whose unchanged parts the next record
// shares), and, for up to MaxTracked processes, open descriptors on their
// stat, status and cmdline files. Those files are produced anew by every
// read, so a scan re-reads each with one pread instead of an open, a read
// and a close (procfs's way, three times the system calls, which dominate
// the cost of a scan). A process whose executable link did not change
// keeps its file checks and hash without a stat.
//
// A Scanner is not safe for concurrent use; the records it returns are
// never modified afterwards and may be read from any goroutine. Close
// releases its descriptors.
type Scanner struct {
	root       string
	dirfd      int // the proc root: getdents and openat
	bootTime   time.Time
	pageSize   uint64
	hashes     *HashCache // nil: no hashing
	users      map[uint32]string
	procs      map[uint32]*tracked // by pid
	kept       int                 // processes with descriptors kept open
	maxTracked int
	gen        uint64
	pids       []uint32
	dents, buf []byte
	rootID     [2]uint64         // this process's root directory (device, inode)
	mntNS      [2]uint64         // and mount namespace
	rootOK     bool              // both known
	cgroupRoot string            // the cgroup2 mount, "" if none
	cgroupIDs  map[string]uint64 // cgroup ids by path, for one scan (a cgroup may be made anew)
}

// tracked is what a Scanner remembers of one process.
type tracked struct {
	key     Key
	fds     [4]int    // stat, status, cmdline, the directory; -1: not kept open
	owner   [2]uint32 // the directory's owner at the last status read
	image   [5]uint64 // procStat.image at the last full read
	imageID [2]uint64 // device and inode of the running image; imageOK if known
	imageOK bool
	dir     string // "<pid>/", for openat
	exe     string // "<root>/<pid>/exe"
	gen     uint64 // the scan that last saw it
	ticks   uint64 // utime+stime at the last scan
	at      time.Time
	link    string // the exe link at the last scan
	onDisk  string // where to look its path up (see checkPath)
	linkErr error
	rawCmd  []byte
	ttyNr   uint64                    // stat's tty_nr behind rec.Tty
	rec     *eventbusv1.ProcessRecord // the last record
}

const (
	fileStat = iota
	fileStatus
	fileCmdline
	fileDir
)

var fileNames = [4]string{"stat", "status", "cmdline", "."}

// What a scan reads again of a process it already knows, besides stat and
// the exe link (every scan):
//
//   - status (uid, gid), unless the owner of its /proc directory (the
//     effective uid and gid, or root's when the process is not dumpable,
//     as after a setuid) is what it was and equals the recorded real uid
//     and gid; and every statusRefresh scans, which bounds how long a
//     root process that changes only its real uid goes unseen;
//   - cmdline, when an exec may have happened (the name, or the code,
//     stack or argument addresses in stat changed, or the kernel hides
//     them), and every cmdlineRefresh scans, which bounds how long a
//     command line rewritten in place goes unseen;
//   - the running image's identity and hash, when an exec may have
//     happened or the link changed;
//   - whether the executable's path still names the running image (a
//     bind mount over it, or a new file where it was), every pathRefresh
//     scans.
//
// The periodic reads are spread over the processes by pid.
const (
	statusRefresh  = 32
	cmdlineRefresh = 16
	pathRefresh    = 4
)

// due reports whether this scan is a process's turn for a read done every
// n scans; slot spreads the different reads over different scans.
func (s *Scanner) due(t *tracked, n, slot uint64) bool {
	return (s.gen+uint64(t.key.PID)+slot)%n == 0
}

// ScannerOptions configures a Scanner. The zero value reads /proc and
// hashes nothing.
type ScannerOptions struct {
	// ProcRoot is the proc filesystem's mount point. Default "/proc".
	ProcRoot string
	// Hashes, when set, computes executable hashes through this cache.
	Hashes *HashCache
	// MaxTracked bounds the processes whose files stay open between
	// scans (four descriptors each). Default 4096, and never more than a
	// quarter of the descriptors the process may open (RLIMIT_NOFILE less
	// 256). Processes beyond it are read with open, read, close. Negative:
	// none.
	MaxTracked int
}

// NewScanner returns a Scanner of the proc filesystem.
func NewScanner(opts ScannerOptions) (*Scanner, error) {
	if opts.ProcRoot == "" {
		opts.ProcRoot = procfs.DefaultMountPoint
	}
	pfs, err := procfs.NewFS(opts.ProcRoot)
	if err != nil {
		return nil, fmt.Errorf("process: open %s: %w", opts.ProcRoot, err)
	}
	st, err := pfs.Stat()
	if err != nil {
		return nil, fmt.Errorf("process: read the boot time from %s/stat: %w", opts.ProcRoot, err)
	}
	switch {
	case opts.MaxTracked == 0:
		opts.MaxTracked = 4096
	case opts.MaxTracked < 0:
		opts.MaxTracked = 0
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil && lim.Cur < 1<<31 {
		opts.MaxTracked = max(0, min(opts.MaxTracked, (int(lim.Cur)-256)/4))
	}
	dirfd, err := syscall.Open(opts.ProcRoot, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("process: open %s: %w", opts.ProcRoot, err)
	}
	s := &Scanner{
		root: opts.ProcRoot, dirfd: dirfd, bootTime: time.Unix(int64(st.BootTime), 0), pageSize: uint64(os.Getpagesize()),
		hashes: opts.Hashes, users: map[uint32]string{}, procs: map[uint32]*tracked{}, maxTracked: opts.MaxTracked,
		dents: make([]byte, 32<<10), buf: make([]byte, 8<<10),
	}
	s.rootID, s.mntNS = statID("/"), statID(opts.ProcRoot+"/self/ns/mnt")
	s.cgroupRoot = cgroup2Root()
	s.rootOK = s.rootID != [2]uint64{} && s.mntNS != [2]uint64{}
	return s, nil
}

// statID returns the device and inode of the file at path, zero if it
// cannot be read.
func statID(path string) [2]uint64 {
	var st syscall.Stat_t
	if syscall.Stat(path, &st) != nil {
		return [2]uint64{}
	}
	return [2]uint64{uint64(st.Dev), st.Ino}
}

// Close releases the Scanner's descriptors. A Scan after Close fails.
func (s *Scanner) Close() error {
	if s.dirfd < 0 {
		return nil
	}
	for pid, t := range s.procs {
		s.forget(t)
		delete(s.procs, pid)
	}
	err := syscall.Close(s.dirfd)
	s.dirfd = -1
	return err
}

// Scan reads every process. Processes that vanish while being read are
// skipped; fields that cannot be read (another user's process without
// root) are left unset and the record is marked not accessible. now
// stamps the records (collection_time) and measures CPU use since the
// previous scan.
func (s *Scanner) Scan(now time.Time) (map[Key]*eventbusv1.ProcessRecord, error) {
	if s.dirfd < 0 {
		return nil, fmt.Errorf("process: scan %s: the scanner is closed", s.root)
	}
	if err := s.listPIDs(); err != nil {
		return nil, fmt.Errorf("process: list %s: %w", s.root, err)
	}
	s.gen++
	clear(s.cgroupIDs)
	out := make(map[Key]*eventbusv1.ProcessRecord, len(s.pids))
	stamp := timestamppb.New(now)
	for _, pid := range s.pids {
		if t := s.read(pid, now); t != nil {
			t.rec.CollectionTime = stamp
			out[t.key] = t.rec
		}
	}
	for pid, t := range s.procs {
		if t.gen != s.gen {
			s.forget(t)
			delete(s.procs, pid)
		}
	}
	return out, nil
}

func (s *Scanner) listPIDs() error {
	if _, err := syscall.Seek(s.dirfd, 0, io.SeekStart); err != nil {
		return err
	}
	s.pids = s.pids[:0]
	for {
		n, err := syscall.Getdents(s.dirfd, s.dents)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return err
		}
		if n <= 0 {
			return nil
		}
		s.pids = appendPIDs(s.pids, s.dents[:n])
	}
}

// read reads one process into its tracked.rec, or returns nil if it is
// gone.
func (s *Scanner) read(pid uint32, now time.Time) *tracked {
	t := s.procs[pid]
	var st procStat
	var err error
	if t != nil {
		var b []byte
		if b, err = s.readFile(t, fileStat); err == nil {
			st, err = parseStat(b)
		}
		if err != nil || st.starttime != t.key.Start {
			s.forget(t) // gone, or its pid was reused: start over
			delete(s.procs, pid)
			t = nil
		}
	}
	if t == nil {
		t = s.track(pid)
		b, err := s.readFile(t, fileStat)
		if err == nil {
			st, err = parseStat(b)
		}
		if err != nil {
			s.forget(t)
			return nil
		}
		t.key = Key{PID: pid, Start: st.starttime}
		s.procs[pid] = t
	}
	t.gen = s.gen
	if t.fds[fileDir] < 0 && s.kept < s.maxTracked {
		s.keep(t) // the budget has room again (processes ended, or EMFILE passed)
	}
	box := s.record(t, st)
	r := &box.rec
	ticks := st.utime + st.stime
	if t.rec != nil && now.After(t.at) && ticks >= t.ticks {
		box.cpu = float64(ticks-t.ticks) / userHZ / now.Sub(t.at).Seconds() * 100
		r.CpuPercent = &box.cpu
	}
	t.ticks, t.at, t.rec = ticks, now, r
	return t
}

// track starts tracking a process, with its files kept open if the
// budget allows.
func (s *Scanner) track(pid uint32) *tracked {
	t := &tracked{fds: [4]int{-1, -1, -1, -1}, dir: strconv.FormatUint(uint64(pid), 10) + "/"}
	t.exe = s.root + "/" + t.dir + "exe"
	s.keep(t)
	return t
}

// keep opens a process's files to keep them between scans, if the budget
// allows; if any cannot be opened, it keeps none.
func (s *Scanner) keep(t *tracked) {
	if s.kept >= s.maxTracked {
		return
	}
	for i, name := range fileNames {
		fd, err := syscall.Openat(s.dirfd, t.dir+name, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
		if err != nil {
			break // read later with open, read, close (and its error then)
		}
		t.fds[i] = fd
	}
	if t.fds[fileDir] < 0 {
		s.closeFDs(t)
		return
	}
	s.kept++
}

func (s *Scanner) closeFDs(t *tracked) {
	for i, fd := range t.fds {
		if fd >= 0 {
			syscall.Close(fd)
			t.fds[i] = -1
		}
	}
}

func (s *Scanner) forget(t *tracked) {
	if t.fds[fileDir] >= 0 {
		s.kept--
	}
	s.closeFDs(t)
}

// readFile returns the contents of one of a process's files, valid until
// the next read.
func (s *Scanner) readFile(t *tracked, which int) ([]byte, error) {
	fd := t.fds[which]
	if fd < 0 {
		var err error
		if fd, err = syscall.Openat(s.dirfd, t.dir+fileNames[which], syscall.O_RDONLY|syscall.O_CLOEXEC, 0); err != nil {
			return nil, err
		}
		defer syscall.Close(fd)
	}
	b, buf, err := preadAll(fd, s.buf)
	s.buf = buf
	return b, err
}

// recordBox holds a record and its optional numbers: one allocation.
type recordBox struct {
	rec      eventbusv1.ProcessRecord
	rss, vms uint64
	cpu      float64
	loginUID uint32
	nspid    uint32
}

// record builds one process's record, sharing what did not change with
// its previous record.
func (s *Scanner) record(t *tracked, st procStat) *recordBox {
	prev := t.rec
	if prev == nil {
		prev = &eventbusv1.ProcessRecord{
			StartTime: timestamppb.New(s.bootTime.Add(time.Duration(t.key.Start) * time.Second / userHZ)),
		}
	}
	box := &recordBox{rss: uint64(max(st.rss, 0)) * s.pageSize, vms: st.vsize}
	r := &box.rec
	r.Pid, r.Ppid, r.Name, r.StartTime = t.key.PID, uint32(st.ppid), prev.Name, prev.StartTime
	r.MemoryRssBytes, r.MemoryVmsBytes, r.Accessible = &box.rss, &box.vms, true
	kthread := st.flags&pfKthread != 0
	comm := st.comm
	if kthread {
		comm = kthreadName(comm)
	}
	if string(comm) != r.Name {
		r.Name = string(comm)
	}
	// An exec may have happened: the name, or the addresses an exec
	// changes, differ, or the kernel hides those (start of stack 0).
	// Kernel threads never exec.
	execed := t.rec == nil || r.Name != prev.Name || (!kthread && (st.image[2] == 0 || st.image != t.image))
	// The context is read at first sight and after an exec, not for every
	// scan in which the kernel hides the addresses (a zombie, or a process
	// this reader may not trace): execed is true for those.
	s.context(t, prev, box, st, !kthread && (t.rec == nil || r.Name != prev.Name || (st.image[2] != 0 && st.image != t.image)))
	owner, ok := s.owner(t)
	if ok && !execed && !s.due(t, statusRefresh, 0) && prev.Uid != nil && prev.Gid != nil && owner == t.owner && owner == [2]uint32{*prev.Uid, *prev.Gid} {
		r.Uid, r.Gid, r.UserName = prev.Uid, prev.Gid, prev.UserName
	} else if b, err := s.readFile(t, fileStatus); err != nil {
		r.Accessible = false
	} else if uid, gid, err := parseStatusIDs(b); err != nil {
		r.Accessible = false
	} else {
		if execed && !kthread {
			if nspid, ok := parseNSPid(b); ok {
				box.nspid = nspid
				r.NamespacePid = &box.nspid
			}
		}
		t.owner = owner
		r.Uid, r.Gid, r.UserName = prev.Uid, prev.Gid, prev.UserName
		if prev.Uid == nil || *prev.Uid != uid {
			r.Uid, r.UserName = &uid, s.userName(uid)
		}
		if prev.Gid == nil || *prev.Gid != gid {
			r.Gid = &gid
		}
	}
	if kthread {
		// A kernel thread: no command line, no executable.
		r.CommandLine = []string{}
		return box
	}
	r.CommandLineTruncated = prev.CommandLineTruncated
	if !execed && !s.due(t, cmdlineRefresh, 5) && prev.CommandLine != nil {
		r.CommandLine = prev.CommandLine
	} else if b, err := s.readFile(t, fileCmdline); err != nil {
		r.Accessible = false
	} else {
		r.CommandLineTruncated = len(b) >= maxRead
		if len(b) > 0 {
			// Empty: a zombie, or an exec under way (its arguments not yet
			// in place); read it again next scan.
			t.image = st.image
		}
		if prev.CommandLine != nil && bytes.Equal(b, t.rawCmd) {
			r.CommandLine = prev.CommandLine
		} else {
			r.CommandLine = splitCmdline(b)
			t.rawCmd = append(t.rawCmd[:0], b...)
		}
	}
	s.executable(t, prev, r, execed, s.due(t, pathRefresh, 2))
	return box
}

// context fills the context fields (cwd, tty, login uid, namespaces,
// cgroup): the terminal from stat at every scan; the others from /proc
// when read (a new process, or one that may have exec'd), else carried
// over from prev. Failures leave fields empty without marking the record
// inaccessible: they are extras, read after the process's identity.
func (s *Scanner) context(t *tracked, prev *eventbusv1.ProcessRecord, box *recordBox, st procStat, read bool) {
	r := &box.rec
	if t.rec != nil && st.ttyNr == t.ttyNr {
		r.Tty = prev.Tty
	} else {
		r.Tty, t.ttyNr = ttyOfStat(st.ttyNr), st.ttyNr
	}
	if !read {
		r.Cwd, r.LoginUid, r.NamespacePid = prev.Cwd, prev.LoginUid, prev.NamespacePid
		r.PidNamespace, r.MountNamespace = prev.PidNamespace, prev.MountNamespace
		r.CgroupId, r.CgroupPath, r.ContainerId = prev.CgroupId, prev.CgroupPath, prev.ContainerId
		return
	}
	if n, err := s.readlinkIn(t, "cwd"); err == nil {
		r.Cwd = string(s.buf[:n])
	}
	if b, err := s.readExtra(t, "loginuid"); err == nil {
		if v, err := parseUint(bytes.TrimSpace(b)); err == nil && v < 1<<32-1 {
			box.loginUID = uint32(v)
			r.LoginUid = &box.loginUID
		}
	}
	r.PidNamespace = s.nsInode(t, "ns/pid")
	r.MountNamespace = s.nsInode(t, "ns/mnt")
	if b, err := s.readExtra(t, "cgroup"); err == nil {
		r.CgroupPath, r.ContainerId = parseCgroup(b)
		id, ok := s.cgroupIDs[r.CgroupPath]
		if !ok {
			id = cgroupID(s.cgroupRoot, r.CgroupPath)
			if s.cgroupIDs == nil {
				s.cgroupIDs = map[string]uint64{}
			}
			s.cgroupIDs[r.CgroupPath] = id
		}
		r.CgroupId = id
	}
	// NamespacePid: from status, by record.
}

// readlinkIn reads a link in a process's /proc directory into s.buf.
func (s *Scanner) readlinkIn(t *tracked, name string) (int, error) {
	for {
		var n int
		var err error
		if t.fds[fileDir] >= 0 {
			n, err = unix.Readlinkat(t.fds[fileDir], name, s.buf)
		} else {
			n, err = unix.Readlinkat(s.dirfd, t.dir+name, s.buf)
		}
		if err != unix.EINTR {
			return n, err
		}
	}
}

// readExtra reads a file of a process's /proc directory that is not kept
// open, into s.buf.
func (s *Scanner) readExtra(t *tracked, name string) ([]byte, error) {
	dirfd, path := s.dirfd, t.dir+name
	if t.fds[fileDir] >= 0 {
		dirfd, path = t.fds[fileDir], name
	}
	fd, err := syscall.Openat(dirfd, path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	b, buf, err := preadAll(fd, s.buf)
	s.buf = buf
	return b, err
}

// nsInode returns the inode of a namespace link ("pid:[4026531836]"), 0
// if it cannot be read.
func (s *Scanner) nsInode(t *tracked, name string) uint64 {
	n, err := s.readlinkIn(t, name)
	if err != nil {
		return 0
	}
	l := s.buf[:n]
	i, j := bytes.IndexByte(l, '['), bytes.LastIndexByte(l, ']')
	if i < 0 || j < i {
		return 0
	}
	v, err := parseUint(l[i+1 : j])
	if err != nil {
		return 0
	}
	return v
}

// kthreadName is a kernel thread's stable name: a workqueue worker's
// name ends with the workqueue it last ran ("kworker/1:0-events"), which
// changes all the time and would make every scan report it UPDATED.
func kthreadName(comm []byte) []byte {
	if bytes.HasPrefix(comm, []byte("kworker/")) {
		if i := bytes.IndexByte(comm, '-'); i >= 0 {
			return comm[:i]
		}
	}
	return comm
}

// owner returns the uid and gid of a process's /proc directory (its
// effective ids, or root's if it is not dumpable), if its directory is
// kept open.
func (s *Scanner) owner(t *tracked) ([2]uint32, bool) {
	var st syscall.Stat_t
	if t.fds[fileDir] < 0 || syscall.Fstat(t.fds[fileDir], &st) != nil {
		return [2]uint32{}, false
	}
	return [2]uint32{st.Uid, st.Gid}, true
}

// executable fills the executable fields from the exe link. Unless
// recheck (an exec may have happened), a link
// that reads as before means the same running image: its hash holds, and
// whether its path still names it is checked if checkPath, else carried
// over.
func (s *Scanner) executable(t *tracked, prev, r *eventbusv1.ProcessRecord, recheck, checkPath bool) {
	var n int
	var err error
	if t.fds[fileDir] >= 0 {
		n, err = readlinkExe(t.fds[fileDir], s.buf)
	} else {
		n, err = readlink(t.exe, s.buf)
	}
	link := s.buf[:max(n, 0)]
	switch {
	case err != nil && errors.Is(err, fs.ErrNotExist):
		// A kernel thread (or a zombie): no executable.
		t.link, t.linkErr = "", err
	case err != nil:
		t.link, t.linkErr = "", err
		r.Accessible = false
	case !recheck && t.rec != nil && t.linkErr == nil && string(link) == t.link && (prev.ExecutableHash != nil || s.hashes == nil):
		r.ExecutablePath, r.ExecutableDeleted = strings.CutSuffix(t.link, " (deleted)")
		r.ExecutableHash, r.HashAlgorithm = prev.ExecutableHash, prev.HashAlgorithm
		switch {
		case r.ExecutablePath == "":
		case checkPath:
			s.checkPath(t, r)
		default:
			r.FileExists, r.ExecutableDeleted = prev.FileExists, r.ExecutableDeleted || prev.ExecutableDeleted
		}
	default:
		if t.linkErr != nil || string(link) != t.link || t.onDisk == "" {
			t.link = string(link)
			t.onDisk = s.lookupPath(t)
		}
		t.linkErr = nil
		r.ExecutablePath, r.ExecutableDeleted = strings.CutSuffix(t.link, " (deleted)")
		if r.ExecutablePath != "" {
			s.checkFile(t, r)
		}
	}
	if s.hashes == nil {
		r.ExecutableHash, r.HashAlgorithm = nil, eventbusv1.HashAlgorithm_HASH_ALGORITHM_UNSPECIFIED
	}
	// A memfd image: the link reads "/memfd:NAME (deleted)".
	r.ExecutableMemfd = r.ExecutableDeleted && strings.HasPrefix(t.link, "/memfd:") && strings.IndexByte(t.link[1:], '/') < 0
}

// readlink reads the link at path into buf (which bounds its length).
func readlink(path string, buf []byte) (int, error) {
	for {
		n, err := syscall.Readlink(path, buf)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

// checkFile identifies the running image (through /proc/<pid>/exe, which
// reaches it even if deleted), checks its path, and hashes it.
func (s *Scanner) checkFile(t *tracked, r *eventbusv1.ProcessRecord) {
	image := filepath.Join(s.root, strconv.FormatUint(uint64(r.Pid), 10), "exe")
	running, err := os.Stat(image)
	t.imageOK = false
	if err == nil {
		if sys, ok := running.Sys().(*syscall.Stat_t); ok {
			t.imageID, t.imageOK = [2]uint64{uint64(sys.Dev), sys.Ino}, true
		}
	}
	s.checkPath(t, r)
	if s.hashes != nil && err == nil {
		if sum, err := s.hashes.Sum(image, running); err == nil {
			r.ExecutableHash, r.HashAlgorithm = sum, eventbusv1.HashAlgorithm_HASH_ALGORITHM_SHA256
		}
	}
}

// lookupPath returns where checkPath looks up the executable's path: the
// path itself for a process that shares the scanner's root and mount
// namespace, and through
// the process's root (/proc/<pid>/root<path>) for one in another mount
// namespace or chroot, whose exe link names the file as its own
// namespace sees it, so that it is checked against its own files rather
// than the host's file at the same path. A chroot's link is a path from
// the host's root instead: checkPath falls back to it.
func (s *Scanner) lookupPath(t *tracked) string {
	path, _ := strings.CutSuffix(t.link, " (deleted)")
	if s.rootOK && statID(s.root+"/"+t.dir+"root") == s.rootID && statID(s.root+"/"+t.dir+"ns/mnt") == s.mntNS {
		return path
	}
	return s.root + "/" + t.dir + "root" + path
}

// checkPath sets file_exists, and marks the executable replaced (deleted)
// when its path now names another file than the running image, as after a
// bind mount over it or a new file created where it was.
func (s *Scanner) checkPath(t *tracked, r *eventbusv1.ProcessRecord) {
	var st syscall.Stat_t
	err := syscall.Stat(t.onDisk, &st)
	if err != nil && t.onDisk != r.ExecutablePath {
		err = syscall.Stat(r.ExecutablePath, &st) // a chroot: the link is the host's path
	}
	r.FileExists = err == nil
	if err == nil && t.imageOK && [2]uint64{uint64(st.Dev), st.Ino} != t.imageID {
		r.ExecutableDeleted = true
	}
}

func (s *Scanner) userName(uid uint32) string {
	if n, ok := s.users[uid]; ok {
		return n
	}
	n := ""
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		n = u.Username
	}
	s.users[uid] = n
	return n
}

// HashCache computes SHA-256 hashes of executables and remembers them by
// device, inode, size and modification time, so that an unchanged binary
// is hashed once however many processes run it. It holds at most
// MaxEntries hashes (default 4096) and hashes files of at most MaxBytes
// (default 256 MiB; larger ones get no hash). It is safe for concurrent
// use.
type HashCache struct {
	MaxEntries int
	MaxBytes   int64

	mu     sync.Mutex
	sums   map[fileID][]byte
	hashed uint64 // files hashed (cache misses), for stats
}

type fileID struct {
	dev, ino uint64
	size     int64
	mtime    int64
}

// Sum returns the SHA-256 of the file at path, whose os.Stat result is
// fi, from the cache if the same file (device, inode, size, mtime) was
// hashed before.
func (h *HashCache) Sum(path string, fi os.FileInfo) ([]byte, error) {
	sys, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil, fmt.Errorf("process: hash %s: no inode information", path)
	}
	id := fileID{dev: uint64(sys.Dev), ino: sys.Ino, size: fi.Size(), mtime: fi.ModTime().UnixNano()}
	maxBytes := h.MaxBytes
	if maxBytes <= 0 {
		maxBytes = 256 << 20
	}
	if fi.Size() > maxBytes {
		return nil, fmt.Errorf("process: hash %s: %d bytes, over the %d-byte limit", path, fi.Size(), maxBytes)
	}
	h.mu.Lock()
	if sum, ok := h.sums[id]; ok {
		h.mu.Unlock()
		return sum, nil
	}
	h.mu.Unlock()
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	d := sha256.New()
	if _, err := io.Copy(d, io.LimitReader(f, maxBytes)); err != nil {
		return nil, fmt.Errorf("process: hash %s: %w", path, err)
	}
	sum := d.Sum(nil)
	h.mu.Lock()
	h.hashed++
	h.mu.Unlock()
	h.store(id, sum)
	return sum, nil
}

// lookup returns the sum cached for the file identity id.
func (h *HashCache) lookup(id fileID) ([]byte, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	sum, ok := h.sums[id]
	return sum, ok
}

// store caches sum under id, forgetting an entry at random when the cache
// is full.
func (h *HashCache) store(id fileID, sum []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sums == nil {
		h.sums = map[fileID][]byte{}
	}
	limit := h.MaxEntries
	if limit <= 0 {
		limit = 4096
	}
	if _, ok := h.sums[id]; !ok && len(h.sums) >= limit {
		for k := range h.sums {
			delete(h.sums, k)
			break
		}
	}
	h.sums[id] = sum
}

// Hashed returns how many files the cache has hashed (its misses).
func (h *HashCache) Hashed() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hashed
}
