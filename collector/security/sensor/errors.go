package sensor

import "errors"

// ErrUnsupported is returned by Open when this kernel or process cannot run
// the sensor. Its message says what is needed; the wrapping error says what
// was missing. Callers run without security events.
var ErrUnsupported = errors.New("the eBPF security sensor cannot run here: " +
	"it needs Linux >= 5.8 with BTF (/sys/kernel/btf/vmlinux) and root, or CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN")

// ErrClosed is returned by Run once the Sensor is closed.
var ErrClosed = errors.New("the eBPF security sensor is closed")

// ErrRingBytes is returned by Open for an Options.RingBytes that is not a
// power of two multiple of the page size.
var ErrRingBytes = errors.New("security sensor: Options.RingBytes must be a power of two multiple of the page size")

// errMalformed is wrapped by decode for a record it cannot decode.
var errMalformed = errors.New("malformed security record")
