// Package procmond is the procmond command: flags, logging, the
// connection to the broker, and the process collector (package
// collector/process) running until a signal or a shutdown request. The
// daemoneye-agent binary runs it too, in collector mode.
package procmond

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/collector/process"
	"github.com/daemoneye/daemoneye/collector/process/sensor"
	"github.com/daemoneye/daemoneye/collector/security"
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
// the collector crash for it.
func Main(ctx context.Context, args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("procmond", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", "", "broker socket (env DAEMONEYE_SOCKET; default "+client.DefaultSocketPath()+")")
	url := fs.String("url", "", "broker URL instead of --socket (unix:///path, tls://host:port)")
	id := fs.String("id", process.DefaultID, "collector id: its topics end with it")
	interval := fs.Duration("interval", process.DefaultInterval, "time between scans (at least 100ms)")
	heartbeat := fs.Duration("heartbeat", process.DefaultHeartbeatInterval, "time between heartbeats")
	noHash := fs.Bool("no-hash", false, "do not hash executables")
	source := fs.String("source", string(process.SourceAuto), "where new processes are learnt of: ebpf (the kernel reports every exec and exit at once, with its data; needs root, or CAP_BPF and CAP_PERFMON, and kernel BTF), connector (the netlink process connector reports every fork, exec and exit by pid, and /proc is read at once: processes gone before that keep only pid, parent and start time; needs root or CAP_NET_ADMIN), poll (the /proc scan only: misses processes shorter than --interval), or auto (ebpf, else connector, else poll)")
	tokenFile := fs.String("token-file", "", "read the broker token from this file (mode 0400 or 0600)")
	tokenFD := fs.Int("token-fd", -1, "read the broker token from this inherited file descriptor")
	connFD := fs.Int("conn-fd", -1, "use the connected socket on this inherited file descriptor instead of dialling (the agent passes it); when it breaks, procmond exits")
	secFlag := fs.Bool("security", true, "with the eBPF sources (--source ebpf, or auto where eBPF works), also report kernel security events (ptrace, module loads, credential changes, memfd_create, bpf, mounts, setns and unshare, /proc/<pid>/mem writes) on events.process.anomaly.*")
	verbose := fs.Bool("v", false, "log debug detail")
	if code, ok := command.ParseFlags(fs, args, stderr); !ok {
		return code
	}
	log := command.Logger(stderr, *verbose).With("collector", *id)
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
	token, err := readToken(*tokenFile, *tokenFD)
	if err != nil {
		log.Error("procmond: " + err.Error())
		return 1
	}
	ctx, lost := context.WithCancelCause(ctx)
	defer lost(nil)
	var conn *client.Conn
	addr := *url
	if *connFD >= 0 {
		if addr != "" || *socket != "" || token != "" {
			log.Error("procmond: --conn-fd excludes --url, --socket and a token: the connection is already made")
			return 2
		}
		addr = fmt.Sprintf("fd %d", *connFD)
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err = client.DialFD(dctx, *connFD, client.Options{
			Name: *id,
			// The connection cannot be made again: stop, and let the
			// agent start a new procmond with a new one.
			OnDisconnect: func(err error) { lost(fmt.Errorf("%w: %w", errLostAgent, err)) },
		})
		cancel()
	} else {
		if addr == "" {
			addr = *socket
		}
		if addr == "" {
			addr = os.Getenv("DAEMONEYE_SOCKET")
		}
		if addr == "" {
			addr = client.DefaultSocketPath()
		}
		conn, err = connect(ctx, addr, client.Options{
			Name: *id, Token: token,
			OnDisconnect: func(err error) {
				log.Warn("procmond: lost the broker; collecting on, events are buffered until it is back", "err", err)
			},
			OnReconnect: func() { log.Info("procmond: reconnected to the broker") },
		}, connectWait, maxConnectWait, log)
	}
	if err != nil {
		if ctx.Err() != nil {
			log.Info("procmond: stopped before it could connect", "reason", "signal")
			return 0
		}
		log.Error("procmond: cannot reach the broker", "addr", addr, "err", err)
		return 2
	}
	defer conn.Close()
	sec := openSecurity(*secFlag, src, *id, log)
	opts := process.Options{ID: *id, Interval: *interval, HeartbeatInterval: *heartbeat, NoHash: *noHash,
		SoftwareVersion: Version, Logger: log, Source: src}
	if sec != nil {
		defer sec.Close()
		opts.Health = sec.Health
	}
	c, err := process.New(conn, opts)
	if err != nil {
		log.Error("procmond: " + err.Error())
		return 2
	}
	log.Info("procmond: collecting", "broker", addr, "interval", *interval, "identity", conn.Identity())
	if sec != nil {
		secCtx, stop := context.WithCancel(ctx)
		secDone := make(chan error, 1)
		go func() { secDone <- sec.Run(secCtx, conn.PublishMsg) }()
		defer func() {
			stop()
			if err := <-secDone; err != nil {
				log.Warn("procmond: the security sensor stopped", "err", err)
			}
		}()
	}
	err = c.Run(ctx)
	if cause := context.Cause(ctx); errors.Is(cause, errLostAgent) {
		err = cause
	}
	switch {
	case err == nil, errors.Is(err, process.ErrShutdown):
		log.Info("procmond: stopped", "reason", stopReason(err))
		return 0
	}
	log.Error("procmond: " + err.Error())
	if errors.Is(err, process.ErrSource) {
		return 2
	}
	return 1
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

// The backoff between attempts to connect at start: connectWait doubling
// up to maxConnectWait, each jittered by ±50%.
const (
	connectWait    = 100 * time.Millisecond
	maxConnectWait = 5 * time.Second
)

// connect dials the broker at addr until it answers or ctx ends. A broker
// that is not there yet, or that refuses for now (its connection limit is
// reached, it is shutting down), is tried again after wait, doubling up to
// maxWait with jitter; each failure is logged with its reason, at WARN
// when the reason changes and at least once a minute. Only an address
// that cannot work (client.ErrAddress) ends it early. It returns ctx's
// error if ctx ended first.
func connect(ctx context.Context, addr string, opts client.Options, wait, maxWait time.Duration, log *slog.Logger) (*client.Conn, error) {
	var last string
	var warned time.Time
	for attempt := 1; ; attempt++ {
		conn, err := client.Dial(ctx, addr, opts)
		if err == nil {
			if attempt > 1 {
				log.Info("procmond: connected to the broker", "attempts", attempt)
			}
			return conn, nil
		}
		if errors.Is(err, client.ErrAddress) {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		next := wait/2 + rand.N(wait)
		level := slog.LevelDebug
		if err.Error() != last || time.Since(warned) >= time.Minute {
			level, last, warned = slog.LevelWarn, err.Error(), time.Now()
		}
		log.Log(ctx, level, "procmond: cannot reach the broker; retrying", "addr", addr, "err", err, "attempt", attempt, "in", next.Round(time.Millisecond))
		t := time.NewTimer(next)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		wait = min(2*wait, maxWait)
	}
}

// errLostAgent: the inherited connection to the agent broke.
var errLostAgent = errors.New("lost the connection the agent handed over; exiting so that the agent starts procmond again")

func stopReason(err error) string {
	if err != nil {
		return "shutdown requested over RPC"
	}
	return "signal"
}

// readToken reads the broker token from a file or an inherited file
// descriptor; neither given: no token (peer credentials).
func readToken(file string, fd int) (string, error) {
	var r io.Reader
	switch {
	case file != "" && fd >= 0:
		return "", errors.New("give --token-file or --token-fd, not both")
	case file != "":
		f, err := os.Open(file)
		if err != nil {
			return "", fmt.Errorf("read the token: %w", err)
		}
		defer f.Close()
		r = f
	case fd >= 0:
		f := os.NewFile(uintptr(fd), "token-fd-"+strconv.Itoa(fd))
		if f == nil {
			return "", fmt.Errorf("--token-fd %d is not an open file descriptor", fd)
		}
		defer f.Close()
		r = f
	default:
		return "", nil
	}
	b, err := io.ReadAll(io.LimitReader(r, 4096))
	if err != nil {
		return "", fmt.Errorf("read the token: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}
