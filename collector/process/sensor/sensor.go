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

// A Sensor reports process execs, forks and exits from the kernel. Open
// one with Open; read events with Run or Read from one goroutine at a time
// (concurrent calls wait for each other); Stats and Close may be called
// from any goroutine. A Sensor starts no goroutine of its own.
type Sensor struct {
	objs  processObjects
	links []link.Link
	rd    *ringbuf.Reader
	log   *slog.Logger
	dec   decoder
	poll  time.Duration // Options.Wakeup, or 0 to wait for the kernel's wakeups

	runMu sync.Mutex // held by Run and Read
	rec   ringbuf.Record

	events, malformed atomic.Uint64

	statsMu   sync.Mutex
	lastStats Stats // the kernel counters last read, for after Close

	closing   chan struct{} // closed by Close: a polled Run returns
	closeOnce sync.Once
	closeErr  error
}

// Open loads the BPF programs, attaches them to the sched_process_exec,
// sched_process_fork and sched_process_exit tracepoints and returns a
// Sensor that reports every event from then on, system-wide, until Close.
//
// It returns an error wrapping ErrUnsupported when the kernel lacks BTF,
// BPF ring buffers or BTF-typed tracepoints (Linux < 5.8), or the process
// lacks the privileges (root, or CAP_BPF and CAP_PERFMON).
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
	maxArgs := opts.MaxArgs
	if maxArgs <= 0 {
		maxArgs = DefaultMaxArgs
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	if _, err := os.Stat(kernelBTF); err != nil {
		return nil, fmt.Errorf("%w: this kernel has no BTF (%v): it needs CONFIG_DEBUG_INFO_BTF=y", ErrUnsupported, err)
	}
	// Before 5.11 BPF memory counts against RLIMIT_MEMLOCK; after, this
	// does nothing.
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("%w: raising RLIMIT_MEMLOCK: %v", ErrUnsupported, err)
	}
	spec, err := loadProcess()
	if err != nil {
		return nil, fmt.Errorf("sensor: the embedded BPF object: %w", err)
	}
	spec.Maps[processMapEvents].MaxEntries = uint32(ringBytes)
	s := &Sensor{log: log, dec: decoder{maxArgs: maxArgs}, poll: opts.Wakeup, closing: make(chan struct{})}
	if s.poll == 0 {
		s.poll = DefaultWakeup
	}
	wakeupBytes := uint64(0)
	if s.poll > 0 {
		wakeupBytes = uint64(ringBytes / 4)
	} else {
		s.poll = 0
	}
	if err := spec.Variables[processVarWakeupBytes].Set(wakeupBytes); err != nil {
		return nil, fmt.Errorf("sensor: the embedded BPF object: %w", err)
	}

	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		return nil, loadError(err)
	}
	progs := []*ebpf.Program{s.objs.SchedProcessExec, s.objs.SchedProcessExit}
	if !opts.NoForks {
		progs = append(progs, s.objs.SchedProcessFork)
	}
	for _, p := range progs {
		l, err := link.AttachTracing(link.TracingOptions{Program: p})
		if err != nil {
			s.release()
			return nil, loadError(fmt.Errorf("attaching %v: %w", p, err))
		}
		s.links = append(s.links, l)
	}
	if s.rd, err = ringbuf.NewReader(s.objs.Events); err != nil {
		s.release()
		return nil, fmt.Errorf("sensor: opening the ring buffer: %w", err)
	}
	var now, boot unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &now)
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot)
	s.dec.wallOffset = now.Nano() - boot.Nano()
	log.Debug("eBPF process sensor attached", "tracepoints", "sched_process_exec,sched_process_fork,sched_process_exit", "ring_bytes", ringBytes)
	return s, nil
}

// loadError says what a load or attach failure means to the person who
// runs the program.
func loadError(err error) error {
	var ve *ebpf.VerifierError
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("%w: not permitted (%v)", ErrUnsupported, err)
	case errors.Is(err, ebpf.ErrNotSupported):
		return fmt.Errorf("%w: the kernel lacks a feature (%v)", ErrUnsupported, err)
	case errors.As(err, &ve):
		return fmt.Errorf("sensor: the kernel rejected the BPF programs (a bug, please report it with this log): %+v", ve)
	}
	return fmt.Errorf("sensor: loading the BPF programs: %w", err)
}

// Run reads events and calls fn with each, until ctx is done (it returns
// ctx.Err()), fn returns an error (it returns that error), or the Sensor is
// closed (ErrClosed). fn must not keep e, which Run reuses; what e holds
// (strings, Args) may be kept. Run allocates only what exec events hold.
func (s *Sensor) Run(ctx context.Context, fn func(e *Event) error) error {
	return s.RunBatches(ctx, fn, nil)
}

// RunBatches is Run, and also calls caughtUp, when it is not nil, each
// time fn has been given every event the ring buffer held, before Run
// waits for more: a caller that batches its work for the events of one
// wakeup (publishing them in one write) completes the batch there. An
// error from caughtUp ends the run as one from fn does.
func (s *Sensor) RunBatches(ctx context.Context, fn func(e *Event) error, caughtUp func() error) error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	select {
	case <-s.closing:
		return ErrClosed
	default:
	}
	if s.poll > 0 {
		return s.runPolled(ctx, fn, caughtUp)
	}

	// Cancellation flushes the reader, which wakes a blocked ReadInto.
	// The callback runs on its own goroutine only once ctx is done; Run
	// waits for it.
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

	var e Event
	for {
		select {
		case <-done:
			return ctx.Err()
		default:
		}
		if err := s.rd.ReadInto(&s.rec); err != nil {
			switch {
			case errors.Is(err, ringbuf.ErrFlushed):
				continue // ctx is done (checked above), or a stale flush
			case errors.Is(err, ringbuf.ErrClosed):
				return ErrClosed
			}
			return fmt.Errorf("sensor: reading the ring buffer: %w", err)
		}
		if err := s.dec.decode(s.rec.RawSample, &e); err != nil {
			if s.malformed.Add(1) == 1 {
				s.log.Warn("eBPF process sensor: a record could not be decoded; further ones are only counted", "err", err)
			}
		} else {
			s.events.Add(1)
			if err := fn(&e); err != nil {
				return err
			}
		}
		if caughtUp != nil && s.rd.AvailableBytes() == 0 {
			if err := caughtUp(); err != nil {
				return err
			}
		}
	}
}

// runPolled is RunBatches with a positive Options.Wakeup: it reads what
// the ring buffer holds, then sleeps for the wakeup interval on a Go timer,
// not in a system call. A goroutine blocked in epoll_wait keeps the Go
// runtime's monitor thread waking up every 20 µs to 10 ms; one parked on a
// timer lets an idle process sleep.
func (s *Sensor) runPolled(ctx context.Context, fn func(e *Event) error, caughtUp func() error) error {
	s.rd.SetDeadline(time.Unix(1, 0)) // in the past: ReadInto never waits
	timer := time.NewTimer(s.poll)
	defer timer.Stop()
	var e Event
	for {
		n, bytes := 0, 0
		for {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-s.closing:
				return ErrClosed
			default:
			}
			if s.rd.AvailableBytes() == 0 {
				break // an atomic load: no system call when there is nothing
			}
			err := s.rd.ReadInto(&s.rec)
			if err != nil {
				if errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, ringbuf.ErrFlushed) {
					break // read all there was
				}
				if errors.Is(err, ringbuf.ErrClosed) {
					return ErrClosed
				}
				return fmt.Errorf("sensor: reading the ring buffer: %w", err)
			}
			bytes += len(s.rec.RawSample)
			if err := s.dec.decode(s.rec.RawSample, &e); err != nil {
				if s.malformed.Add(1) == 1 {
					s.log.Warn("eBPF process sensor: a record could not be decoded; further ones are only counted", "err", err)
				}
				continue
			}
			s.events.Add(1)
			n++
			if err := fn(&e); err != nil {
				return err
			}
		}
		if n > 0 && caughtUp != nil {
			if err := caughtUp(); err != nil {
				return err
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-s.closing:
			return ErrClosed
		case <-timer.C:
			// Nobody waits on the kernel's early wakeup (a quarter of the
			// ring buffer unread) here: a read that found more than a
			// sixteenth of it full makes the next come sooner instead.
			next := s.poll
			if bytes > s.rd.BufferSize()/16 {
				next = min(next, time.Millisecond)
			}
			timer.Reset(next)
		}
	}
}

// errStop ends the Run that Read uses.
var errStop = errors.New("stop")

// Read returns the next event. It returns ctx.Err() when ctx is done first,
// and ErrClosed once the Sensor is closed. Each call costs a few
// allocations besides the event's own; Run costs none.
func (s *Sensor) Read(ctx context.Context) (Event, error) {
	var out Event
	err := s.Run(ctx, func(e *Event) error {
		out = *e
		return errStop
	})
	if err == errStop {
		return out, nil
	}
	return Event{}, err
}

// Stats returns the counters. It reads the kernel's per-CPU loss counters
// (a system call); after Close it returns the last values read.
func (s *Sensor) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	st := s.lastStats
	if s.objs.Lost != nil {
		var perCPU []uint64
		lost := [...]*uint64{KindExec: &st.LostExec, KindFork: &st.LostFork, KindExit: &st.LostExit}
		for k := KindExec; k <= KindExit; k++ {
			if err := s.objs.Lost.Lookup(uint32(k), &perCPU); err != nil {
				continue
			}
			var sum uint64
			for _, v := range perCPU {
				sum += v
			}
			*lost[k] = sum
		}
	}
	st.Lost = st.LostExec + st.LostFork + st.LostExit
	s.lastStats = st
	st.Events = s.events.Load()
	st.Malformed = s.malformed.Load()
	return st
}

// Close detaches the programs and frees the ring buffer and maps. It
// interrupts a Run or Read in progress, which returns ErrClosed, and waits
// for it. It may be called more than once and from any goroutine.
func (s *Sensor) Close() error {
	s.closeOnce.Do(func() {
		close(s.closing)
		s.Stats() // keep the final loss counts
		if s.poll > 0 {
			// A polled Run returns at the closing channel; the reader is
			// closed once it has.
			s.runMu.Lock()
			defer s.runMu.Unlock()
		}
		if err := s.rd.Close(); err != nil {
			s.closeErr = fmt.Errorf("sensor: closing the ring buffer: %w", err)
		}
		if s.poll <= 0 {
			// A blocked Run returns once the reader is closed; wait for it
			// so that nothing uses the maps below.
			s.runMu.Lock()
			defer s.runMu.Unlock()
		}
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
	s.objs = processObjects{}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sensor: detaching: %w", err)
	}
	return nil
}
