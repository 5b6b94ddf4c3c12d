// Package netmond is the netmond command: flags, logging, the connection
// to the broker, and the network collector (package collector/network)
// running until a signal or a shutdown request. Its flags, log lines and
// exit codes are procmond's (package collectorcmd holds what they share).
package netmond

import (
	"context"
	"flag"
	"io"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/collector/network"
	"github.com/daemoneye/daemoneye/collector/network/sensor"
	"github.com/daemoneye/daemoneye/internal/programs/collectorcmd"
	"github.com/daemoneye/daemoneye/internal/programs/command"
)

// Version is reported in netmond's capabilities.
const Version = "0.1.0"

// Main runs netmond with args (without the program name) until ctx ends
// or a shutdown is requested over RPC, and returns the exit code: 0, 1 on
// failure, 2 on a usage error, an address that cannot work, or a host
// where the eBPF network sensor cannot run (checked before it waits for a
// broker). A broker it cannot reach at start is retried with backoff
// until ctx ends.
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("netmond", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f collectorcmd.Flags
	f.Register(fs, "netmond", network.DefaultID, network.DefaultHeartbeatInterval)
	if code, ok := command.ParseFlags(fs, args, stderr); !ok {
		return code
	}
	log := command.Logger(stderr, f.Verbose).With("collector", f.ID)
	// Fail before waiting for a broker: the collector opens the sensor
	// again when it runs.
	s, err := sensor.Open(sensor.Options{Logger: log})
	if err != nil {
		log.Error("netmond: " + err.Error() + "; run netmond as root, or with CAP_BPF and CAP_PERFMON, on Linux >= 6.3 with BTF")
		return 2
	}
	s.Close()
	return collectorcmd.Run(ctx, collectorcmd.Program{
		Name: "netmond", Flags: &f, Logger: log,
		New: func(conn *client.Conn) (collectorcmd.Collector, error) {
			return network.New(conn, network.Options{ID: f.ID, HeartbeatInterval: f.Heartbeat, SoftwareVersion: Version, Logger: log})
		},
		ErrShutdown: network.ErrShutdown,
		UsageErrors: []error{network.ErrSensor},
	})
}
