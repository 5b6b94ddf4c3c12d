package sensor

import (
	"log/slog"
	"time"
)

// DefaultRingBytes is Options.RingBytes when it is 0: 256 KiB, about 900
// processes' fork, exec (of a short command line) and exit events. At the
// highest rate a 2-vCPU VM spawns processes (about 2,200 a second) that
// is 0.4 s of events, 40 of the reader's 10 ms polls, and a quarter of it
// wakes the reader early. The kernel maps the ring's pages twice into the
// reader's process, so it counts twice in its resident memory: 0.5 MiB
// (2 MiB, the earlier default, made 4 MiB).
const DefaultRingBytes = 256 << 10

// DefaultWakeup is Options.Wakeup when it is 0. Each wakeup with events
// costs procmond a few context switches on top of its work: 20 ms keeps
// that under the work at 1,000 execs/s, and an alert within 50 ms.
const DefaultWakeup = 20 * time.Millisecond

// Options configure Open. The zero value is usable.
type Options struct {
	// RingBytes is the size of the BPF ring buffer that carries events to
	// user space: a power of two and a multiple of the page size (4 KiB
	// on amd64); 0 means DefaultRingBytes. An event that does not fit while
	// the reader is behind is lost and counted (Stats). Below 16 KiB the
	// largest exec events (long argv, path and cwd) never fit.
	RingBytes int
	// Wakeup bounds how long an event may wait in the ring buffer before
	// Run sees it. With a positive value the kernel does not wake the
	// reader for each event, which costs more than the rest of a fork or
	// exit program (about 10 µs per event on a VM): the reader polls every
	// Wakeup instead, sleeping on a Go timer, and every 1 ms while a read
	// finds the ring buffer more than a sixteenth full. A negative value makes the kernel wake the
	// reader for every event it writes while the reader waits: the lowest
	// latency, at that cost. 0 means DefaultWakeup.
	Wakeup time.Duration
	// NoForks leaves the fork tracepoint unattached: no KindFork events,
	// and no cost at each fork. procmond, which publishes execs and exits
	// only, sets it.
	NoForks bool
	// MaxArgs bounds Exec.Args; 0 means DefaultMaxArgs.
	MaxArgs int
	// Logger receives what the sensor attached, and malformed records (at
	// warning level). Nil: nothing is logged.
	Logger *slog.Logger
}

// Stats are the sensor's counters since Open. Lost* come from the kernel:
// ring-buffer writes that failed because the buffer was full.
type Stats struct {
	// Lost is LostExec + LostFork + LostExit.
	Lost uint64
	// LostExec, LostFork and LostExit are the events of each kind lost.
	LostExec, LostFork, LostExit uint64
	// Events is how many events Run and Read delivered.
	Events uint64
	// Malformed is how many records could not be decoded (a bug: they are
	// also logged).
	Malformed uint64
}
