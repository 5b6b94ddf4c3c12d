package process

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/collector/process/sensor"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Source says where a Collector learns of new and ended processes.
type Source string

// The sources. SourceAuto is the default.
const (
	// SourceAuto uses the eBPF sensor when it can be opened, else the
	// process connector, else polling, saying once in the log why each
	// step fell back.
	SourceAuto Source = "auto"
	// SourceEBPF uses the eBPF process sensor (collector/process/sensor):
	// every exec is published as CREATED and every exit of a process it
	// published, or the scan knew, as TERMINATED, at once. The /proc scan
	// still runs every interval, to resync: it publishes what the sensor
	// did not (processes that existed before it, and anything it missed).
	// Run fails if the sensor cannot be opened.
	SourceEBPF Source = "ebpf"
	// SourceConnector uses the netlink process connector (connector.go):
	// the kernel reports every fork, exec and exit by pid, and the
	// collector reads each exec's process from /proc at once, so a process
	// gone before that is published with its pid, parent and start time
	// only (accessible=false). An overflow of its socket (ENOBUFS) loses
	// events; it is counted and followed by a scan at once. The scan
	// resyncs as with SourceEBPF. It needs CAP_NET_ADMIN in the initial
	// user and pid namespaces; Run fails if it cannot subscribe.
	SourceConnector Source = "connector"
	// SourcePoll only scans /proc every interval: a process that starts
	// and ends between two scans is never seen.
	SourcePoll Source = "poll"
)

// ErrSource is returned by New for a Source that is none of the above,
// and wrapped by Run when SourceEBPF or SourceConnector is forced and
// cannot be opened.
var ErrSource = errors.New("process: source unavailable")

// ParseSource parses "auto", "ebpf", "connector" or "poll" ("" is auto).
func ParseSource(s string) (Source, error) {
	switch Source(s) {
	case "", SourceAuto:
		return SourceAuto, nil
	case SourceEBPF, SourceConnector, SourcePoll:
		return Source(s), nil
	}
	return "", fmt.Errorf("%w: unknown source %q (auto, ebpf, connector or poll)", ErrSource, s)
}

// maxComm is the length of a process's comm (TASK_COMM_LEN less its NUL).
const maxComm = 15

// ticksOf converts a start time since boot to clock ticks, as
// /proc/<pid>/stat shows it (the kernel's nsec_to_clock_t).
func ticksOf(d time.Duration) uint64 {
	return uint64(d) / uint64(time.Second/userHZ)
}

// openSource opens the source: for SourceAuto the sensor, else the
// process connector, else none (polling), each failure logged once; a
// forced SourceEBPF or SourceConnector that cannot be opened is an error.
func (c *Collector) openSource() error {
	if c.opts.Source == SourcePoll {
		c.source, c.sourceNote = SourcePoll, "forced with --source poll"
		c.log.Info("procmond: polling /proc only, as asked; processes that live shorter than the interval are missed", "interval", c.interval())
		return nil
	}
	var why string
	if c.opts.Source != SourceConnector {
		s, err := sensor.Open(sensor.Options{Logger: c.log, RingBytes: c.opts.SensorRingBytes, NoForks: true})
		if err == nil {
			c.sensor, c.source, c.sourceNote = s, SourceEBPF, "eBPF process sensor attached"
			c.log.Info("procmond: using the eBPF process sensor; the /proc scan resyncs every interval", "interval", c.interval())
			return nil
		}
		if c.opts.Source == SourceEBPF {
			return fmt.Errorf("%w: --source ebpf: %w (run procmond as root, or with CAP_BPF and CAP_PERFMON, or use --source auto or poll)", ErrSource, err)
		}
		why = "the eBPF sensor is unavailable: " + err.Error()
		c.log.Warn("procmond: the eBPF process sensor cannot run here; trying the netlink process connector", "err", err)
	}
	err := c.openConnector()
	if err == nil {
		c.source, c.sourceNote = SourceConnector, "netlink process connector subscribed"
		if why != "" {
			c.sourceNote += " (" + why + ")"
		}
		c.log.Info("procmond: using the netlink process connector; each exec is read from /proc at once, and the /proc scan resyncs every interval", "interval", c.interval())
		return nil
	}
	if c.opts.Source == SourceConnector {
		return fmt.Errorf("%w: --source connector: %w (run procmond as root, or with CAP_NET_ADMIN, in the host's pid namespace, or use --source auto or poll)", ErrSource, err)
	}
	c.source, c.sourceNote = SourcePoll, why+"; "+err.Error()
	c.log.Warn("procmond: the netlink process connector cannot run here either; polling /proc instead, which misses processes that live shorter than the interval",
		"err", err, "interval", c.interval())
	return nil
}

// readSensor publishes the sensor's exec and exit events, in its own
// goroutine, until ctx ends or the sensor is closed. The events of one
// read of the ring buffer are published as one batch.
func (c *Collector) readSensor(ctx context.Context) error {
	var batch []*client.Msg
	err := c.sensor.RunBatches(ctx, func(e *sensor.Event) error {
		var m *client.Msg
		switch e.Kind {
		case sensor.KindExec:
			m = c.onExec(e)
		case sensor.KindExit:
			m = c.onExit(e)
		}
		if m != nil {
			batch = append(batch, m)
		}
		return nil
	}, func() error {
		c.publishAll(batch)
		clear(batch)
		batch = batch[:0]
		return nil
	})
	c.publishAll(batch) // what was read before ctx ended
	if err == nil || ctx.Err() != nil || errors.Is(err, sensor.ErrClosed) {
		return nil
	}
	return err
}

// sensorRec is what the collector remembers of a process the sensor
// published, until the scan knows it or it ended.
type sensorRec struct {
	rec *eventbusv1.ProcessRecord
	gen uint64 // c.scans when it was published
}

// onExec returns the message of an exec, CREATED, with the kernel's data
// enriched (see execRecord), or nil when the scan published it already.
func (c *Collector) onExec(e *sensor.Event) *client.Msg {
	x := &e.Exec
	key := Key{PID: e.PID, Start: ticksOf(x.Start)}
	c.mu.Lock()
	hashOn := c.hashOn
	c.mu.Unlock()
	r := c.execRecord(e, key, hashOn)
	c.mu.Lock()
	_, pub := c.sensorRecs[key]
	if old, ok := c.cur[key]; ok && !pub && old.GetExecutablePath() == r.GetExecutablePath() && slices.Equal(old.GetCommandLine(), r.GetCommandLine()) {
		// The scan read this process after its exec, and published it.
		c.mu.Unlock()
		return nil
	}
	c.sensorRecs[key] = sensorRec{rec: r, gen: c.scans}
	c.sensorByPID[key.PID] = r
	parent := c.parentLocked(r.GetPpid())
	c.mu.Unlock()
	c.sensorCreated.Add(1)
	return c.message(Change{Subtype: eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_CREATED, Record: r,
		KernelEvent: eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_EXEC, ImageReplaced: x.Flags&sensor.ImageReplaced != 0}, parent, e.Time)
}

// onExit returns the message TERMINATED for a process the sensor published
// or the scan knows (else nil), and makes the scan skip its own TERMINATED
// for it.
func (c *Collector) onExit(e *sensor.Event) *client.Msg {
	key := Key{PID: e.PID, Start: ticksOf(e.Exit.Start)}
	c.mu.Lock()
	r := c.cur[key]
	if s, ok := c.sensorRecs[key]; ok {
		r = s.rec
		delete(c.sensorRecs, key)
	}
	if c.sensorByPID[key.PID] == r {
		delete(c.sensorByPID, key.PID)
	}
	if r == nil {
		// A process that never exec'd while the sensor ran and that no
		// scan saw: nothing was published of it.
		c.mu.Unlock()
		return nil
	}
	c.exited[key] = struct{}{}
	parent := c.parentLocked(r.GetPpid())
	c.mu.Unlock()
	c.sensorTerminated.Add(1)
	return c.message(Change{Subtype: eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_TERMINATED, Record: r,
		KernelEvent: eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_EXIT, ExitStatus: e.Exit.Status}, parent, e.Time)
}

// parentLocked returns the tree context of a process whose parent is ppid.
func (c *Collector) parentLocked(ppid uint32) *eventbusv1.ProcessTreeContext {
	p := c.sensorByPID[ppid]
	if p == nil {
		p = c.byPID[ppid]
	}
	if p == nil {
		return nil
	}
	return &eventbusv1.ProcessTreeContext{ParentName: p.GetName(), ParentExecutablePath: p.GetExecutablePath()}
}

// execRecord builds a process's record from an exec event. The kernel's
// data covers the record but for the executable's hash and, for a cgroup
// not seen before, its path: the hash comes from a cache keyed by the
// file's identity as the kernel saw it (device, inode, size, modification
// time), so that a binary that ran before costs no system call. Only what
// the caches lack is read from /proc, while the process is the one the
// event describes; when it is not (it ended, or its pid was reused), the
// record says accessible=false and lacks those fields.
func (c *Collector) execRecord(e *sensor.Event, key Key, hash bool) *eventbusv1.ProcessRecord {
	x := &e.Exec
	uid, gid := x.UID, x.GID
	r := &eventbusv1.ProcessRecord{
		Pid: e.PID, Ppid: x.PPID, Name: commOf(x.Filename), ExecutablePath: x.Path, CommandLine: x.Args,
		StartTime: timestamppb.New(c.bootTime.Add(time.Duration(key.Start) * (time.Second / userHZ))),
		Uid:       &uid, Gid: &gid, UserName: c.userName(uid),
		ExecutableDeleted: x.Flags&(sensor.Deleted|sensor.MemFD) != 0,
		// The kernel had just opened the file by this path (relative to the
		// process's root: a chroot's files are not at it).
		FileExists:     x.Flags&(sensor.Deleted|sensor.MemFD|sensor.Detached) == 0,
		CollectionTime: timestamppb.New(e.Time),
		Accessible:     true,
	}
	if r.CommandLine == nil {
		r.CommandLine = []string{}
	}
	if x.HasMemory {
		rss, vms := x.RSSBytes, x.VMBytes
		r.MemoryRssBytes, r.MemoryVmsBytes = &rss, &vms
	}
	setExecContext(r, x)
	cg, cgKnown := c.cgroups.get(x.CgroupID)
	r.CgroupPath, r.ContainerId = cg.path, cg.container
	kernID := fileID{dev: x.File.StatDev(), ino: x.File.Ino, size: x.File.Size, mtime: x.File.ModTime}
	needHash := false
	if hash {
		if sum, ok := c.hashes.lookup(kernID); ok && x.File.Ino != 0 {
			r.ExecutableHash, r.HashAlgorithm = sum, eventbusv1.HashAlgorithm_HASH_ALGORITHM_SHA256
		} else {
			needHash = true
		}
	}
	if !needHash && (cgKnown || x.CgroupID == 0) {
		return r
	}

	dir := filepath.Join(c.opts.ProcRoot, strconv.FormatUint(uint64(e.PID), 10))
	if _, ok := c.statOf(dir, key); !ok {
		r.Accessible = false
		c.enrichMissed.Add(1)
		return r
	}
	var cgRead []byte // the cgroup path's source, used once the pid is known not reused
	if !cgKnown && x.CgroupID != 0 {
		cgRead, _ = os.ReadFile(filepath.Join(dir, "cgroup"))
	}
	var sum []byte
	if needHash {
		image := filepath.Join(dir, "exe")
		fi, err := os.Stat(image)
		if err != nil {
			r.Accessible = false
		} else if sum, err = c.hashes.Sum(image, fi); err != nil {
			sum = nil
		}
	}
	// The pid may have been reused while the executable was read.
	if _, still := c.statOf(dir, key); !still || !r.Accessible {
		r.Accessible = false
		c.enrichMissed.Add(1)
		return r
	}
	if sum != nil {
		r.ExecutableHash, r.HashAlgorithm = sum, eventbusv1.HashAlgorithm_HASH_ALGORITHM_SHA256
		if x.File.Ino != 0 {
			// Under the kernel's identity too: on btrfs and overlayfs it is
			// not the one stat gives.
			c.hashes.store(kernID, sum)
		}
	}
	if len(cgRead) > 0 {
		r.CgroupPath, r.ContainerId = parseCgroup(cgRead)
		c.cgroups.put(x.CgroupID, cgroupInfo{r.CgroupPath, r.ContainerId})
	}
	return r
}

// statOf reads /proc/<pid>/stat and reports whether it is the process key
// names.
func (c *Collector) statOf(dir string, key Key) (procStat, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return procStat{}, false
	}
	st, err := parseStat(b)
	if err != nil || st.starttime != key.Start {
		return procStat{}, false
	}
	return st, true
}

// commOf is the kernel's comm of a process that executed filename: its
// base name, at most 15 bytes.
func commOf(filename string) string {
	if i := strings.LastIndexByte(filename, '/'); i >= 0 {
		filename = filename[i+1:]
	}
	if len(filename) > maxComm {
		filename = filename[:maxComm]
	}
	return filename
}

// userName resolves a uid, caching the answer; only the sensor's reader
// calls it.
func (c *Collector) userName(uid uint32) string {
	if n, ok := c.users[uid]; ok {
		return n
	}
	n := ""
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		n = u.Username
	}
	if len(c.users) >= 4096 {
		clear(c.users)
	}
	c.users[uid] = n
	return n
}

// resyncLocked removes from changes, a scan's, what the sensor already
// published, and forgets what the sensor published that the scan now
// knows or that ended. c.mu is held.
func (c *Collector) resyncLocked(changes []Change, cur map[Key]*eventbusv1.ProcessRecord) []Change {
	if c.sensor == nil && c.cn == nil {
		return changes
	}
	out := changes[:0]
	for _, ch := range changes {
		key := ch.Key
		switch ch.Subtype {
		case eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_CREATED:
			_, pub := c.sensorRecs[key]
			_, ended := c.exited[key]
			if pub || ended {
				c.resynced++
				continue
			}
		case eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_TERMINATED:
			if _, ended := c.exited[key]; ended {
				c.resynced++
				continue
			}
		}
		out = append(out, ch)
	}
	for k := range c.exited {
		if _, ok := cur[k]; !ok {
			delete(c.exited, k) // gone from /proc: no scan will report it again
		}
	}
	for k, s := range c.sensorRecs {
		// Known to the scan from now on, or gone before a whole interval
		// passed without its exit reaching us (a lost exit event).
		if _, ok := cur[k]; ok || s.gen+1 < c.scans {
			delete(c.sensorRecs, k)
			if c.sensorByPID[k.PID] == s.rec {
				delete(c.sensorByPID, k.PID)
			}
		}
	}
	return out
}

// sourceHealth is the "source" component of the health: which source is
// active and why, and the sensor's counters. Lost events or a stopped
// sensor make it degraded.
func (c *Collector) sourceHealth(now time.Time, metrics bool) *eventbusv1.ComponentHealth {
	h := &eventbusv1.ComponentHealth{Name: "source", Status: eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY, LastCheck: timestamppb.New(now)}
	if c.cn != nil {
		return c.connectorHealth(h, metrics)
	}
	if c.sensor == nil {
		h.Message = string(c.source) + ": " + c.sourceNote
		if metrics {
			h.Metrics = map[string]float64{"ebpf": 0}
		}
		return h
	}
	st := c.sensor.Stats()
	c.mu.Lock()
	serr, resynced := c.sensorErr, c.resynced
	c.mu.Unlock()
	h.Message = fmt.Sprintf("ebpf: %d events, %d lost; %d created and %d terminated published at once, %d of them gone before /proc could be read",
		st.Events, st.Lost, c.sensorCreated.Load(), c.sensorTerminated.Load(), c.enrichMissed.Load())
	switch {
	case serr != nil:
		h.Status, h.Message = eventbusv1.HealthStatus_HEALTH_STATUS_DEGRADED, "ebpf stopped, polling only: "+serr.Error()
	case st.Lost > 0:
		h.Status = eventbusv1.HealthStatus_HEALTH_STATUS_DEGRADED
	}
	if metrics {
		h.Metrics = map[string]float64{"ebpf": 1, "sensor_events": float64(st.Events), "sensor_lost": float64(st.Lost),
			"sensor_lost_exec": float64(st.LostExec), "sensor_lost_fork": float64(st.LostFork), "sensor_lost_exit": float64(st.LostExit),
			"created_at_once": float64(c.sensorCreated.Load()), "terminated_at_once": float64(c.sensorTerminated.Load()),
			"unenriched": float64(c.enrichMissed.Load()), "resync_skipped": float64(resynced)}
	}
	return h
}

// sourceDegradedLocked reports whether the sensor lost events or stopped,
// or the connector overflowed or stopped. c.mu is held.
func (c *Collector) sourceDegradedLocked() bool {
	return c.sensor != nil && (c.sensorErr != nil || c.sensor.Stats().Lost > 0) || c.connectorDegradedLocked()
}
