package sensor

import "errors"

// ErrUnsupported is returned by Open when this kernel or process cannot run
// the sensor. Its message says what is needed; the wrapping error says what
// was missing. Callers fall back to another source of process events.
var ErrUnsupported = errors.New("the eBPF process sensor cannot run here: " +
	"it needs Linux >= 5.8 with BTF (/sys/kernel/btf/vmlinux) and root, or CAP_BPF and CAP_PERFMON")

// ErrClosed is returned by Run and Read once the Sensor is closed.
var ErrClosed = errors.New("the eBPF process sensor is closed")

// ErrRingBytes is returned by Open for an Options.RingBytes that is not a
// power of two multiple of the page size.
var ErrRingBytes = errors.New("sensor: Options.RingBytes must be a power of two multiple of the page size")
