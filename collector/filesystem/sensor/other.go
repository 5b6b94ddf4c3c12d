//go:build !linux

package sensor

import (
	"context"
	"fmt"
	"runtime"
)

// Sensor is the eBPF filesystem sensor; it exists only on Linux.
type Sensor struct{}

// Open returns an error wrapping ErrUnsupported: the sensor needs Linux.
func Open(Options) (*Sensor, error) {
	return nil, fmt.Errorf("%w: %s is not Linux", ErrUnsupported, runtime.GOOS)
}

// Run returns ErrClosed.
func (*Sensor) Run(context.Context, func(*Event) error) error { return ErrClosed }

// Read returns ErrClosed.
func (*Sensor) Read(context.Context) (Event, error) { return Event{}, ErrClosed }

// Resolve returns ErrClosed.
func (*Sensor) Resolve() (Resolved, error) { return Resolved{}, ErrClosed }

// Stats returns zero.
func (*Sensor) Stats() Stats { return Stats{} }

// Close does nothing.
func (*Sensor) Close() error { return nil }
