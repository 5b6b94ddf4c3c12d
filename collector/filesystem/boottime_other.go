//go:build !linux

package filesystem

import "time"

// bootTime is unknown off Linux, where the sensor does not run.
func bootTime() time.Time { return time.Time{} }
