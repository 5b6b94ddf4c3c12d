// Package fsmond is the fsmond command: flags, logging, the connection to
// the broker (collectorcmd), and the filesystem collector (package
// collector/filesystem) running until a signal or a shutdown request. The
// daemoneye-agent binary runs it too, in collector mode.
package fsmond

import (
	"context"
	"flag"
	"io"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/collector/filesystem"
	"github.com/daemoneye/daemoneye/collector/filesystem/sensor"
	"github.com/daemoneye/daemoneye/internal/programs/collectorcmd"
	"github.com/daemoneye/daemoneye/internal/programs/command"
)

// Version is reported in fsmond's capabilities.
const Version = "0.1.0"

// Main runs fsmond with args (without the program name) until ctx ends or
// a shutdown is requested over RPC, and returns the exit code: 0, 1 on
// failure, 2 on a usage error or when the eBPF filesystem sensor cannot
// run here (so that a supervisor does not restart it in vain).
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("fsmond", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f collectorcmd.Flags
	f.Register(fs, "fsmond", filesystem.DefaultID, filesystem.DefaultHeartbeatInterval)
	if code, ok := command.ParseFlags(fs, args, stderr); !ok {
		return code
	}
	log := command.Logger(stderr, f.Verbose).With("collector", f.ID)
	// Fail before waiting for a broker: the collector opens the sensor
	// again when it runs.
	s, err := sensor.Open(sensor.Options{Logger: log})
	if err != nil {
		log.Error("fsmond: " + err.Error() + "; run fsmond as root, or with CAP_BPF and CAP_PERFMON, on a kernel with BTF")
		return 2
	}
	s.Close()
	return collectorcmd.Run(ctx, collectorcmd.Program{
		Name: "fsmond", Flags: &f, Logger: log,
		New: func(conn *client.Conn) (collectorcmd.Collector, error) {
			return filesystem.New(conn, filesystem.Options{ID: f.ID, HeartbeatInterval: f.Heartbeat, SoftwareVersion: Version, Logger: log})
		},
		ErrShutdown: filesystem.ErrShutdown,
	})
}
