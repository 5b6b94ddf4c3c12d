package sensor

import (
	"log/slog"
	"time"
)

// DefaultRingBytes is Options.RingBytes when it is 0: 1 MiB, about 8,700
// events (120 bytes each in the ring, its header included).
const DefaultRingBytes = 1 << 20

// DefaultWakeup is Options.Wakeup when it is 0.
const DefaultWakeup = 10 * time.Millisecond

// DefaultUDPSockets is Options.UDPSockets when it is 0.
const DefaultUDPSockets = 16384

// Options configure Open. The zero value is usable.
type Options struct {
	// RingBytes is the size of the BPF ring buffer that carries events to
	// user space: a power of two and a multiple of the page size (4 KiB
	// on amd64); 0 means DefaultRingBytes. An event that does not fit while
	// the reader is behind is lost and counted (Stats).
	RingBytes int
	// Wakeup bounds how long an event may wait in the ring buffer before
	// Run sees it. With a positive value the kernel does not wake the
	// reader for each event: the reader polls every Wakeup, and the kernel
	// wakes it only once a quarter of the ring buffer is unread. A negative
	// value makes the kernel wake the reader for every event. 0 means
	// DefaultWakeup.
	Wakeup time.Duration
	// UDPSockets is how many UDP sockets the kernel remembers as reported
	// (an LRU map keyed by socket cookie, about 100 bytes each): a socket
	// forgotten while open because more sockets sent since is reported
	// again on its next send. 0 means DefaultUDPSockets.
	UDPSockets int
	// Logger receives what the sensor attached, and malformed records (at
	// warning level). Nil: nothing is logged.
	Logger *slog.Logger
}

// Stats are the sensor's counters since Open. Lost* come from the kernel:
// ring-buffer writes that failed because the buffer was full, summed over
// the CPUs.
type Stats struct {
	// Lost is the sum of the Lost* counters of each kind.
	Lost uint64
	// LostConnect, LostAccept, LostListen and LostUDPSend are the events
	// of each kind lost. A lost UDP first send is reported on the
	// socket's next send instead, if there is one.
	LostConnect, LostAccept, LostListen, LostUDPSend uint64
	// Events is how many events Run and Read delivered.
	Events uint64
	// Malformed is how many records could not be decoded (a bug: they are
	// also logged).
	Malformed uint64
}
