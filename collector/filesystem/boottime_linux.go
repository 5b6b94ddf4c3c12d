//go:build linux

package filesystem

import (
	"time"

	"golang.org/x/sys/unix"
)

// bootTime is the wall time at boot: now minus CLOCK_BOOTTIME, the clock
// of the sensor's start times.
func bootTime() time.Time {
	var boot unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &boot)
	return time.Now().Add(-time.Duration(boot.Nano()))
}
