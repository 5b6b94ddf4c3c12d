//go:build !linux || !(amd64 || arm64)

package agent

import (
	"errors"
	"runtime"
)

// confineSyscalls fails: the collector's seccomp filter is written for
// linux/amd64 and linux/arm64, and a collector does not run without it.
func confineSyscalls(bool) error {
	return errors.New("the collector's seccomp filter is not available on " + runtime.GOOS + "/" + runtime.GOARCH + "; run the agent on linux/amd64 or linux/arm64")
}
