//go:build linux

package sensor

import "runtime"

var runtime_LockOSThread = runtime.LockOSThread
