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

// A Sensor reports security events from the kernel. Open one with Open;
// read events with Run from one goroutine at a time (concurrent calls wait
// for each other); ExcludeBPF, Attached, Stats and Close may be called from
// any goroutine. A Sensor starts no goroutine of its own.
type Sensor struct {
	coll  *ebpf.Collection
	links []link.Link
	rd    *ringbuf.Reader
	log   *slog.Logger
	dec   decoder
	poll  time.Duration

	runMu sync.Mutex // held by Run
	rec   ringbuf.Record

	events, malformed atomic.Uint64

	statsMu   sync.Mutex
	lastStats Stats
	lost      *ebpf.Map // nil after Close
	excluded  *ebpf.Map // nil after Close

	closeOnce sync.Once
	closeErr  error
}

// Open loads the BPF programs, attaches them to the raw_syscalls sys_enter
// and sys_exit tracepoints and returns a Sensor that reports events from
// then on, system-wide, until Close. opts.ExcludeBPF are excluded from BPF
// load events from the start.
//
// It returns an error wrapping ErrUnsupported when the kernel lacks BTF,
// BPF ring buffers or BTF-typed tracepoints (Linux < 5.8), or the process
// lacks the privileges.
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
	if _, err := os.Stat(kernelBTF); err != nil {
		return nil, fmt.Errorf("%w: this kernel has no BTF (%v): it needs CONFIG_DEBUG_INFO_BTF=y", ErrUnsupported, err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("%w: raising RLIMIT_MEMLOCK: %v", ErrUnsupported, err)
	}
	spec, err := loadSecurity()
	if err != nil {
		return nil, fmt.Errorf("security sensor: the embedded BPF object: %w", err)
	}
	spec.Maps[securityMapEvents].MaxEntries = uint32(ringBytes)
	s := &Sensor{log: log, poll: opts.Wakeup}
	if s.poll == 0 {
		s.poll = DefaultWakeup
	}
	wakeupBytes := uint64(0)
	if s.poll > 0 {
		wakeupBytes = uint64(ringBytes / 4)
	} else {
		s.poll = 0
	}
	if err := spec.Variables[securityVarWakeupBytes].Set(wakeupBytes); err != nil {
		return nil, fmt.Errorf("security sensor: the embedded BPF object: %w", err)
	}
	// The maps first, so that the loader's own program loads below are
	// already excluded when the bpf program attaches.
	coll, err := ebpf.NewCollectionWithOptions(spec, ebpf.CollectionOptions{})
	if err != nil {
		return nil, loadError(err)
	}
	s.coll = coll
	s.lost = coll.Maps[securityMapLost]
	s.excluded = coll.Maps[securityMapBpfExcluded]
	for _, pid := range opts.ExcludeBPF {
		if err := s.ExcludeBPF(pid); err != nil {
			s.release()
			return nil, err
		}
	}
	if err := fillSyscalls(coll.Maps[securityMapSyscalls]); err != nil {
		s.release()
		return nil, err
	}
	for _, name := range []string{"sys_enter", "sys_exit"} {
		l, err := link.AttachTracing(link.TracingOptions{Program: coll.Programs[name]})
		if err != nil {
			s.release()
			return nil, loadError(fmt.Errorf("attaching %s: %w", name, err))
		}
		s.links = append(s.links, l)
	}
	if s.rd, err = ringbuf.NewReader(coll.Maps[securityMapEvents]); err != nil {
		s.release()
		return nil, fmt.Errorf("security sensor: opening the ring buffer: %w", err)
	}
	var now, boot unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &now)
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot)
	s.dec.wallOffset = now.Nano() - boot.Nano()
	log.Debug("eBPF security sensor attached", "tracepoints", "sys_enter,sys_exit", "ring_bytes", ringBytes)
	return s, nil
}

// loadError says what a load failure means to the person who runs the
// program.
func loadError(err error) error {
	var ve *ebpf.VerifierError
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("%w: not permitted (%v)", ErrUnsupported, err)
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("%w: the kernel lacks a feature (%v)", ErrUnsupported, err)
	case errors.As(err, &ve):
		return fmt.Errorf("security sensor: the kernel rejected the BPF programs (a bug, please report it with this log): %+v", ve)
	}
	return fmt.Errorf("security sensor: loading the BPF programs: %w", err)
}

// ExcludeBPF stops reporting the BPF program loads of process pid (its
// thread-group id), such as another DaemonEye sensor's loader. At most 64
// processes can be excluded; a process id that is reused stays excluded.
func (s *Sensor) ExcludeBPF(pid uint32) error {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	if s.excluded == nil {
		return ErrClosed
	}
	if err := s.excluded.Put(pid, uint8(1)); err != nil {
		return fmt.Errorf("security sensor: excluding pid %d from BPF load events (at most 64): %w", pid, err)
	}
	return nil
}

// Run reads events and calls fn with each, until ctx is done (it returns
// ctx.Err()), fn returns an error (it returns that error), or the Sensor is
// closed (ErrClosed). fn must not keep e or its byte slices, which Run
// reuses. Run does not allocate per event.
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
			return fmt.Errorf("security sensor: reading the ring buffer: %w", err)
		}
		if err := s.dec.decode(s.rec.RawSample, &e); err != nil {
			if s.malformed.Add(1) == 1 {
				s.log.Warn("eBPF security sensor: a record could not be decoded; further ones are only counted", "err", err)
			}
			continue
		}
		s.events.Add(1)
		if err := fn(&e); err != nil {
			return err
		}
	}
}

// Stats returns the counters. It reads the kernel's per-CPU loss counters
// (a system call per kind); after Close it returns the last values read.
func (s *Sensor) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	st := s.lastStats
	if s.lost != nil {
		var perCPU []uint64
		st.Lost = 0
		for k := uint32(1); k <= uint32(KindMax); k++ {
			if err := s.lost.Lookup(k, &perCPU); err != nil {
				continue
			}
			var sum uint64
			for _, v := range perCPU {
				sum += v
			}
			st.LostByKind[k] = sum
		}
	}
	st.Lost = 0
	for _, v := range st.LostByKind {
		st.Lost += v
	}
	s.lastStats = st
	st.Events = s.events.Load()
	st.Malformed = s.malformed.Load()
	return st
}

// Close detaches the programs and frees the ring buffer and maps. It
// interrupts a Run in progress, which returns ErrClosed, and waits for it.
// It may be called more than once and from any goroutine.
func (s *Sensor) Close() error {
	s.closeOnce.Do(func() {
		s.Stats()
		if err := s.rd.Close(); err != nil {
			s.closeErr = fmt.Errorf("security sensor: closing the ring buffer: %w", err)
		}
		s.runMu.Lock()
		defer s.runMu.Unlock()
		if err := s.release(); err != nil && s.closeErr == nil {
			s.closeErr = err
		}
	})
	return s.closeErr
}

// release detaches the links and closes the objects.
func (s *Sensor) release() error {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	var errs []error
	for _, l := range s.links {
		errs = append(errs, l.Close())
	}
	s.links = nil
	if s.coll != nil {
		s.coll.Close()
		s.coll = nil
	}
	s.lost, s.excluded = nil, nil
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("security sensor: detaching: %w", err)
	}
	return nil
}
