package process

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The netlink process connector (cn_proc): with SourceConnector, or
// SourceAuto without eBPF, the kernel reports every fork, exec and exit
// on a NETLINK_CONNECTOR socket subscribed to the CN_IDX_PROC group. The
// events carry pids only: on an exec the collector reads the process from
// /proc at once with the scanner's reader, and a process already gone is
// published with what is known (pid, the parent from its fork, its start
// time from its fork) and accessible=false.
//
// The socket needs CAP_NET_ADMIN, and the kernel answers a subscription
// only from the initial user and pid namespaces; without an answer within
// connectorAckTimeout the connector counts as unavailable.

// ErrConnector is wrapped by the errors that say the netlink process
// connector cannot be used here.
var ErrConnector = errors.New("process: the netlink process connector is unavailable")

// Constants of linux/connector.h and linux/cn_proc.h (x/sys/unix has
// NETLINK_CONNECTOR only).
const (
	cnIdxProc         = 0x1 // CN_IDX_PROC, also the multicast group
	cnValProc         = 0x1 // CN_VAL_PROC
	procCnMcastListen = 1   // PROC_CN_MCAST_LISTEN
	procCnMcastIgnore = 2   // PROC_CN_MCAST_IGNORE

	procEventNone = 0x00000000 // PROC_EVENT_NONE: the acknowledgement of a subscription
	procEventFork = 0x00000001
	procEventExec = 0x00000002
	procEventExit = 0x80000000
)

// Layout of a message: struct nlmsghdr (16 bytes), struct cn_msg (20
// bytes, then len bytes of data), struct proc_event (what, cpu,
// timestamp_ns: 16 bytes, then the event's data). Host byte order.
const (
	nlmsgHdrLen  = 16
	cnMsgHdrLen  = 20
	procEvHdrLen = 16
	nlmsgDone    = 3 // NLMSG_DONE: the type every connector message has
)

// Defaults of the connector.
const (
	// connectorRcvBuf is the receive buffer asked for with
	// SO_RCVBUFFORCE (CAP_NET_ADMIN), else SO_RCVBUF (capped by
	// net.core.rmem_max). Each event takes about 800 bytes of it (the
	// kernel counts the socket buffer's overhead), so 4 MiB hold about
	// 5,000 events while the reader reads /proc.
	connectorRcvBuf = 4 << 20
	// connectorAckTimeout is how long the kernel has to acknowledge the
	// subscription.
	connectorAckTimeout = time.Second
	// connectorMaxForks bounds the forks remembered for the parent and
	// start time of a child that executes and ends before /proc is read.
	connectorMaxForks = 8192
	// forkSlack is how many clock ticks (10 ms each) a fork event may
	// come after the child's start.
	forkSlack = 10
)

// connectorOptions are the connector's settings; the zero value is the
// defaults. Tests set them through Options.connector.
type connectorOptions struct {
	rcvBuf     int           // bytes; 0: connectorRcvBuf
	ackTimeout time.Duration // 0: connectorAckTimeout
	// badListen subscribes with a message the kernel ignores without an
	// answer, as a kernel that cannot report to this namespace does.
	badListen bool
}

// cnEvent is one process connector event, decoded. Which fields are set
// depends on What: fork (PID and TGID are the child's, ParentPID and
// ParentTGID the parent's), exec (PID, TGID), exit (PID, TGID, ExitCode,
// ExitSignal, and the parent's pid and tgid from Linux 4.18), none (Err,
// with Seq and Ack of the cn_msg: a subscription's acknowledgement).
type cnEvent struct {
	What                             uint32
	Time                             uint64 // timestamp_ns: CLOCK_MONOTONIC
	PID, TGID, ParentPID, ParentTGID uint32
	ExitCode, ExitSignal             uint32 // exit: the wait status (code<<8 | signal) and the signal sent to the parent
	Err                              uint32
	Seq, Ack                         uint32
}

// nextEvent decodes the first netlink message of b, a datagram read from
// the socket. ok says whether it was a process connector event of a kind
// the collector uses (fork, exec, exit or an acknowledgement); rest is
// what follows it. No length in b is trusted: a header that claims more
// than b holds, or less than itself, ends the datagram (rest is nil), and
// a message too short for what its type needs is skipped. It does not
// allocate.
func nextEvent(b []byte) (ev cnEvent, ok bool, rest []byte) {
	ne := binary.NativeEndian
	if len(b) < nlmsgHdrLen {
		return ev, false, nil
	}
	n := int(ne.Uint32(b[0:]))
	if n < nlmsgHdrLen || n > len(b) {
		return ev, false, nil
	}
	if next := (n + 3) &^ 3; next < len(b) {
		rest = b[next:]
	}
	if ne.Uint16(b[4:]) != nlmsgDone {
		return ev, false, rest
	}
	m := b[nlmsgHdrLen:n]
	if len(m) < cnMsgHdrLen || ne.Uint32(m[0:]) != cnIdxProc || ne.Uint32(m[4:]) != cnValProc {
		return ev, false, rest
	}
	ev.Seq, ev.Ack = ne.Uint32(m[8:]), ne.Uint32(m[12:])
	dlen := int(ne.Uint16(m[16:]))
	if cnMsgHdrLen+dlen > len(m) || dlen < procEvHdrLen {
		return ev, false, rest
	}
	d := m[cnMsgHdrLen : cnMsgHdrLen+dlen]
	ev.What, ev.Time = ne.Uint32(d[0:]), ne.Uint64(d[8:])
	u := d[procEvHdrLen:]
	switch ev.What {
	case procEventNone:
		if len(u) < 4 {
			return ev, false, rest
		}
		ev.Err = ne.Uint32(u[0:])
	case procEventFork:
		if len(u) < 16 {
			return ev, false, rest
		}
		ev.ParentPID, ev.ParentTGID, ev.PID, ev.TGID = ne.Uint32(u[0:]), ne.Uint32(u[4:]), ne.Uint32(u[8:]), ne.Uint32(u[12:])
	case procEventExec:
		if len(u) < 8 {
			return ev, false, rest
		}
		ev.PID, ev.TGID = ne.Uint32(u[0:]), ne.Uint32(u[4:])
	case procEventExit:
		if len(u) < 16 {
			return ev, false, rest
		}
		ev.PID, ev.TGID, ev.ExitCode, ev.ExitSignal = ne.Uint32(u[0:]), ne.Uint32(u[4:]), ne.Uint32(u[8:]), ne.Uint32(u[12:])
		if len(u) >= 24 {
			ev.ParentPID, ev.ParentTGID = ne.Uint32(u[16:]), ne.Uint32(u[20:])
		}
	default:
		return ev, false, rest
	}
	return ev, true, rest
}

// appendMcastOp appends the message that subscribes (procCnMcastListen)
// or unsubscribes (procCnMcastIgnore) a socket, with seq as its sequence
// number and acknowledgement number (the kernel answers with seq+1 as its
// acknowledgement number, and its own sequence number, at least on Linux
// 6.18). opLen is the length of the operation: 4, or another to have the kernel
// ignore it.
func appendMcastOp(b []byte, op, seq uint32, opLen int) []byte {
	ne := binary.NativeEndian
	total := nlmsgHdrLen + cnMsgHdrLen + opLen
	b = ne.AppendUint32(b, uint32(total))
	b = ne.AppendUint16(b, nlmsgDone)
	b = ne.AppendUint16(b, 0)             // flags
	b = ne.AppendUint32(b, seq)           // nlmsg_seq
	b = ne.AppendUint32(b, 0)             // nlmsg_pid
	b = ne.AppendUint32(b, cnIdxProc)     // cb_id.idx
	b = ne.AppendUint32(b, cnValProc)     // cb_id.val
	b = ne.AppendUint32(b, seq)           // seq
	b = ne.AppendUint32(b, seq)           // ack
	b = ne.AppendUint16(b, uint16(opLen)) // len
	b = ne.AppendUint16(b, 0)             // flags
	op4 := ne.AppendUint32(nil, op)
	for i := range opLen {
		if i < len(op4) {
			b = append(b, op4[i])
		} else {
			b = append(b, 0)
		}
	}
	return b
}

// connector is a subscribed process connector socket. recv is called by
// one goroutine at a time; the counters may be read from any.
type connector struct {
	f          *os.File // non-blocking, in the runtime's poller: Close and deadlines unblock recv
	rc         syscall.RawConn
	seq        uint32
	wallOffset int64 // CLOCK_REALTIME - CLOCK_MONOTONIC, ns
	bootOffset int64 // CLOCK_BOOTTIME - CLOCK_MONOTONIC, ns

	// recv's state, kept so that a read does not allocate.
	buf    []byte
	sa     unix.RawSockaddrNetlink
	salen  uint32
	n      int
	errno  syscall.Errno
	readFn func(fd uintptr) bool

	// The reader's: child tgid → its fork, bounded by connectorMaxForks.
	forks   map[uint32]cnFork
	scanner *Scanner // the reader's /proc reader, nothing kept open

	// Under the collector's mu: what recent scans published as created,
	// by pid (noteScanCreatedLocked).
	scanCreated map[uint32]scanCreated

	// events read, ENOBUFS errors (each followed by a rescan), and execs
	// whose process was gone from /proc before it could be read.
	events, enobufs, unreadable atomic.Uint64

	closeOnce sync.Once
	closed    atomic.Bool
}

// cnFork is what a fork event tells of the child.
type cnFork struct {
	ppid uint32
	at   uint64 // CLOCK_MONOTONIC, ns
}

var errConnectorNoAck = errors.New("the kernel did not acknowledge the subscription (Linux without CONFIG_PROC_EVENTS, or procmond in a container's pid or user namespace)")

// openConnector opens a netlink process connector socket, raises its
// receive buffer, subscribes it and waits for the kernel's
// acknowledgement. Its errors wrap ErrConnector.
func openConnector(o connectorOptions) (*connector, error) {
	if o.rcvBuf <= 0 {
		o.rcvBuf = connectorRcvBuf
	}
	if o.ackTimeout <= 0 {
		o.ackTimeout = connectorAckTimeout
	}
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.NETLINK_CONNECTOR)
	if err != nil {
		return nil, fmt.Errorf("%w: socket: %w", ErrConnector, err)
	}
	if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, o.rcvBuf) != nil {
		// Without CAP_NET_ADMIN: as much as net.core.rmem_max allows.
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, o.rcvBuf)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: cnIdxProc}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%w: join the process events group: %w (needs CAP_NET_ADMIN)", ErrConnector, err)
	}
	f := os.NewFile(uintptr(fd), "netlink-process-connector")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %w", ErrConnector, err)
	}
	cn := &connector{f: f, rc: rc, seq: uint32(time.Now().UnixNano()) ^ uint32(os.Getpid())<<16, buf: make([]byte, 8<<10), forks: map[uint32]cnFork{}, scanCreated: map[uint32]scanCreated{}}
	cn.readFn = cn.read
	var mono, wall, boot unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &mono)
	unix.ClockGettime(unix.CLOCK_REALTIME, &wall)
	unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot)
	cn.wallOffset, cn.bootOffset = wall.Nano()-mono.Nano(), boot.Nano()-mono.Nano()
	opLen := 4
	if o.badListen {
		opLen = 3
	}
	if err := cn.send(procCnMcastListen, opLen); err != nil {
		cn.f.Close()
		return nil, fmt.Errorf("%w: subscribe: %w", ErrConnector, err)
	}
	if err := cn.awaitAck(o.ackTimeout); err != nil {
		cn.close() // the kernel may have subscribed it all the same
		return nil, fmt.Errorf("%w: %w", ErrConnector, err)
	}
	return cn, nil
}

// send sends a subscription operation to the kernel.
func (cn *connector) send(op uint32, opLen int) error {
	msg := appendMcastOp(nil, op, cn.seq, opLen)
	var serr error
	err := cn.rc.Write(func(fd uintptr) bool {
		for {
			_, serr = unix.Write(int(fd), msg)
			if serr != unix.EINTR {
				return serr != unix.EAGAIN
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// awaitAck reads until the kernel acknowledges the subscription sent
// with cn.seq, for at most timeout. Events read before it are dropped:
// the first scan follows.
func (cn *connector) awaitAck(timeout time.Duration) error {
	if err := cn.f.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	defer cn.f.SetReadDeadline(time.Time{})
	for {
		b, err := cn.recv()
		switch {
		case errors.Is(err, os.ErrDeadlineExceeded):
			return fmt.Errorf("%w within %v", errConnectorNoAck, timeout)
		case errors.Is(err, unix.ENOBUFS):
			continue
		case err != nil:
			return err
		}
		for len(b) > 0 {
			var ev cnEvent
			var ok bool
			ev, ok, b = nextEvent(b)
			// The kernel answers with our ack+1; other subscribers'
			// answers reach every member of the group.
			if ok && ev.What == procEventNone && ev.Ack == cn.seq+1 {
				if ev.Err != 0 {
					return fmt.Errorf("the kernel refused the subscription: %w", syscall.Errno(ev.Err))
				}
				return nil
			}
		}
	}
}

// read is recv's callback: one recvfrom, false to wait for the socket.
func (cn *connector) read(fd uintptr) bool {
	for {
		cn.salen = unix.SizeofSockaddrNetlink
		n, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&cn.buf[0])), uintptr(len(cn.buf)), 0,
			uintptr(unsafe.Pointer(&cn.sa)), uintptr(unsafe.Pointer(&cn.salen)))
		switch errno {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		cn.n, cn.errno = int(n), errno
		return true
	}
}

// recv returns the next datagram from the kernel, valid until the next
// recv. It returns an error wrapping unix.ENOBUFS when the socket
// overflowed (events were lost), os.ErrDeadlineExceeded after a
// deadline, and os.ErrClosed after close. Datagrams from another sender
// than the kernel are dropped.
func (cn *connector) recv() ([]byte, error) {
	for {
		if err := cn.rc.Read(cn.readFn); err != nil {
			if cn.closed.Load() {
				return nil, os.ErrClosed
			}
			return nil, err
		}
		if cn.errno != 0 {
			return nil, cn.errno
		}
		if cn.sa.Pid != 0 || cn.n > len(cn.buf) {
			continue // not the kernel's
		}
		return cn.buf[:cn.n], nil
	}
}

// close unsubscribes (so that the kernel stops building events when no one
// listens) and closes the socket.
func (cn *connector) close() error {
	var err error
	cn.closeOnce.Do(func() {
		cn.send(procCnMcastIgnore, 4)
		cn.closed.Store(true)
		err = cn.f.Close()
	})
	return err
}

// wall converts an event's CLOCK_MONOTONIC time to wall time.
func (cn *connector) wall(ns uint64) time.Time {
	return time.Unix(0, int64(ns)+cn.wallOffset)
}

// ticks converts an event's CLOCK_MONOTONIC time to clock ticks after
// boot, as a process's start time in /proc/<pid>/stat.
func (cn *connector) ticks(ns uint64) uint64 {
	return ticksOf(time.Duration(int64(ns) + cn.bootOffset))
}

// openConnector opens the connector for the collector, with its own
// /proc reader for the execs.
func (c *Collector) openConnector() error {
	cn, err := openConnector(c.opts.connector)
	if err != nil {
		return err
	}
	if cn.scanner, err = NewScanner(ScannerOptions{ProcRoot: c.opts.ProcRoot, MaxTracked: -1}); err != nil {
		cn.close()
		return err
	}
	c.cn = cn
	return nil
}

// closeConnector closes the connector and its /proc reader.
func (c *Collector) closeConnector() {
	if err := c.cn.close(); err != nil {
		c.log.Warn("procmond: closing the process connector", "err", err)
	}
	c.cn.scanner.Close()
}

// ProbeConnector reports whether this process can use the netlink process
// connector: it subscribes, waits up to a second for the kernel's
// acknowledgement and unsubscribes. The error wraps ErrConnector.
func ProbeConnector() error {
	cn, err := openConnector(connectorOptions{})
	if err != nil {
		return err
	}
	return cn.close()
}

// readConnector reads the connector's events until ctx ends, handing
// forks, execs and exits to onConnector. An ENOBUFS error (the socket
// overflowed: events were lost) is counted and makes the collector scan
// /proc at once.
func (c *Collector) readConnector(ctx context.Context) error {
	cn := c.cn
	stop := context.AfterFunc(ctx, func() { cn.f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	for {
		b, err := cn.recv()
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(err, unix.ENOBUFS):
			if cn.enobufs.Add(1) == 1 {
				c.log.Warn("procmond: the process connector's receive buffer overflowed and events were lost; scanning /proc now, and after every overflow", "events", cn.events.Load())
			}
			c.requestScan()
			continue
		case err != nil:
			return err
		}
		for len(b) > 0 {
			var ev cnEvent
			var ok bool
			if ev, ok, b = nextEvent(b); ok {
				cn.events.Add(1)
				c.onConnector(&ev)
			}
		}
	}
}

// requestScan makes Run scan /proc now, unless a scan is already asked
// for. It is safe for concurrent use.
func (c *Collector) requestScan() {
	select {
	case c.rescan <- struct{}{}:
	default:
	}
}

// startConnector starts the connector's reader and returns what stops it
// and waits for it.
func (c *Collector) startConnector(ctx context.Context) (stop func()) {
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := c.readConnector(sctx); err != nil {
			c.errs.Add(1)
			c.mu.Lock()
			c.sensorErr = err
			c.mu.Unlock()
			c.log.Error("procmond: the process connector stopped; only the /proc scan runs now", "err", err)
		}
	})
	return sync.OnceFunc(func() {
		cancel()
		wg.Wait()
		c.closeConnector()
	})
}

// onConnector handles one event: a fork is remembered (it is not
// published), an exec is published as CREATED and a process's exit as
// TERMINATED. Events of threads are left out.
func (c *Collector) onConnector(ev *cnEvent) {
	cn := c.cn
	switch ev.What {
	case procEventFork:
		if ev.PID != ev.TGID {
			return // a new thread
		}
		if len(cn.forks) >= connectorMaxForks {
			for k := range cn.forks { // forget one at random
				delete(cn.forks, k)
				break
			}
		}
		cn.forks[ev.TGID] = cnFork{ppid: ev.ParentTGID, at: ev.Time}
	case procEventExec:
		c.onConnectorExec(ev)
	case procEventExit:
		if ev.PID != ev.TGID {
			return // a thread
		}
		delete(cn.forks, ev.TGID)
		c.onConnectorExit(ev)
	}
}

// onConnectorExec reads the process that executed from /proc, or builds
// what is known of it when it is gone, and publishes it as CREATED.
func (c *Collector) onConnectorExec(ev *cnEvent) {
	cn := c.cn
	pid, at := ev.TGID, cn.wall(ev.Time)
	c.mu.Lock()
	cn.scanner.hashes = nil
	if c.hashOn {
		cn.scanner.hashes = c.hashes
	}
	c.mu.Unlock()
	cn.scanner.gen++
	t := cn.scanner.read(pid, at)
	var r *eventbusv1.ProcessRecord
	var key Key
	// A process that started after the exec is another that reused the pid.
	if t != nil && t.key.Start <= cn.ticks(ev.Time)+1 {
		r, key = t.rec, t.key
		r.CollectionTime = timestamppb.New(at)
		if r.GetExecutablePath() == "" || len(r.GetCommandLine()) == 0 {
			// Exiting or a zombie already: its name, ids, parent and
			// start time are still there, its arguments (its memory is
			// gone) and maybe its image are not. A process that exec'd
			// has its argv in memory until it exits (one exec'd with no
			// arguments at all, as some exploits do, is published the
			// same way: accessible=false).
			r.Accessible = false
		}
	}
	if t != nil {
		cn.scanner.forget(t)
		delete(cn.scanner.procs, pid)
	}
	if r == nil || !r.GetAccessible() {
		cn.unreadable.Add(1)
	}
	if r == nil {
		// Gone: what the events told.
		r = &eventbusv1.ProcessRecord{Pid: pid, CommandLine: []string{}, CollectionTime: timestamppb.New(at)}
		key = Key{PID: pid}
		if f, ok := cn.forks[pid]; ok {
			key.Start = cn.ticks(f.at)
			r.Ppid, r.StartTime = f.ppid, timestamppb.New(c.bootTime.Add(time.Duration(key.Start)*(time.Second/userHZ)))
		}
	}
	c.mu.Lock()
	if !r.GetAccessible() {
		if sk := c.scannedLocked(pid, key, ev.Time, at); sk != nil && !c.isPublishedLocked(*sk) {
			// The scan read this process and published it, with more
			// than this record has (unless it read it between its fork
			// and its exec, a window of microseconds to a scan's
			// milliseconds).
			c.mu.Unlock()
			return
		}
	}
	s, pub := c.sensorRecs[key]
	old, scanned := c.cur[key]
	if (pub && r.GetAccessible() && sameImage(s.rec, r)) || (scanned && !pub && sameImage(old, r)) {
		// Published already: by this source (a second exec event read
		// the same image) or by the scan, after the exec.
		c.mu.Unlock()
		return
	}
	c.sensorRecs[key] = sensorRec{rec: r, gen: c.scans}
	c.sensorByPID[pid] = r
	parent := c.parentLocked(r.GetPpid())
	c.mu.Unlock()
	c.sensorCreated.Add(1)
	c.publishAt(Change{Subtype: eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_CREATED, Record: r, Key: key,
		KernelEvent: eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_EXEC}, parent, at)
}

// scannedLocked returns the key under which the latest scan knows the
// process pid that executed at execTime (CLOCK_MONOTONIC; at in wall
// time), whose fork key knows (Start 0: not seen), or nil. A record of the
// pid is that process when it started at most forkSlack ticks before the
// fork event's time (the event comes after the start, later on a loaded
// machine) and not after it, or when the scan began after the exec (a pid
// is not reused while its process lives). c.mu is held.
func (c *Collector) scannedLocked(pid uint32, key Key, execTime uint64, at time.Time) *Key {
	match := func(k Key, read time.Time) *Key {
		nearFork := key.Start != 0 && k.Start+forkSlack >= key.Start && k.Start <= key.Start+1
		if k.Start > c.cn.ticks(execTime)+1 || (!nearFork && !read.After(at)) {
			return nil
		}
		return &k
	}
	if sp := c.byPID[pid]; sp != nil {
		if k := match(c.keyOf(sp), sp.GetCollectionTime().AsTime()); k != nil {
			return k
		}
	}
	// A scan since ended: the reader may lag several scans behind.
	if sc, ok := c.cn.scanCreated[pid]; ok {
		return match(sc.key, sc.at)
	}
	return nil
}

// scanCreated is a process a scan published as created.
type scanCreated struct {
	key Key
	at  time.Time // the scan's time
	gen uint64    // c.scans then
}

// Bounds of connector.scanCreated: the scans it covers, and its size.
const (
	scanCreatedScans = 64
	scanCreatedMax   = 16384
)

// noteScanCreatedLocked remembers, for a while, the processes a scan
// published as created, so that an exec the reader handles after a
// later scan no longer shows the process is not published twice. c.mu is
// held.
func (c *Collector) noteScanCreatedLocked(changes []Change, at time.Time) {
	if c.cn == nil {
		return
	}
	m := c.cn.scanCreated
	for pid, sc := range m {
		if sc.gen+scanCreatedScans < c.scans || len(m) >= scanCreatedMax {
			delete(m, pid)
		}
	}
	for _, ch := range changes {
		if ch.Subtype == eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_CREATED && len(m) < scanCreatedMax {
			m[ch.Key.PID] = scanCreated{key: ch.Key, at: at, gen: c.scans}
		}
	}
}

// isPublishedLocked reports whether this source published the process
// key. c.mu is held.
func (c *Collector) isPublishedLocked(key Key) bool {
	_, ok := c.sensorRecs[key]
	return ok
}

// sameImage reports whether two records of a process show the same
// executable and command line.
func sameImage(a, b *eventbusv1.ProcessRecord) bool {
	if a.GetExecutablePath() != b.GetExecutablePath() || len(a.GetCommandLine()) != len(b.GetCommandLine()) {
		return false
	}
	for i, s := range a.GetCommandLine() {
		if b.GetCommandLine()[i] != s {
			return false
		}
	}
	return true
}

// keyOf is the key of a record this collector built: its pid and its
// start time in clock ticks (0 when unknown).
func (c *Collector) keyOf(r *eventbusv1.ProcessRecord) Key {
	k := Key{PID: r.GetPid()}
	if r.StartTime != nil {
		k.Start = uint64(r.GetStartTime().AsTime().Sub(c.bootTime) / (time.Second / userHZ))
	}
	return k
}

// onConnectorExit publishes TERMINATED for the process that ended, if
// this source published it or the scan knows it (by pid: an exiting
// process's pid is not reused before its parent reaps it), and makes the
// scan skip its own TERMINATED for it.
func (c *Collector) onConnectorExit(ev *cnEvent) {
	pid, at := ev.TGID, c.cn.wall(ev.Time)
	c.mu.Lock()
	r := c.sensorByPID[pid]
	if r == nil {
		r = c.byPID[pid]
	}
	if r == nil {
		// Never executed while the connector ran, and no scan saw it:
		// nothing was published of it.
		c.mu.Unlock()
		return
	}
	key := c.keyOf(r)
	if _, done := c.exited[key]; done {
		c.mu.Unlock()
		return
	}
	if cur, ok := c.cur[key]; ok {
		r = cur
	}
	if s, ok := c.sensorRecs[key]; ok {
		r = s.rec
		delete(c.sensorRecs, key)
	}
	if p := c.sensorByPID[pid]; p != nil && c.keyOf(p) == key {
		delete(c.sensorByPID, pid)
	}
	c.exited[key] = struct{}{}
	parent := c.parentLocked(r.GetPpid())
	c.mu.Unlock()
	c.sensorTerminated.Add(1)
	c.publishAt(Change{Subtype: eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_TERMINATED, Record: r, Key: key,
		KernelEvent: eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_EXIT, ExitStatus: ev.ExitCode}, parent, at)
}

// connectorHealth is the "source" component with the connector active.
// Overflows (ENOBUFS: events lost, each followed by a rescan) or a stopped
// reader make it degraded.
func (c *Collector) connectorHealth(h *eventbusv1.ComponentHealth, metrics bool) *eventbusv1.ComponentHealth {
	cn := c.cn
	c.mu.Lock()
	serr, resynced := c.sensorErr, c.resynced
	c.mu.Unlock()
	events, enobufs, unreadable := cn.events.Load(), cn.enobufs.Load(), cn.unreadable.Load()
	h.Message = fmt.Sprintf("connector: %d events, %d overflows (ENOBUFS, each followed by a rescan); %d created and %d terminated published at once, %d execs gone before /proc could be read",
		events, enobufs, c.sensorCreated.Load(), c.sensorTerminated.Load(), unreadable)
	switch {
	case serr != nil:
		h.Status, h.Message = eventbusv1.HealthStatus_HEALTH_STATUS_DEGRADED, "connector stopped, polling only: "+serr.Error()
	case enobufs > 0:
		h.Status = eventbusv1.HealthStatus_HEALTH_STATUS_DEGRADED
	}
	if metrics {
		h.Metrics = map[string]float64{"ebpf": 0, "connector": 1, "connector_events": float64(events), "connector_enobufs": float64(enobufs),
			"connector_unreadable": float64(unreadable), "created_at_once": float64(c.sensorCreated.Load()),
			"terminated_at_once": float64(c.sensorTerminated.Load()), "resync_skipped": float64(resynced)}
	}
	return h
}

// connectorDegradedLocked reports whether the connector overflowed or
// stopped. c.mu is held.
func (c *Collector) connectorDegradedLocked() bool {
	return c.cn != nil && (c.sensorErr != nil || c.cn.enobufs.Load() > 0)
}

// connectorCounters adds the connector's counters to a heartbeat's.
func (c *Collector) connectorCounters(m map[string]uint64) {
	if c.cn == nil {
		return
	}
	m["connector_events"], m["connector_enobufs"], m["connector_unreadable"] = c.cn.events.Load(), c.cn.enobufs.Load(), c.cn.unreadable.Load()
}
