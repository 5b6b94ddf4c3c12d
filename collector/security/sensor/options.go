package sensor

import (
	"log/slog"
	"time"
)

// DefaultRingBytes is Options.RingBytes when it is 0: 1 MiB, about 10,000
// of the common events (88 bytes and the ring buffer's 8-byte header).
const DefaultRingBytes = 1 << 20

// DefaultWakeup is Options.Wakeup when it is 0.
const DefaultWakeup = 10 * time.Millisecond

// Options configure Open. The zero value is usable.
type Options struct {
	// RingBytes is the size of the BPF ring buffer: a power of two and a
	// multiple of the page size; 0 means DefaultRingBytes. An event that
	// does not fit while the reader is behind is lost and counted (Stats).
	RingBytes int
	// Wakeup bounds how long an event may wait in the ring buffer before
	// Run sees it, as collector/process/sensor's Options.Wakeup: with a
	// positive value the reader polls every Wakeup and the kernel wakes it
	// only once a quarter of the ring is unread; negative wakes the reader
	// for every event. 0 means DefaultWakeup.
	Wakeup time.Duration
	// ExcludeBPF are process ids whose BPF program loads are not reported
	// (DaemonEye's own sensors' loaders: a collector passes its own pid).
	// More can be added with Sensor.ExcludeBPF.
	ExcludeBPF []uint32
	// Logger receives what the sensor attached and malformed records (at
	// warning level). Nil: nothing is logged.
	Logger *slog.Logger
}

// Stats are the sensor's counters since Open. Lost* come from the kernel:
// ring-buffer writes that failed because the buffer was full.
type Stats struct {
	// Lost is the sum of LostByKind.
	Lost uint64
	// LostByKind are the events lost, indexed by Kind (index 0 unused).
	LostByKind [KindMax + 1]uint64
	// Events is how many events Run delivered.
	Events uint64
	// Malformed is how many records could not be decoded (a bug: the first
	// is logged).
	Malformed uint64
}
