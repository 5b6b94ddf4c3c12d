package security

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/collector/security/sensor"
	"github.com/daemoneye/daemoneye/envelope"
	"github.com/daemoneye/daemoneye/eventbus"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/topics"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// ErrUnsupported wraps sensor.ErrUnsupported: the kernel or the process's
// privileges do not allow the eBPF security sensor.
var ErrUnsupported = sensor.ErrUnsupported

// exeCacheMax bounds the executable path cache; when full it is emptied.
const exeCacheMax = 4096

// Options configure Open. The zero value is usable.
type Options struct {
	// SourceID is the envelopes' source id (the collector's id).
	SourceID string
	// ExcludeBPF are process ids whose BPF program loads are not reported;
	// Open adds its own process.
	ExcludeBPF []uint32
	// RingBytes and Wakeup are the sensor's (sensor.Options); 0: defaults.
	RingBytes int
	Wakeup    time.Duration
	// ProcRoot is where /proc is; "" means "/proc".
	ProcRoot string
	// Logger receives what the sensor attached and publish failures. Nil:
	// nothing is logged.
	Logger *slog.Logger
}

// Stats are a Runner's counters since Open.
type Stats struct {
	// Sensor are the sensor's counters: Lost (in the kernel, per kind),
	// Events read, Malformed records.
	Sensor sensor.Stats
	// Published, Dropped (the send buffer was full) and Errors (other
	// publish failures) count envelopes.
	Published, Dropped, Errors uint64
}

// A Runner publishes kernel security events. Run reads from one goroutine;
// Stats and Close may be called from any.
type Runner struct {
	s    *sensor.Sensor
	opts Options
	log  *slog.Logger

	published, dropped, errs atomic.Uint64

	mu  sync.Mutex // guards exe (Run writes, nobody else reads)
	exe map[procKey]string
}

type procKey struct {
	pid   uint32
	start uint64
}

// Open opens the eBPF security sensor. It returns an error wrapping
// ErrUnsupported when the kernel or the privileges do not allow it.
func Open(opts Options) (*Runner, error) {
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s, err := sensor.Open(sensor.Options{RingBytes: opts.RingBytes, Wakeup: opts.Wakeup, Logger: log,
		ExcludeBPF: append([]uint32{uint32(os.Getpid())}, opts.ExcludeBPF...)})
	if err != nil {
		return nil, fmt.Errorf("security: %w", err)
	}
	return &Runner{s: s, opts: opts, log: log, exe: make(map[procKey]string)}, nil
}

// Run publishes each event as an envelope with publish (client.Conn's
// PublishMsg) until ctx is done (it returns nil) or the Runner is closed
// (sensor.ErrClosed). A publish error is counted (client.ErrBufferFull as
// dropped) and logged, and Run goes on.
func (r *Runner) Run(ctx context.Context, publish func(*client.Msg) error) error {
	err := r.s.Run(ctx, func(e *sensor.Event) error {
		r.publish(e, publish)
		return nil
	})
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
		return nil
	}
	return err
}

func (r *Runner) publish(e *sensor.Event, publish func(*client.Msg) error) {
	topic, prio := Topic(e)
	data := Convert(e, r.exePath(e.PID, e.Start))
	msg := envelope.New(topic, e.Time, &eventbusv1.CollectionEvent{Event: &eventbusv1.CollectionEvent_Security{Security: data}})
	msg.Metadata.SourceId = r.opts.SourceID
	msg.Metadata.Priority = eventbusv1.Priority(prio)
	msg.Correlation = envelope.NewRoot()
	err := publish(&client.Msg{Topic: topic, Priority: prio, Value: envelope.Lazy{M: msg}})
	switch {
	case err == nil:
		r.published.Add(1)
	case errors.Is(err, client.ErrBufferFull):
		if n := r.dropped.Add(1); n == 1 || n%1000 == 0 {
			r.log.Warn("security: the broker is unreachable and the send buffer is full; security events are being dropped and counted", "dropped", n)
		}
	default:
		if r.errs.Add(1) == 1 {
			r.log.Warn("security: publish failed; further failures are only counted", "topic", topic, "err", err)
		}
	}
}

// exePath returns the executable of process pid started at start (boot
// clock ns), from the cache or /proc/<pid>/exe; "" when it is gone.
func (r *Runner) exePath(pid uint32, start uint64) string {
	k := procKey{pid, start}
	r.mu.Lock()
	defer r.mu.Unlock()
	if p, ok := r.exe[k]; ok {
		return p
	}
	p, err := os.Readlink(r.opts.ProcRoot + "/" + strconv.FormatUint(uint64(pid), 10) + "/exe")
	if err != nil {
		return "" // gone, or a kernel thread: not cached, it may come back readable
	}
	if len(r.exe) >= exeCacheMax {
		clear(r.exe)
	}
	r.exe[k] = p
	return p
}

// Stats returns the counters; it reads the kernel's loss counters (a few
// system calls).
func (r *Runner) Stats() Stats {
	return Stats{Sensor: r.s.Stats(), Published: r.published.Load(), Dropped: r.dropped.Load(), Errors: r.errs.Load()}
}

// Close detaches the sensor; a Run in progress returns. It may be called
// more than once.
func (r *Runner) Close() error { return r.s.Close() }

// Health describes the runner for a health check: degraded once events
// were lost in the kernel or dropped on the way to the broker. metrics
// adds the counters.
func (r *Runner) Health(now time.Time, metrics bool) *eventbusv1.ComponentHealth {
	st := r.Stats()
	h := &eventbusv1.ComponentHealth{Name: "security", Status: eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY,
		LastCheck: timestamppb.New(now),
		Message: fmt.Sprintf("eBPF security sensor: %d events, %d lost in the kernel, %d published, %d dropped",
			st.Sensor.Events, st.Sensor.Lost, st.Published, st.Dropped)}
	if st.Sensor.Lost > 0 || st.Dropped > 0 || st.Sensor.Malformed > 0 {
		h.Status = eventbusv1.HealthStatus_HEALTH_STATUS_DEGRADED
	}
	if metrics {
		h.Metrics = map[string]float64{"events": float64(st.Sensor.Events), "lost": float64(st.Sensor.Lost),
			"malformed": float64(st.Sensor.Malformed), "published": float64(st.Published), "dropped": float64(st.Dropped),
			"errors": float64(st.Errors)}
		for k := sensor.KindPtrace; k <= sensor.KindMax; k++ {
			h.Metrics["lost_"+k.String()] = float64(st.Sensor.LostByKind[k])
		}
	}
	return h
}

var kindTopics = [...]string{"", topics.SecurityPtrace, topics.SecurityModule, topics.SecurityCredentials,
	topics.SecurityMemfd, topics.SecurityBPF, topics.SecurityMount, topics.SecurityNamespace, topics.SecurityProcMem}

// Topic returns the topic and priority of e: high for ptrace, module
// loads, /proc/<pid>/mem writes, a bind mount over /proc/<pid> and a
// change to uid or euid 0; normal otherwise.
func Topic(e *sensor.Event) (string, eventbus.Priority) {
	t := topics.ProcessAnomaly
	if e.Kind >= 1 && e.Kind <= sensor.KindMax {
		t = kindTopics[e.Kind]
	}
	prio := eventbus.PriorityNormal
	switch {
	case e.Kind == sensor.KindPtrace, e.Kind == sensor.KindModule, e.Kind == sensor.KindProcMem,
		e.Flags&sensor.BindOverProcPID != 0,
		e.Kind == sensor.KindCredentials && (e.Creds.New.EUID == 0 && e.Creds.Old.EUID != 0 || e.Creds.New.UID == 0 && e.Creds.Old.UID != 0):
		prio = eventbus.PriorityHigh
	}
	return t, prio
}

// Convert returns e as a SecurityEventData, with exe as its executable
// path. It copies what it keeps of e.
func Convert(e *sensor.Event, exe string) *eventbusv1.SecurityEventData {
	d := &eventbusv1.SecurityEventData{
		Kind: eventbusv1.SecurityEventKind(e.Kind), Time: timestamppb.New(e.Time),
		Pid: e.PID, Tid: e.TID, Uid: e.UID, Euid: e.EUID, Comm: string(e.Comm), ExecutablePath: exe,
		CgroupId: e.CgroupID, KernelTimeNs: e.BootNS, ProcessStartNs: e.Start, Result: e.Result,
		Truncated: e.Flags&(sensor.NameTruncated|sensor.SourceTruncated|sensor.TargetTruncated) != 0,
	}
	switch e.Kind {
	case sensor.KindPtrace:
		d.Ptrace = &eventbusv1.SecurityPtrace{Request: e.Ptrace.Request, TargetPid: e.Ptrace.TargetPID, Addr: e.Ptrace.Addr}
	case sensor.KindModule:
		d.Module = &eventbusv1.SecurityModule{Syscall: e.Module.Syscall.String(), Name: string(e.Module.Name)}
	case sensor.KindCredentials:
		c := e.Creds
		d.Credentials = &eventbusv1.SecurityCredentials{Syscall: c.Syscall.String(),
			OldUid: c.Old.UID, OldEuid: c.Old.EUID, OldGid: c.Old.GID, OldEgid: c.Old.EGID,
			NewUid: c.New.UID, NewEuid: c.New.EUID, NewGid: c.New.GID, NewEgid: c.New.EGID,
			OldCapEffective: c.Old.CapEffective, NewCapEffective: c.New.CapEffective,
			OldCapPermitted: c.Old.CapPermitted, NewCapPermitted: c.New.CapPermitted}
	case sensor.KindMemfd:
		d.Memfd = &eventbusv1.SecurityMemfd{Name: string(e.Memfd.Name), Flags: e.Memfd.Flags}
	case sensor.KindBPF:
		d.Bpf = &eventbusv1.SecurityBpf{ProgType: e.BPF.ProgType, Name: string(e.BPF.Name)}
	case sensor.KindMount:
		m := e.Mount
		d.Mount = &eventbusv1.SecurityMount{Syscall: m.Syscall.String(), Flags: m.Flags, Source: string(m.Source),
			Target: string(m.Target), Fstype: string(m.FSType), BindOverProcPid: e.Flags&sensor.BindOverProcPID != 0}
	case sensor.KindNamespace:
		d.Namespace = &eventbusv1.SecurityNamespace{Syscall: e.Namespace.Syscall.String(), Flags: e.Namespace.Flags, Fd: e.Namespace.FD}
	case sensor.KindProcMem:
		p := e.ProcMem
		d.ProcMem = &eventbusv1.SecurityProcMem{TargetPid: p.TargetPID, OpenFlags: p.OpenFlags, Syscall: p.Syscall.String(),
			Count: p.Count, Pos: p.Pos}
	}
	return d
}
