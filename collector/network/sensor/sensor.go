//go:build linux

package sensor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"
)

// kernelBTF is where the kernel publishes its BTF; CO-RE and BPF
// trampolines need it.
const kernelBTF = "/sys/kernel/btf/vmlinux"

// A Sensor reports TCP connects, accepts and listens and the first UDP
// send of each socket from the kernel. Open one with Open; read
// events with Run or Read from one goroutine at a time (concurrent calls
// wait for each other); Stats and Close may be called from any goroutine.
// A Sensor starts no goroutine of its own.
type Sensor struct {
	objs  networkObjects
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

	closeOnce sync.Once
	closeErr  error
}

// Open loads the BPF programs, attaches them (see the package
// documentation) and returns a Sensor that reports every event from then
// on, system-wide, until Close.
//
// It returns an error wrapping ErrUnsupported when the kernel lacks BTF,
// BTF-typed tracepoints or the sock_send_length tracepoint (Linux < 6.3),
// or the process
// lacks the privileges (root, or CAP_BPF and CAP_PERFMON).
func Open(opts Options) (*Sensor, error) {
	ringBytes := opts.RingBytes
	if ringBytes == 0 {
		ringBytes = DefaultRingBytes
	}
	page := os.Getpagesize()
	if ringBytes < page || ringBytes%page != 0 || ringBytes&(ringBytes-1) != 0 {
		return nil, fmt.Errorf("%w: RingBytes %d is not a power of two multiple of the page size (%d)",
			ErrOptions, ringBytes, page)
	}
	udpSockets := opts.UDPSockets
	if udpSockets == 0 {
		udpSockets = DefaultUDPSockets
	}
	if udpSockets < 0 || udpSockets > 1<<24 {
		return nil, fmt.Errorf("%w: UDPSockets %d is not between 1 and %d", ErrOptions, udpSockets, 1<<24)
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
	spec, err := loadNetwork()
	if err != nil {
		return nil, fmt.Errorf("sensor: the embedded BPF object: %w", err)
	}
	spec.Maps[networkMapEvents].MaxEntries = uint32(ringBytes)
	spec.Maps[networkMapUdpSeen].MaxEntries = uint32(udpSockets)
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
	if err := spec.Variables[networkVarWakeupBytes].Set(wakeupBytes); err != nil {
		return nil, fmt.Errorf("sensor: the embedded BPF object: %w", err)
	}

	if runtime.GOARCH == "amd64" {
		// The struct pt_regs of bpf/kernel.h is amd64's.
		for v, nr := range map[string]uint64{networkVarNrSendto: unix.SYS_SENDTO, networkVarNrSendmsg: unix.SYS_SENDMSG, networkVarNrSendmmsg: unix.SYS_SENDMMSG} {
			if err := spec.Variables[v].Set(nr); err != nil {
				return nil, fmt.Errorf("sensor: the embedded BPF object: %w", err)
			}
		}
	}
	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		return nil, loadError(err)
	}
	for _, p := range []*ebpf.Program{s.objs.InetSockSetState, s.objs.SockSendLength} {
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
	log.Debug("eBPF network sensor attached",
		"tracepoints", "inet_sock_set_state,sock_send_length",
		"ring_bytes", ringBytes, "udp_sockets", udpSockets)
	return s, nil
}

// loadError says what a load or attach failure means to the person who
// runs the program.
func loadError(err error) error {
	var ve *ebpf.VerifierError
	switch {
	case errors.Is(err, unix.EPERM), errors.Is(err, unix.EACCES):
		return fmt.Errorf("%w: not permitted (%v)", ErrUnsupported, err)
	case errors.Is(err, ebpf.ErrNotSupported), errors.Is(err, unix.ENOENT):
		return fmt.Errorf("%w: the kernel lacks a feature or a function (%v)", ErrUnsupported, err)
	case errors.As(err, &ve):
		return fmt.Errorf("sensor: the kernel rejected the BPF programs (a bug, please report it with this log): %+v", ve)
	}
	return fmt.Errorf("sensor: loading the BPF programs: %w", err)
}

// Run reads events and calls fn with each, until ctx is done (it returns
// ctx.Err()), fn returns an error (it returns that error), or the Sensor is
// closed (ErrClosed). fn must not keep e, which Run reuses (a copy of *e
// may be kept: it holds no pointer). Run allocates nothing per event.
func (s *Sensor) Run(ctx context.Context, fn func(e *Event) error) error {
	s.runMu.Lock()
	defer s.runMu.Unlock()
	if s.rd == nil {
		return ErrClosed
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
				// The poll: the ring buffer is empty again.
				s.rd.SetDeadline(time.Now().Add(s.poll))
				continue
			case errors.Is(err, ringbuf.ErrFlushed):
				continue // ctx is done (checked above), or a stale flush
			case errors.Is(err, ringbuf.ErrClosed):
				return ErrClosed
			}
			return fmt.Errorf("sensor: reading the ring buffer: %w", err)
		}
		if err := s.dec.decode(s.rec.RawSample, &e); err != nil {
			if s.malformed.Add(1) == 1 {
				s.log.Warn("eBPF network sensor: a record could not be decoded; further ones are only counted", "err", err)
			}
			continue
		}
		s.events.Add(1)
		if err := fn(&e); err != nil {
			return err
		}
	}
}

// errStop ends the Run that Read uses.
var errStop = errors.New("stop")

// Read returns the next event. It returns ctx.Err() when ctx is done first,
// and ErrClosed once the Sensor is closed. Each call costs a few
// allocations; Run costs none.
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
// (a system call per kind); after Close it returns the last values read.
func (s *Sensor) Stats() Stats {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	st := s.lastStats
	if s.objs.Lost != nil {
		var perCPU []uint64
		lost := [...]*uint64{KindConnect: &st.LostConnect, KindAccept: &st.LostAccept, KindListen: &st.LostListen,
			KindUDPSend: &st.LostUDPSend}
		for k := KindConnect; k <= KindUDPSend; k++ {
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
	st.Lost = st.LostConnect + st.LostAccept + st.LostListen + st.LostUDPSend
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
		s.Stats() // keep the final loss counts
		if err := s.rd.Close(); err != nil {
			s.closeErr = fmt.Errorf("sensor: closing the ring buffer: %w", err)
		}
		// Run returns once the reader is closed; wait for it so that
		// nothing uses the maps below.
		s.runMu.Lock()
		defer s.runMu.Unlock()
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
	s.objs = networkObjects{}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sensor: detaching: %w", err)
	}
	return nil
}
