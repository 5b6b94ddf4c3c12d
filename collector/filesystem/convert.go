package filesystem

import (
	"time"

	"github.com/daemoneye/daemoneye/collector/filesystem/sensor"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/topics"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Topic returns the topic an event of that operation is published on (see
// the package documentation), or "" for an unknown one.
func Topic(op sensor.Op) string {
	if int(op) < len(opTopics) {
		return opTopics[op]
	}
	return ""
}

var opTopics = func() []string {
	t := make([]string, sensor.OpRead+1)
	for op := sensor.OpOpenWrite; op < sensor.OpRead; op++ {
		t[op] = topics.FilesystemOperations + "." + op.String()
	}
	t[sensor.OpRead] = topics.FilesystemAccess + ".read"
	return t
}()

// Operation and subtype of each sensor.Op.
var (
	opOperations = [...]eventbusv1.FileOperation{
		sensor.OpOpenWrite: eventbusv1.FileOperation_FILE_OPERATION_OPEN_WRITE,
		sensor.OpCreate:    eventbusv1.FileOperation_FILE_OPERATION_CREATE,
		sensor.OpTruncate:  eventbusv1.FileOperation_FILE_OPERATION_TRUNCATE,
		sensor.OpUnlink:    eventbusv1.FileOperation_FILE_OPERATION_UNLINK,
		sensor.OpRename:    eventbusv1.FileOperation_FILE_OPERATION_RENAME,
		sensor.OpChmod:     eventbusv1.FileOperation_FILE_OPERATION_CHMOD,
		sensor.OpChown:     eventbusv1.FileOperation_FILE_OPERATION_CHOWN,
		sensor.OpLink:      eventbusv1.FileOperation_FILE_OPERATION_LINK,
		sensor.OpSymlink:   eventbusv1.FileOperation_FILE_OPERATION_SYMLINK,
		sensor.OpRead:      eventbusv1.FileOperation_FILE_OPERATION_READ,
	}
	opSubtypes = [...]eventbusv1.FilesystemEventSubtype{
		sensor.OpOpenWrite: eventbusv1.FilesystemEventSubtype_FILESYSTEM_EVENT_SUBTYPE_MODIFIED,
		sensor.OpCreate:    eventbusv1.FilesystemEventSubtype_FILESYSTEM_EVENT_SUBTYPE_CREATED,
		sensor.OpTruncate:  eventbusv1.FilesystemEventSubtype_FILESYSTEM_EVENT_SUBTYPE_MODIFIED,
		sensor.OpUnlink:    eventbusv1.FilesystemEventSubtype_FILESYSTEM_EVENT_SUBTYPE_DELETED,
		sensor.OpRename:    eventbusv1.FilesystemEventSubtype_FILESYSTEM_EVENT_SUBTYPE_RENAMED,
		sensor.OpChmod:     eventbusv1.FilesystemEventSubtype_FILESYSTEM_EVENT_SUBTYPE_ATTRIBUTES_CHANGED,
		sensor.OpChown:     eventbusv1.FilesystemEventSubtype_FILESYSTEM_EVENT_SUBTYPE_ATTRIBUTES_CHANGED,
		sensor.OpLink:      eventbusv1.FilesystemEventSubtype_FILESYSTEM_EVENT_SUBTYPE_CREATED,
		sensor.OpSymlink:   eventbusv1.FilesystemEventSubtype_FILESYSTEM_EVENT_SUBTYPE_CREATED,
		sensor.OpRead:      eventbusv1.FilesystemEventSubtype_FILESYSTEM_EVENT_SUBTYPE_ACCESSED,
	}
)

// procKey identifies a process: a reused pid is another process.
type procKey struct {
	pid   uint32
	start time.Duration
}

// proc is what the converter keeps of a process: its strings, shared by
// its events, and its start time as a Timestamp (read-only once
// published).
type proc struct {
	exe, name string
	start     *timestamppb.Timestamp
}

// maxProcs bounds the process cache; when full it starts over.
const maxProcs = 4096

// converter turns sensor events into FilesystemEventData. It is used by
// one goroutine (the sensor's reader).
type converter struct {
	procs    map[procKey]*proc
	bootTime time.Time // wall time at boot, for start times
}

func (c *converter) init() {
	c.procs = make(map[procKey]*proc)
	c.bootTime = bootTime()
}

// process returns the cached strings of e's process, refreshed when its
// executable or name changed (an exec keeps pid and start time).
func (c *converter) process(e *sensor.Event) *proc {
	k := procKey{e.PID, e.Start}
	p := c.procs[k]
	if p != nil && p.exe == string(e.Exe) && p.name == string(e.Comm) {
		return p
	}
	if len(c.procs) >= maxProcs {
		clear(c.procs)
	}
	p = &proc{exe: string(e.Exe), name: string(e.Comm), start: timestamppb.New(c.bootTime.Add(e.Start))}
	c.procs[k] = p
	return p
}

// convert returns the topic and the event data of e (CollectionTime left
// for the caller).
func (c *converter) convert(e *sensor.Event) (string, *eventbusv1.FilesystemEventData) {
	p := c.process(e)
	r := &eventbusv1.FilesystemRecord{
		Path: string(e.Path), Pid: e.PID, ProcessName: p.name, Uid: e.UID,
		ExecutablePath: p.exe, Operation: opOperations[e.Op], Ppid: e.PPID, ProcessStartTime: p.start,
		Euid: e.EUID, CgroupId: e.CgroupID, OpenFlags: e.OpenFlags,
		PathTruncated: e.Flags&(sensor.PathTruncated|sensor.OldPathTruncated|sensor.ExeTruncated) != 0,
	}
	if len(e.OldPath) > 0 {
		r.OldPath = string(e.OldPath)
	}
	switch e.Op {
	case sensor.OpChmod:
		r.NewMode, r.SetuidSet, r.SetgidSet = e.NewMode, e.SetUID(), e.SetGID()
	case sensor.OpChown:
		r.NewUid, r.NewGid = e.NewUID, e.NewGID
	case sensor.OpSymlink:
		r.LinkTarget = string(e.Target)
	}
	d := &eventbusv1.FilesystemEventData{Filesystem: r, Subtype: opSubtypes[e.Op]}
	if e.Ino != 0 {
		d.FileMetadata = &eventbusv1.FileMetadata{FileType: fileType(e.Mode), SizeBytes: e.Size, Mode: e.Mode & 0o7777,
			OwnerUid: e.OwnerUID, OwnerGid: e.OwnerGID, Inode: e.Ino, Device: uint64(e.Dev)}
	}
	return Topic(e.Op), d
}

// fileType maps st_mode's type bits.
func fileType(mode uint32) eventbusv1.FileType {
	switch mode & 0o170000 {
	case 0o100000:
		return eventbusv1.FileType_FILE_TYPE_REGULAR
	case 0o040000:
		return eventbusv1.FileType_FILE_TYPE_DIRECTORY
	case 0o120000:
		return eventbusv1.FileType_FILE_TYPE_SYMLINK
	case 0o010000:
		return eventbusv1.FileType_FILE_TYPE_FIFO
	case 0o140000:
		return eventbusv1.FileType_FILE_TYPE_SOCKET
	case 0o060000, 0o020000:
		return eventbusv1.FileType_FILE_TYPE_DEVICE
	}
	return eventbusv1.FileType_FILE_TYPE_UNSPECIFIED
}
