//go:build linux

package sensor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// kernelBTF is where the kernel publishes its BTF; CO-RE needs it.
const kernelBTF = "/sys/kernel/btf/vmlinux"

// A Sensor reports file operations on watched paths from the kernel. Open
// one with Open; read events with Run or Read from one goroutine at a time
// (concurrent calls wait for each other); Resolve, Stats and Close may be
// called from any goroutine. A Sensor starts no goroutine of its own.
type Sensor struct {
	objs       fsObjects
	links      []link.Link
	rd         *ringbuf.Reader
	log        *slog.Logger
	dec        decoder
	poll       time.Duration // Options.Wakeup, or 0 to wait for the kernel's wakeups
	watches    []Watch
	maxWatched int

	runMu sync.Mutex // held by Run and Read
	rec   ringbuf.Record

	events, malformed, unresolved atomic.Uint64

	prefixList atomic.Pointer[[]prefixEntry] // the watched path strings, for unresolved events

	resolveMu sync.Mutex // held by Resolve; guards cur
	cur       plan       // what the kernel maps hold

	statsMu   sync.Mutex
	lastStats Stats // the kernel counters last read, for after Close

	closeOnce sync.Once
	closed    atomic.Bool
	closeErr  error
}

// Open loads the BPF program, fills the watch maps (Resolve) and attaches
// the program to the raw_syscalls:sys_exit tracepoint. It returns a Sensor
// that reports every operation on a watched path from then on,
// system-wide, until Close.
//
// It returns an error wrapping ErrUnsupported when the kernel lacks BTF,
// BPF ring buffers or BTF-typed tracepoints (Linux < 5.8), the
// architecture is not amd64, or the process lacks the privileges (root, or
// CAP_BPF and CAP_PERFMON), and one wrapping ErrWatch for an invalid
// Options.Watches.
func Open(opts Options) (*Sensor, error) {
	ringBytes := opts.RingBytes
	if ringBytes == 0 {
		ringBytes = DefaultRingBytes
	}
	page := os.Getpagesize()
	if ringBytes < page || ringBytes%page != 0 || ringBytes&(ringBytes-1) != 0 {
		return nil, fmt.Errorf("%w: %d is not a power of two multiple of the page size (%d)",
			ErrRingBytes, ringBytes, page)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	watches := opts.Watches
	if watches == nil {
		watches = DefaultWatches()
	}
	for _, w := range watches {
		if _, _, err := w.validate(); err != nil {
			return nil, err
		}
	}
	maxWatched := opts.MaxWatched
	if maxWatched <= 0 {
		maxWatched = DefaultMaxWatched
	}

	if _, err := os.Stat(kernelBTF); err != nil {
		return nil, fmt.Errorf("%w: this kernel has no BTF (%v): it needs CONFIG_DEBUG_INFO_BTF=y", ErrUnsupported, err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("%w: raising RLIMIT_MEMLOCK: %v", ErrUnsupported, err)
	}
	spec, err := loadFs()
	if err != nil {
		return nil, fmt.Errorf("sensor: the embedded BPF object: %w", err)
	}
	spec.Maps[fsMapEvents].MaxEntries = uint32(ringBytes)
	spec.Maps[fsMapWatched].MaxEntries = uint32(maxWatched)
	spec.Maps[fsMapNames].MaxEntries = uint32(maxWatched)
	spec.Maps[fsMapPrefixes].MaxEntries = uint32(maxWatched)
	s := &Sensor{log: log, poll: opts.Wakeup, watches: watches, maxWatched: maxWatched}
	if s.poll == 0 {
		s.poll = DefaultWakeup
	}
	wakeupBytes := uint64(0)
	if s.poll > 0 {
		wakeupBytes = uint64(ringBytes / 4)
	} else {
		s.poll = 0
	}
	if err := spec.Variables[fsVarWakeupBytes].Set(wakeupBytes); err != nil {
		return nil, fmt.Errorf("sensor: the embedded BPF object: %w", err)
	}
	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		return nil, loadError(err)
	}
	s.cur = plan{watched: map[ident]uint32{}, names: map[nameKey]uint32{}, prefixes: map[lpmKey]uint32{}, devs: map[uint32]uint32{}}
	res, err := s.resolve()
	if err != nil {
		s.release()
		return nil, err
	}
	if err := fillSysClass(s.objs.Sysclass); err != nil {
		s.release()
		return nil, err
	}
	l, err := link.AttachTracing(link.TracingOptions{Program: s.objs.SysExit})
	if err != nil {
		s.release()
		return nil, loadError(fmt.Errorf("attaching to raw_syscalls:sys_exit: %w", err))
	}
	s.links = append(s.links, l)
	if s.rd, err = ringbuf.NewReader(s.objs.Events); err != nil {
		s.release()
		return nil, fmt.Errorf("sensor: opening the ring buffer: %w", err)
	}
	var now, boot unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &now)
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot)
	s.dec.wallOffset = now.Nano() - boot.Nano()
	log.Debug("eBPF filesystem sensor attached", "tracepoint", "sys_exit", "ring_bytes", ringBytes,
		"entries", res.Entries, "names", res.Names, "devices", res.Devices)
	return s, nil
}

// loadError says what a load or attach failure means to the person who
// runs the program.
func loadError(err error) error {
	var ve *ebpf.VerifierError
	switch {
	case errors.As(err, &ve):
		return fmt.Errorf("sensor: the kernel rejected the BPF program (a bug, please report it with this log): %+v", ve)
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("%w: not permitted (%v)", ErrUnsupported, err)
	case errors.Is(err, ebpf.ErrNotSupported), errors.Is(err, unix.ENOENT),
		errors.Is(err, unix.EOPNOTSUPP):
		return fmt.Errorf("%w: the kernel lacks a feature (%v)", ErrUnsupported, err)
	}
	return fmt.Errorf("sensor: loading the BPF programs: %w", err)
}

// Resolve resolves Options.Watches again (patterns, home directories,
// mount points) and updates the kernel maps: new entries are added before
// stale ones are removed, so that nothing still watched is unwatched in
// between. Call it periodically, and after events that may have created
// what a pattern matches. It costs a few system calls per watch.
func (s *Sensor) Resolve() (Resolved, error) {
	if s.closed.Load() {
		return Resolved{}, ErrClosed
	}
	return s.resolve()
}

func (s *Sensor) resolve() (Resolved, error) {
	s.resolveMu.Lock()
	defer s.resolveMu.Unlock()
	if s.objs.Watched == nil {
		return Resolved{}, ErrClosed
	}
	next, err := resolvePlan(s.watches, mountPoints())
	if err != nil {
		return Resolved{}, err
	}
	var res Resolved
	var errs []error
	// The maps keep at most maxWatched entries: those already in, then new
	// ones while they fit.
	fit := func(n, have int) bool { return have < s.maxWatched || n > 0 }
	kept := map[ident]uint32{}
	for k, v := range next.watched {
		_, in := s.cur.watched[k]
		if !fit(b2i(in), len(kept)) {
			res.Skipped++
			continue
		}
		if s.cur.watched[k] != v || !in {
			if err := s.objs.Watched.Update(k, v, ebpf.UpdateAny); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		kept[k] = v
	}
	keptNames := map[nameKey]uint32{}
	for k, v := range next.names {
		_, in := s.cur.names[k]
		if !fit(b2i(in), len(keptNames)) {
			res.Skipped++
			continue
		}
		if s.cur.names[k] != v || !in {
			if err := s.objs.Names.Update(k, v, ebpf.UpdateAny); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		keptNames[k] = v
	}
	keptPrefixes := map[lpmKey]uint32{}
	for k, v := range next.prefixes {
		_, in := s.cur.prefixes[k]
		if !fit(b2i(in), len(keptPrefixes)) {
			res.Skipped++
			continue
		}
		if s.cur.prefixes[k] != v || !in {
			if err := s.objs.Prefixes.Update(k, v, ebpf.UpdateAny); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		keptPrefixes[k] = v
	}
	for k, v := range next.devs {
		if s.cur.devs[k] != v {
			if err := s.objs.Devs.Update(k, v, ebpf.UpdateAny); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for k := range s.cur.watched {
		if _, ok := kept[k]; !ok {
			_ = s.objs.Watched.Delete(k)
		}
	}
	for k := range s.cur.names {
		if _, ok := keptNames[k]; !ok {
			_ = s.objs.Names.Delete(k)
		}
	}
	for k := range s.cur.prefixes {
		if _, ok := keptPrefixes[k]; !ok {
			_ = s.objs.Prefixes.Delete(k)
		}
	}
	for k := range s.cur.devs {
		if _, ok := next.devs[k]; !ok {
			_ = s.objs.Devs.Delete(k)
		}
	}
	s.cur = plan{watched: kept, names: keptNames, prefixes: keptPrefixes, devs: next.devs}
	list := make([]prefixEntry, 0, len(keptPrefixes))
	for k, v := range keptPrefixes {
		list = append(list, prefixEntry{s: string(k.Data[:k.Prefixlen/8]), flags: WatchFlags(v)})
	}
	s.prefixList.Store(&list)
	res.Entries, res.Names, res.Prefixes, res.Devices = len(kept), len(keptNames), len(keptPrefixes), len(next.devs)
	if res.Skipped > 0 {
		s.log.Warn("eBPF filesystem sensor: the watched paths do not all fit the kernel maps; raise the maximum",
			"skipped", res.Skipped, "max", s.maxWatched)
	}
	if err := errors.Join(errs...); err != nil {
		return res, fmt.Errorf("sensor: updating the watch maps: %w", err)
	}
	return res, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Run reads events and calls fn with each, until ctx is done (it returns
// ctx.Err()), fn returns an error (it returns that error), or the Sensor is
// closed (ErrClosed). fn must not keep e, which Run reuses, nor its byte
// slices. Run does not allocate per event.
func (s *Sensor) Run(ctx context.Context, fn func(e *Event) error) error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.rd == nil {
		return ErrClosed
	}
	done := ctx.Done()
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		_ = s.rd.Flush()
		close(fired)
	})
	defer func() {
		if !stop() {
			<-fired
		}
	}()

	if s.poll > 0 {
		s.rd.SetDeadline(time.Now().Add(s.poll))
	}
	var e Event
	for {
		select {
		case <-done:
			return ctx.Err()
		default:
		}
		if err := s.rd.ReadInto(&s.rec); err != nil {
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				s.rd.SetDeadline(time.Now().Add(s.poll))
				continue
			case errors.Is(err, ringbuf.ErrFlushed):
				continue
			case errors.Is(err, ringbuf.ErrClosed):
				return ErrClosed
			}
			return fmt.Errorf("sensor: reading the ring buffer: %w", err)
		}
		if err := s.dec.decode(s.rec.RawSample, &e); err != nil {
			if s.malformed.Add(1) == 1 {
				s.log.Warn("eBPF filesystem sensor: a record could not be decoded; further ones are only counted", "err", err)
			}
			continue
		}
		if e.Match&(WatchWrites|WatchReads) == 0 {
			// A path the kernel could not match through "//", "/./" or
			// "/../": decide on the cleaned path.
			m := s.matchPath(e.Path) | s.matchPath(e.OldPath)
			want := WatchWrites
			if e.Op == OpLink {
				want |= WatchReads
			}
			if m&want == 0 {
				s.unresolved.Add(1)
				continue
			}
			e.Match = m & want
		}
		s.events.Add(1)
		if err := fn(&e); err != nil {
			return err
		}
	}
}

// prefixEntry is a watched path string: "p\x00" for p itself, "p/" for
// below p.
type prefixEntry struct {
	s     string
	flags WatchFlags
}

// matchPath returns the flags of the watched path strings that p (a clean
// absolute path) matches.
func (s *Sensor) matchPath(p []byte) WatchFlags {
	list := s.prefixList.Load()
	if list == nil || len(p) == 0 {
		return 0
	}
	var m WatchFlags
	for _, e := range *list {
		if n := len(e.s) - 1; e.s[n] == 0 {
			if string(p) == e.s[:n] {
				m |= e.flags
			}
		} else if len(p) > len(e.s) && string(p[:len(e.s)]) == e.s {
			m |= e.flags
		}
	}
	return m
}

// errStop ends the Run that Read uses.
var errStop = errors.New("stop")

// Read returns the next event, with its byte slices copied. It returns
// ctx.Err() when ctx is done first, and ErrClosed once the Sensor is
// closed. Each call allocates; Run does not.
func (s *Sensor) Read(ctx context.Context) (Event, error) {
	var out Event
	err := s.Run(ctx, func(e *Event) error {
		out = e.Clone()
		return errStop
	})
	if err == errStop {
		return out, nil
	}
	return Event{}, err
}

// Stats returns the counters. It reads the kernel's per-CPU counters (a
// few system calls); after Close it returns the last values read.
func (s *Sensor) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	st := s.lastStats
	if s.objs.Lost != nil {
		var perCPU []uint64
		sum := func(m *ebpf.Map, k uint32, dst *uint64) {
			if err := m.Lookup(k, &perCPU); err != nil {
				return
			}
			var n uint64
			for _, v := range perCPU {
				n += v
			}
			*dst = n
		}
		st.Lost = 0
		for op := OpOpenWrite; op <= OpRead; op++ {
			sum(s.objs.Lost, uint32(op), &st.LostByOp[op])
			st.Lost += st.LostByOp[op]
		}
		sum(s.objs.Stats, 0, &st.Calls)
		sum(s.objs.Stats, 1, &st.Matched)
	}
	s.lastStats = st
	st.Events = s.events.Load()
	st.Malformed = s.malformed.Load()
	st.Unresolved = s.unresolved.Load()
	return st
}

// Close detaches the programs and frees the ring buffer and maps. It
// interrupts a Run or Read in progress, which returns ErrClosed, and waits
// for it. It may be called more than once and from any goroutine.
func (s *Sensor) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		s.Stats()
		if err := s.rd.Close(); err != nil {
			s.closeErr = fmt.Errorf("sensor: closing the ring buffer: %w", err)
		}
		s.runMu.Lock()
		defer s.runMu.Unlock()
		s.resolveMu.Lock()
		defer s.resolveMu.Unlock()
		s.statsMu.Lock()
		defer s.statsMu.Unlock()
		if err := s.release(); err != nil && s.closeErr == nil {
			s.closeErr = err
		}
	})
	return s.closeErr
}

// release detaches the links and closes the objects.
func (s *Sensor) release() error {
	var errs []error
	for _, l := range s.links {
		errs = append(errs, l.Close())
	}
	s.links = nil
	errs = append(errs, s.objs.Close())
	s.objs = fsObjects{}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sensor: detaching: %w", err)
	}
	return nil
}
