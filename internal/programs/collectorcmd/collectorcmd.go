package collectorcmd

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
)

// Flags are the flags every collector program takes. Register adds them to
// a flag.FlagSet; after parsing, they hold the values given.
type Flags struct {
	// Socket is the broker's Unix socket (--socket).
	Socket string
	// URL is the broker's URL instead of Socket (--url).
	URL string
	// ID is the collector id: its topics end with it (--id).
	ID string
	// Heartbeat is the time between heartbeats (--heartbeat).
	Heartbeat time.Duration
	// TokenFile is a file holding the broker token (--token-file).
	TokenFile string
	// TokenFD is an inherited file descriptor holding the broker token
	// (--token-fd); -1 for none.
	TokenFD int
	// ConnFD is an inherited connected socket to use instead of dialling
	// (--conn-fd); -1 for none.
	ConnFD int
	// Verbose logs debug detail (-v).
	Verbose bool
}

// Register adds the common flags to fs for the program name, with the
// default collector id and heartbeat interval given.
func (f *Flags) Register(fs *flag.FlagSet, name, defaultID string, defaultHeartbeat time.Duration) {
	fs.StringVar(&f.Socket, "socket", "", "broker socket (env DAEMONEYE_SOCKET; default "+client.DefaultSocketPath()+")")
	fs.StringVar(&f.URL, "url", "", "broker URL instead of --socket (unix:///path, tls://host:port)")
	fs.StringVar(&f.ID, "id", defaultID, "collector id: its topics end with it")
	fs.DurationVar(&f.Heartbeat, "heartbeat", defaultHeartbeat, "time between heartbeats")
	fs.StringVar(&f.TokenFile, "token-file", "", "read the broker token from this file (mode 0400 or 0600)")
	fs.IntVar(&f.TokenFD, "token-fd", -1, "read the broker token from this inherited file descriptor")
	fs.IntVar(&f.ConnFD, "conn-fd", -1, "use the connected socket on this inherited file descriptor instead of dialling (the agent passes it); when it breaks, "+name+" exits")
	fs.BoolVar(&f.Verbose, "v", false, "log debug detail")
}

// Collector is what a program runs once connected: Run collects until ctx
// ends (it returns nil) or a shutdown is requested over RPC.
type Collector interface {
	Run(ctx context.Context) error
}

// Program describes a collector program to Run.
type Program struct {
	// Name is the program's name, the prefix of its log messages
	// ("procmond").
	Name string
	// Flags are the parsed common flags.
	Flags *Flags
	// Logger receives the program's log lines. Required.
	Logger *slog.Logger
	// New builds the collector on conn. An error is a usage error: Run
	// logs it and returns 2.
	New func(conn *client.Conn) (Collector, error)
	// CollectingAttrs are logged with "<name>: collecting", after the
	// broker's address and before the connection's identity.
	CollectingAttrs []any
	// ErrShutdown is what the collector's Run returns after a shutdown
	// request: Run returns 0 for it.
	ErrShutdown error
	// UsageErrors are errors of the collector's Run that are the
	// operator's to fix (a source the host lacks): Run returns 2 for
	// them, 1 for other errors.
	UsageErrors []error
}

// ErrLostAgent is the cause Run reports when the connection the agent
// handed over (--conn-fd) breaks: it cannot be made again, so the program
// exits and the agent starts it again.
var ErrLostAgent = errors.New("lost the connection the agent handed over")

// The backoff between attempts to connect at start: ConnectWait doubling
// up to MaxConnectWait, each jittered by ±50%.
const (
	ConnectWait    = 100 * time.Millisecond
	MaxConnectWait = 5 * time.Second
)

// Run reads the token, connects to the broker (the inherited connection,
// or dialling with backoff until ctx ends), builds the collector and runs
// it, and returns the exit code: 0 when stopped by ctx, by a shutdown
// request, or before it could connect; 1 on a failure; 2 on a usage error
// or an address that cannot work. A broker it cannot reach at start (not
// there yet, or refusing for now) is retried with backoff (see Connect),
// so a supervisor does not see the collector crash for it.
func Run(ctx context.Context, p Program) int {
	f, log, name := p.Flags, p.Logger, p.Name
	token, err := ReadToken(f.TokenFile, f.TokenFD)
	if err != nil {
		log.Error(name + ": " + err.Error())
		return 1
	}
	ctx, lost := context.WithCancelCause(ctx)
	defer lost(nil)
	var conn *client.Conn
	addr := f.URL
	if f.ConnFD >= 0 {
		if addr != "" || f.Socket != "" || token != "" {
			log.Error(name + ": --conn-fd excludes --url, --socket and a token: the connection is already made")
			return 2
		}
		addr = fmt.Sprintf("fd %d", f.ConnFD)
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err = client.DialFD(dctx, f.ConnFD, client.Options{
			Name: f.ID,
			// The connection cannot be made again: stop, and let the
			// agent start a new collector with a new one.
			OnDisconnect: func(err error) {
				lost(fmt.Errorf("%w; exiting so that the agent starts %s again: %w", ErrLostAgent, name, err))
			},
		})
		cancel()
	} else {
		if addr == "" {
			addr = f.Socket
		}
		if addr == "" {
			addr = os.Getenv("DAEMONEYE_SOCKET")
		}
		if addr == "" {
			addr = client.DefaultSocketPath()
		}
		conn, err = Connect(ctx, name, addr, client.Options{
			Name: f.ID, Token: token,
			OnDisconnect: func(err error) {
				log.Warn(name+": lost the broker; collecting on, events are buffered until it is back", "err", err)
			},
			OnReconnect: func() { log.Info(name + ": reconnected to the broker") },
		}, ConnectWait, MaxConnectWait, log)
	}
	if err != nil {
		if ctx.Err() != nil {
			log.Info(name+": stopped before it could connect", "reason", "signal")
			return 0
		}
		log.Error(name+": cannot reach the broker", "addr", addr, "err", err)
		return 2
	}
	defer conn.Close()
	c, err := p.New(conn)
	if err != nil {
		log.Error(name + ": " + err.Error())
		return 2
	}
	attrs := append([]any{"broker", addr}, p.CollectingAttrs...)
	log.Info(name+": collecting", append(attrs, "identity", conn.Identity())...)
	err = c.Run(ctx)
	if cause := context.Cause(ctx); errors.Is(cause, ErrLostAgent) {
		err = cause
	}
	switch {
	case err == nil:
		log.Info(name+": stopped", "reason", "signal")
		return 0
	case p.ErrShutdown != nil && errors.Is(err, p.ErrShutdown):
		log.Info(name+": stopped", "reason", "shutdown requested over RPC")
		return 0
	}
	log.Error(name + ": " + err.Error())
	for _, u := range p.UsageErrors {
		if errors.Is(err, u) {
			return 2
		}
	}
	return 1
}

// Connect dials the broker at addr until it answers or ctx ends, logging
// as the program name. A broker that is not there yet, or that refuses
// for now (its connection limit is reached, it is shutting down), is tried
// again after wait, doubling up to maxWait with jitter; each failure is
// logged with its reason, at WARN when the reason changes and at least
// once a minute. Only an address that cannot work (client.ErrAddress)
// ends it early. It returns ctx's error if ctx ended first.
func Connect(ctx context.Context, name, addr string, opts client.Options, wait, maxWait time.Duration, log *slog.Logger) (*client.Conn, error) {
	var last string
	var warned time.Time
	for attempt := 1; ; attempt++ {
		conn, err := client.Dial(ctx, addr, opts)
		if err == nil {
			if attempt > 1 {
				log.Info(name+": connected to the broker", "attempts", attempt)
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
		log.Log(ctx, level, name+": cannot reach the broker; retrying", "addr", addr, "err", err, "attempt", attempt, "in", next.Round(time.Millisecond))
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

// ReadToken reads the broker token from a file or an inherited file
// descriptor (which it closes), at most 4 KiB, without surrounding white
// space; neither given: no token (the broker goes by peer credentials).
func ReadToken(file string, fd int) (string, error) {
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
