package process

import (
	"bytes"
	"strconv"
	"strings"
	"sync"
	"syscall"

	"github.com/daemoneye/daemoneye/collector/process/sensor"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
)

// The context of a process beyond its image: working directory, terminal,
// login uid, namespaces and cgroup (ProcessRecord fields 19 to 27). The
// sensor reports them at each exec; the scan reads them from /proc when it
// first sees a process and when the process may have exec'd, and carries
// them over otherwise (a chdir, a setns or a cgroup move without an exec
// shows at the next exec).

// ttyName names a terminal by its device numbers, relative to /dev, as ps
// does: "pts/3", "tty1", "ttyS0", "console"; "char/MAJOR:MINOR" for a
// device it does not know. Empty for none (major 0).
func ttyName(major, minor uint32) string {
	switch {
	case major == 0:
		return ""
	case major >= 136 && major <= 143: // Unix98 pseudo-terminal slaves
		return "pts/" + strconv.FormatUint(uint64((major-136)<<8|minor), 10)
	case major == 4 && minor < 64:
		return "tty" + strconv.FormatUint(uint64(minor), 10)
	case major == 4:
		return "ttyS" + strconv.FormatUint(uint64(minor-64), 10)
	case major == 5 && minor == 0:
		return "tty"
	case major == 5 && minor == 1:
		return "console"
	}
	return "char/" + strconv.FormatUint(uint64(major), 10) + ":" + strconv.FormatUint(uint64(minor), 10)
}

// ttyOfStat decodes stat's tty_nr (the kernel's new_encode_dev: minor's
// low 8 bits, major, then the minor's upper bits) into a name.
func ttyOfStat(nr uint64) string {
	major := uint32(nr>>8) & 0xfff
	minor := uint32(nr&0xff) | uint32(nr>>12)&0xfff00
	return ttyName(major, minor)
}

// containerIDRuntimes are the prefixes container runtimes give the cgroup
// of a container: Docker and Podman under systemd ("docker-ID.scope",
// "libpod-ID.scope"), containerd's CRI plugin ("cri-containerd-ID.scope")
// and CRI-O ("crio-ID.scope"). With the cgroupfs driver the cgroup is
// named by the bare id ("/docker/ID", "/kubepods/burstable/podUID/ID").
var containerIDRuntimes = [...]string{"docker-", "libpod-", "cri-containerd-", "crio-", ""}

// containerID derives a container id (64 lowercase hex digits) from a
// cgroup path, looking from the innermost directory outwards; "" when no
// directory is named as a container runtime names a container's. A
// runtime's monitor ("libpod-conmon-ID.scope", "crio-conmon-ID.scope") is
// not a container.
func containerID(path string) string {
	for path != "" {
		i := strings.LastIndexByte(path, '/')
		name := path[i+1:]
		path = path[:max(i, 0)]
		name = strings.TrimSuffix(name, ".scope")
		for _, p := range containerIDRuntimes {
			if id, ok := strings.CutPrefix(name, p); ok && isContainerID(id) {
				return id
			}
		}
	}
	return ""
}

func isContainerID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// parseCgroup reads /proc/<pid>/cgroup: the cgroup v2 path (the "0::"
// line), and the container id of the first line, v2 or v1, whose path
// names one.
func parseCgroup(b []byte) (path, container string) {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line, b = b[:i], b[i+1:]
		} else {
			b = nil
		}
		// hierarchy-ID:controllers:path; the path may hold ':'.
		i := bytes.IndexByte(line, ':')
		if i < 0 {
			continue
		}
		j := bytes.IndexByte(line[i+1:], ':')
		if j < 0 {
			continue
		}
		p := string(line[i+1+j+1:])
		if string(line[:i+1+j+1]) == "0::" {
			path = p
		}
		if container == "" {
			container = containerID(p)
		}
	}
	return path, container
}

// cgroup2Magic is CGROUP2_SUPER_MAGIC, statfs's f_type of a cgroup2 mount.
const cgroup2Magic = 0x63677270

// cgroup2Root returns where the cgroup2 file system is mounted, "" if at
// neither of the usual places (/sys/fs/cgroup, or /sys/fs/cgroup/unified
// in the hybrid layout).
func cgroup2Root() string {
	for _, dir := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st syscall.Statfs_t
		if syscall.Statfs(dir, &st) == nil && st.Type == cgroup2Magic {
			return dir
		}
	}
	return ""
}

// cgroupID returns the cgroup v2 id of a cgroup path (the inode of its
// directory under root), 0 if unknown.
func cgroupID(root, path string) uint64 {
	if root == "" || path == "" {
		return 0
	}
	var st syscall.Stat_t
	if syscall.Stat(root+path, &st) != nil {
		return 0
	}
	return st.Ino
}

// cgroupInfo is what cgroupCache remembers of one cgroup.
type cgroupInfo struct {
	path, container string
}

// maxCgroups bounds a cgroupCache; past it the cache starts over.
const maxCgroups = 4096

// cgroupCache maps cgroup ids to their path and container id, learned
// from /proc/<pid>/cgroup of processes that could be read, so that the
// exec of a process that ended before it could be read still gets them.
// Its zero value is ready; it is safe for concurrent use.
type cgroupCache struct {
	mu sync.Mutex
	m  map[uint64]cgroupInfo
}

func (c *cgroupCache) get(id uint64) (cgroupInfo, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ci, ok := c.m[id]
	return ci, ok
}

func (c *cgroupCache) put(id uint64, ci cgroupInfo) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxCgroups {
		c.m = map[uint64]cgroupInfo{}
	}
	c.m[id] = ci
}

// setExecContext fills a record's context fields from an exec event.
func setExecContext(r *eventbusv1.ProcessRecord, x *sensor.Exec) {
	r.Cwd = x.Cwd
	r.Tty = ttyName(x.TTYMajor(), x.TTYMinor())
	if x.LoginUID != sensor.NoLoginUID {
		v := x.LoginUID
		r.LoginUid = &v
	}
	r.PidNamespace, r.MountNamespace = uint64(x.PidNS), uint64(x.MntNS)
	if x.NSPID != 0 {
		v := x.NSPID
		r.NamespacePid = &v
	}
	r.CgroupId = x.CgroupID
	r.CommandLineTruncated = x.Flags&sensor.ArgsTruncated != 0
	r.ExecutableMemfd = x.Flags&sensor.MemFD != 0
}

// fill sets what a change from the sensor adds to its event: the kernel
// event, image replacement, and the exit code or signal.
func (ch *Change) fill(data *eventbusv1.ProcessEventData) {
	data.KernelEvent, data.ImageReplaced = ch.KernelEvent, ch.ImageReplaced
	if ch.KernelEvent != eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_EXIT {
		return
	}
	x := sensor.Exit{Status: ch.ExitStatus}
	if sig := int32(x.Signal()); sig != 0 {
		data.ExitSignal = &sig
	} else {
		code := int32(x.Code())
		data.ExitCode = &code
	}
}
