package agent

import (
	"context"
	"io"
	"os"
	"sort"
	"strings"

	"github.com/daemoneye/daemoneye/internal/programs/fsmond"
	"github.com/daemoneye/daemoneye/internal/programs/netmond"
	"github.com/daemoneye/daemoneye/internal/programs/procmond"
)

// collectorKind is what the agent knows of a collector program it runs:
// how collector mode runs it, which event domain it publishes, and what
// it may do when the agent is root.
type collectorKind struct {
	// main runs the collector in collector mode (args without the
	// program name).
	main func(ctx context.Context, args []string, stderr io.Writer) int
	// domain is its event domain: it publishes events.<domain>.#.
	domain string
	// caps are the capabilities it runs with under a root agent, for
	// these args.
	caps func(args []string) []uintptr
	// bpf says whether its seccomp filter lets it call bpf, for these
	// args.
	bpf func(args []string) bool
	// kernelSensor: it runs only with eBPF (root, BTF), so the agent
	// starts it by default only where that is there.
	kernelSensor bool
}

// kinds are the collector programs there are, by name.
var kinds = map[string]collectorKind{
	"procmond": {main: procmond.Main, domain: "process", caps: procmondCaps, bpf: procmondUsesBPF},
	// netmond and fsmond load their eBPF sensors and read /proc of the
	// processes their events name (executable, container).
	"netmond": {main: netmond.Main, domain: "network", caps: sensorCaps, bpf: always, kernelSensor: true},
	"fsmond":  {main: fsmond.Main, domain: "filesystem", caps: sensorCaps, bpf: always, kernelSensor: true},
}

// sensorCaps are the capabilities of a kernel-sensor collector: load and
// attach its BPF programs, and read other processes' /proc entries.
func sensorCaps([]string) []uintptr {
	return []uintptr{capBPF, capPerfmon, capDACReadSearch, capSysPtrace}
}

// always lets a kernel-sensor collector call bpf whatever its args.
func always([]string) bool { return true }

// kindNames lists the kinds, sorted, for messages.
func kindNames() string {
	names := make([]string, 0, len(kinds))
	for n := range kinds {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// defaultCollectors are the collectors the agent runs when told none:
// procmond, and every kernel-sensor collector when the agent is root on
// a kernel with BTF, each with its kind as its id.
func defaultCollectors() []CollectorSpec {
	specs := []CollectorSpec{{ID: "procmond", Kind: "procmond"}}
	if os.Geteuid() != 0 {
		return specs
	}
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		return specs
	}
	names := make([]string, 0, len(kinds))
	for n, k := range kinds {
		if k.kernelSensor {
			names = append(names, n)
		}
	}
	sort.Strings(names)
	for _, n := range names {
		specs = append(specs, CollectorSpec{ID: n, Kind: n})
	}
	return specs
}
