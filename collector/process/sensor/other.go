//go:build !linux

package sensor

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"time"
)

// DefaultRingBytes is Options.RingBytes when it is 0.
const DefaultRingBytes = 2 << 20

// DefaultWakeup is Options.Wakeup when it is 0.
const DefaultWakeup = 10 * time.Millisecond

// Options configure Open; see the Linux documentation.
type Options struct {
	RingBytes int
	Wakeup    time.Duration
	MaxArgs   int
	Logger    *slog.Logger
}

// Stats are the sensor's counters; see the Linux documentation.
type Stats struct {
	Lost                         uint64
	LostExec, LostFork, LostExit uint64
	Events                       uint64
	Malformed                    uint64
}

// Sensor is the eBPF process sensor; it exists only on Linux.
type Sensor struct{}

// Open returns an error wrapping ErrUnsupported: the sensor needs Linux.
func Open(Options) (*Sensor, error) {
	return nil, fmt.Errorf("%w: %s is not Linux", ErrUnsupported, runtime.GOOS)
}

// Run returns ErrClosed.
func (*Sensor) Run(context.Context, func(*Event) error) error { return ErrClosed }

// Read returns ErrClosed.
func (*Sensor) Read(context.Context) (Event, error) { return Event{}, ErrClosed }

// Stats returns zero.
func (*Sensor) Stats() Stats { return Stats{} }

// Close does nothing.
func (*Sensor) Close() error { return nil }
