package sensor

import "errors"

// ErrUnsupported is returned by Open when this kernel or process cannot run
// the sensor. Its message says what is needed; the wrapping error says what
// was missing.
var ErrUnsupported = errors.New("the eBPF filesystem sensor cannot run here: " +
	"it needs Linux >= 5.11 with BTF (/sys/kernel/btf/vmlinux) on amd64, and root, or CAP_BPF and CAP_PERFMON")

// ErrClosed is returned by Run, Read and Resolve once the Sensor is closed.
var ErrClosed = errors.New("the eBPF filesystem sensor is closed")

// ErrRingBytes is returned by Open for an Options.RingBytes that is not a
// power of two multiple of the page size.
var ErrRingBytes = errors.New("sensor: Options.RingBytes must be a power of two multiple of the page size")

// ErrWatch is returned by Open and Resolve for a Watch whose Path is not
// an absolute, clean path with a valid pattern in each component, or whose
// Flags are empty or unknown.
var ErrWatch = errors.New("sensor: invalid watch")
