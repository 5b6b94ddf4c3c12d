// Package procmond is the procmond command: flags, logging, the
// connection to the broker, and the process collector (package
// collector/process) running until a signal or a shutdown request. The
// daemoneye-agent binary runs it too, in collector mode.
package procmond

import (
	"context"
	"errors"
	"flag"
	"io"
	"log/slog"
	"os"
	"runtime"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/collector/process"
	"github.com/daemoneye/daemoneye/collector/process/sensor"
	"github.com/daemoneye/daemoneye/collector/security"
	"github.com/daemoneye/daemoneye/internal/programs/collectorcmd"
	"github.com/daemoneye/daemoneye/internal/programs/command"
	"github.com/daemoneye/daemoneye/topics"
)

// Version is reported in procmond's capabilities.
const Version = "0.4.0"

// Main runs procmond with args (without the program name) until ctx ends
// or a shutdown is requested over RPC, and returns the exit code: 0, 1 on
// failure, 2 on a usage error or an address that cannot work. A broker it
// cannot reach at start (not there yet, or refusing for now) is retried
// with backoff until ctx ends (see connect), so a supervisor does not see
// the collector crash for it. The connection and the run loop are
// collectorcmd's, which netmond and fsmond share.
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	if os.Getenv("GOMAXPROCS") == "" {
		// procmond's work is serial (one reader of the kernel's events, a
		// scan now and then): a second P only has the Go scheduler wake a
		// spinning thread at each wakeup, context switches that cost more
		// than the work itself on a VM.
		runtime.GOMAXPROCS(1)
	}
	fs := flag.NewFlagSet("procmond", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f collectorcmd.Flags
	f.Register(fs, "procmond", process.DefaultID, process.DefaultHeartbeatInterval)
	interval := fs.Duration("interval", process.DefaultInterval, "time between scans (at least 100ms)")
	noHash := fs.Bool("no-hash", false, "do not hash executables")
	secFlag := fs.Bool("security", true, "with the eBPF sources (--source ebpf, or auto where eBPF works), also report kernel security events (ptrace, module loads, credential changes, memfd_create, bpf, mounts, setns and unshare, /proc/<pid>/mem writes) on events.process.anomaly.*")
	source := fs.String("source", string(process.SourceAuto), "where new processes are learnt of: ebpf (the kernel reports every exec and exit at once, with its data; needs root, or CAP_BPF and CAP_PERFMON, and kernel BTF), connector (the netlink process connector reports every fork, exec and exit by pid, and /proc is read at once: processes gone before that keep only pid, parent and start time; needs root or CAP_NET_ADMIN), poll (the /proc scan only: misses processes shorter than --interval), or auto (ebpf, else connector, else poll)")
	if code, ok := command.ParseFlags(fs, args, stderr); !ok {
		return code
	}
	log := command.Logger(stderr, f.Verbose).With("collector", f.ID)
	src, err := process.ParseSource(*source)
	if err != nil {
		log.Error("procmond: --source: " + err.Error())
		return 2
	}
	if src == process.SourceEBPF {
		// Fail before waiting for a broker: the collector opens the sensor
		// again when it runs.
		s, err := sensor.Open(sensor.Options{Logger: log})
		if err != nil {
			log.Error("procmond: --source ebpf: " + err.Error() + "; run procmond as root, or with CAP_BPF and CAP_PERFMON, or use --source auto or poll")
			return 2
		}
		s.Close()
	}
	if src == process.SourceConnector {
		if err := process.ProbeConnector(); err != nil {
			log.Error("procmond: --source connector: " + err.Error() + "; run procmond as root, or with CAP_NET_ADMIN, in the host's pid namespace, or use --source auto or poll")
			return 2
		}
	}
	sec := openSecurity(*secFlag, src, f.ID, log)
	if sec != nil {
		defer sec.Close()
	}
	return collectorcmd.Run(ctx, collectorcmd.Program{
		Name: "procmond", Flags: &f, Logger: log,
		New: func(conn *client.Conn) (collectorcmd.Collector, error) {
			opts := process.Options{ID: f.ID, Interval: *interval, HeartbeatInterval: f.Heartbeat, NoHash: *noHash,
				SoftwareVersion: Version, Logger: log, Source: src}
			if sec != nil {
				opts.Health = sec.Health
			}
			c, err := process.New(conn, opts)
			if err != nil || sec == nil {
				return c, err
			}
			return &withSecurity{Collector: c, sec: sec, conn: conn, log: log}, nil
		},
		CollectingAttrs: []any{"interval", *interval},
		ErrShutdown:     process.ErrShutdown,
		UsageErrors:     []error{process.ErrSource},
	})
}

// withSecurity runs the process collector and, beside it, the security
// sensor's runner publishing on the same connection; Run waits for both.
type withSecurity struct {
	*process.Collector
	sec  *security.Runner
	conn *client.Conn
	log  *slog.Logger
}

// Run runs the collector until it returns, and the security runner until
// then.
func (w *withSecurity) Run(ctx context.Context) error {
	secCtx, stop := context.WithCancel(ctx)
	secDone := make(chan error, 1)
	go func() { secDone <- w.sec.Run(secCtx, w.conn.PublishMsg) }()
	err := w.Collector.Run(ctx)
	stop()
	if serr := <-secDone; serr != nil && !errors.Is(serr, context.Canceled) {
		w.log.Warn("procmond: the security sensor stopped", "err", serr)
	}
	return err
}

// openSecurity opens the eBPF security sensor when enabled and the source
// is ebpf or auto; nil when it is off or cannot run (said in the log).
func openSecurity(enabled bool, src process.Source, id string, log *slog.Logger) *security.Runner {
	if !enabled || src != process.SourceEBPF && src != process.SourceAuto {
		return nil
	}
	r, err := security.Open(security.Options{SourceID: id, Logger: log})
	if err != nil {
		level := slog.LevelWarn
		if src == process.SourceAuto && errors.Is(err, security.ErrUnsupported) {
			level = slog.LevelInfo
		}
		log.Log(context.Background(), level, "procmond: no kernel security events: "+err.Error()+"; run procmond as root for them, or --security=false to silence this")
		return nil
	}
	log.Info("procmond: using the eBPF security sensor", "topics", topics.AllSecurity)
	return r
}
