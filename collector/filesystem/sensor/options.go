package sensor

import (
	"log/slog"
	"time"
)

// DefaultRingBytes is Options.RingBytes when it is 0: 2 MiB, about 8,000
// events with paths of ordinary length.
const DefaultRingBytes = 2 << 20

// DefaultWakeup is Options.Wakeup when it is 0.
const DefaultWakeup = 10 * time.Millisecond

// DefaultMaxWatched is Options.MaxWatched when it is 0.
const DefaultMaxWatched = 16384

// Options configure Open. The zero value is usable: it watches
// DefaultWatches.
type Options struct {
	// RingBytes is the size of the BPF ring buffer that carries events to
	// user space: a power of two and a multiple of the page size (4 KiB
	// on amd64); 0 means DefaultRingBytes. An event that does not fit while
	// the reader is behind is lost and counted (Stats).
	RingBytes int
	// Wakeup bounds how long an event may wait in the ring buffer before
	// Run sees it. With a positive value the kernel does not wake the
	// reader for each event: the reader polls every Wakeup, and the kernel
	// wakes it only once a quarter of the ring buffer is unread. A
	// negative value makes the kernel wake the reader for every event. 0
	// means DefaultWakeup.
	Wakeup time.Duration
	// Watches are the watched path sets; nil means DefaultWatches(). An
	// empty, non-nil slice watches nothing (the programs still run and
	// count their calls).
	Watches []Watch
	// MaxWatched bounds the entries of each of the two kernel maps (watched
	// files and directories, watched names); 0 means DefaultMaxWatched.
	// Resolve reports what did not fit.
	MaxWatched int
	// Logger receives what the sensor attached, what the watches resolved
	// to, and malformed records (at warning level). Nil: nothing is logged.
	Logger *slog.Logger
}

// Stats are the sensor's counters since Open. Calls, Matched and Lost come
// from the kernel's per-CPU counters.
type Stats struct {
	// Calls is how many hooked operations the kernel filter examined (opens
	// for reading or writing, truncates, unlinks, renames, chmods, chowns,
	// links and symlinks, system-wide). Per-CPU increments are not atomic:
	// under heavy load a few may be missed.
	Calls uint64
	// Matched is how many of them touched a watched file: each became an
	// event, or was lost. Calls - Matched never reached user space.
	Matched uint64
	// Lost is how many matched operations found the ring buffer full.
	Lost uint64
	// LostByOp is Lost by operation (index Op).
	LostByOp [OpRead + 1]uint64
	// Events is how many events Run and Read delivered.
	Events uint64
	// Unresolved is how many matches the kernel could not decide (a path
	// with "//", "/./" or "/../" that matched nothing as written) that
	// user space found outside the watched paths once cleaned: dropped.
	Unresolved uint64
	// Malformed is how many records could not be decoded (a bug: they are
	// also logged).
	Malformed uint64
}
