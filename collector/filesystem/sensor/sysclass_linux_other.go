//go:build linux && !amd64

package sensor

import (
	"fmt"
	"runtime"

	"github.com/cilium/ebpf"
)

// fillSysClass fails: the BPF program reads system call arguments from the
// amd64 registers only.
func fillSysClass(*ebpf.Map) error {
	return fmt.Errorf("%w: the filesystem sensor reads amd64 system call registers; %s is not supported yet",
		ErrUnsupported, runtime.GOARCH)
}
