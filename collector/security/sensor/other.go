//go:build !linux

package sensor

import (
	"context"
	"fmt"
	"runtime"
)

// Sensor is the eBPF security sensor; it exists only on Linux.
type Sensor struct{}

// Open returns an error wrapping ErrUnsupported: the sensor needs Linux.
func Open(Options) (*Sensor, error) {
	return nil, fmt.Errorf("%w: %s is not Linux", ErrUnsupported, runtime.GOOS)
}

// Run returns ErrClosed.
func (*Sensor) Run(context.Context, func(*Event) error) error { return ErrClosed }

// ExcludeBPF does nothing.
func (*Sensor) ExcludeBPF(uint32) error { return ErrClosed }

// Stats returns zero.
func (*Sensor) Stats() Stats { return Stats{} }

// Close does nothing.
func (*Sensor) Close() error { return nil }
