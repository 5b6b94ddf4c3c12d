package process

import (
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
// scans (CPU times for percentages, user names, executable hashes); it is
// not safe for concurrent use.
type Scanner struct {
	fs       procfs.FS
	root     string
	bootTime time.Time
	hashes   *HashCache // nil: no hashing
	users    map[uint32]string
	cpu      map[Key]cpuSample
	self     int
}

type cpuSample struct {
	ticks uint64
	at    time.Time
}

// ScannerOptions configures a Scanner. The zero value reads /proc and
// hashes nothing.
type ScannerOptions struct {
	// ProcRoot is the proc filesystem's mount point. Default "/proc".
	ProcRoot string
	// Hashes, when set, computes executable hashes through this cache.
	Hashes *HashCache
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
	return &Scanner{
		fs: pfs, root: opts.ProcRoot, bootTime: time.Unix(int64(st.BootTime), 0),
		hashes: opts.Hashes, users: map[uint32]string{}, cpu: map[Key]cpuSample{}, self: os.Getpid(),
	}, nil
}

// Scan reads every process. Processes that vanish while being read are
// skipped; fields that cannot be read (another user's process without
// root) are left unset and the record is marked not accessible. now
// stamps the records (collection_time) and measures CPU use since the
// previous scan.
func (s *Scanner) Scan(now time.Time) (map[Key]*eventbusv1.ProcessRecord, error) {
	procs, err := s.fs.AllProcs()
	if err != nil {
		return nil, fmt.Errorf("process: list %s: %w", s.root, err)
	}
	out := make(map[Key]*eventbusv1.ProcessRecord, len(procs))
	cpu := make(map[Key]cpuSample, len(procs))
	stamp := timestamppb.New(now)
	for _, p := range procs {
		st, err := p.Stat()
		if err != nil {
			continue // gone
		}
		k := Key{PID: uint32(st.PID), Start: st.Starttime}
		r := s.record(p, st, k, now)
		r.CollectionTime = stamp
		ticks := uint64(st.UTime + st.STime)
		if prev, ok := s.cpu[k]; ok && now.After(prev.at) && ticks >= prev.ticks {
			pct := float64(ticks-prev.ticks) / userHZ / now.Sub(prev.at).Seconds() * 100
			r.CpuPercent = &pct
		}
		cpu[k] = cpuSample{ticks: ticks, at: now}
		out[k] = r
	}
	s.cpu = cpu
	return out, nil
}

// record builds one process's record from what /proc tells.
func (s *Scanner) record(p procfs.Proc, st procfs.ProcStat, k Key, now time.Time) *eventbusv1.ProcessRecord {
	start := s.bootTime.Add(time.Duration(k.Start) * time.Second / userHZ)
	rss, vms := uint64(st.ResidentMemory()), uint64(st.VirtualMemory())
	r := &eventbusv1.ProcessRecord{
		Pid: k.PID, Ppid: uint32(st.PPID), Name: st.Comm, StartTime: timestamppb.New(start),
		MemoryRssBytes: &rss, MemoryVmsBytes: &vms, Accessible: true,
	}
	if status, err := p.NewStatus(); err == nil {
		uid, gid := uint32(status.UIDs[0]), uint32(status.GIDs[0])
		r.Uid, r.Gid = &uid, &gid
		r.UserName = s.userName(uid)
	} else {
		r.Accessible = false
	}
	if cmd, err := p.CmdLine(); err == nil {
		r.CommandLine = cmd
	} else {
		r.Accessible = false
	}
	exe, err := p.Executable()
	switch {
	case err == nil && exe != "":
		r.ExecutablePath, r.ExecutableDeleted = strings.CutSuffix(exe, " (deleted)")
		s.checkFile(r, k.PID)
	case err == nil || errors.Is(err, fs.ErrNotExist):
		// A kernel thread (or a zombie): no executable.
	default:
		r.Accessible = false
	}
	return r
}

// checkFile sets file_exists, marks an executable replaced on disk since
// the process started as deleted, and hashes the running image.
func (s *Scanner) checkFile(r *eventbusv1.ProcessRecord, pid uint32) {
	image := filepath.Join(s.root, strconv.FormatUint(uint64(pid), 10), "exe")
	running, errRun := os.Stat(image) // the mapped file, even if deleted
	onDisk, errDisk := os.Stat(r.ExecutablePath)
	r.FileExists = errDisk == nil
	if errRun == nil && errDisk == nil && !r.ExecutableDeleted && !os.SameFile(running, onDisk) {
		r.ExecutableDeleted = true // replaced: the path now names another file
	}
	if s.hashes != nil && errRun == nil {
		if sum, err := s.hashes.Sum(image, running); err == nil {
			r.ExecutableHash, r.HashAlgorithm = sum, eventbusv1.HashAlgorithm_HASH_ALGORITHM_SHA256
		}
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
	defer h.mu.Unlock()
	if h.sums == nil {
		h.sums = map[fileID][]byte{}
	}
	limit := h.MaxEntries
	if limit <= 0 {
		limit = 4096
	}
	if len(h.sums) >= limit {
		for k := range h.sums { // forget one at random
			delete(h.sums, k)
			break
		}
	}
	h.sums[id] = sum
	h.hashed++
	return sum, nil
}

// Hashed returns how many files the cache has hashed (its misses).
func (h *HashCache) Hashed() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.hashed
}
