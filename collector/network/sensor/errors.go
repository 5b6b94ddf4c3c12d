package sensor

import "errors"

// ErrUnsupported is returned by Open when this kernel or process cannot run
// the sensor. Its message says what is needed; the wrapping error says what
// was missing. Callers run without network events, and say so.
var ErrUnsupported = errors.New("the eBPF network sensor cannot run here: " +
	"it needs Linux >= 6.3 with BTF (/sys/kernel/btf/vmlinux), and root, or CAP_BPF and CAP_PERFMON")

// ErrClosed is returned by Run and Read once the Sensor is closed.
var ErrClosed = errors.New("the eBPF network sensor is closed")

// ErrOptions is returned by Open for options out of range: a
// RingBytes that is not a power of two multiple of the page size, or a
// negative UDPSockets.
var ErrOptions = errors.New("sensor: invalid options")
