package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/daemoneye/daemoneye/internal/bench"
)

const usage = `daemoneye-cli talks to the DaemonEye event bus.

Usage:
  daemoneye-cli [--socket PATH | --url URL] COMMAND [flags] [args]

Commands:
  pub TOPIC [DATA]                 publish DATA, or each line of standard input
  sub [--count N] [--json] PATTERN...  print messages matching the patterns
  bench [flags]                    measure publish/subscribe throughput and latency

The broker's socket is --socket, --url (unix:///path), $DAEMONEYE_SOCKET, or
the default path. Run 'daemoneye-cli COMMAND -h' for a command's flags.
`

// Main runs the command line args (without the program name) and returns
// the exit code: 0 on success, 1 on failure, 2 on a usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return MainIO(ctx, args, os.Stdin, stdout, stderr)
}

// MainIO is Main with an explicit standard input.
func MainIO(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	g := &global{stdin: stdin}
	gfs := flag.NewFlagSet("daemoneye-cli", flag.ContinueOnError)
	gfs.SetOutput(io.Discard)
	gfs.StringVar(&g.socket, "socket", "", "broker socket path")
	gfs.StringVar(&g.url, "url", "", "broker URL (unix:///path)")
	switch err := gfs.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stderr, usage)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "daemoneye-cli: %v\n\n%s", err, usage)
		return 2
	}
	args = gfs.Args()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, usage)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	var err error
	switch args[0] {
	case "bench":
		err = runBench(ctx, args[1:], stdout, stderr)
	case "pub":
		err = runPub(ctx, g, args[1:], stdout, stderr)
	case "sub":
		err = runSub(ctx, g, args[1:], stdout, stderr)
	default:
		fmt.Fprintf(stderr, "daemoneye-cli: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "daemoneye-cli %s: %v\n", args[0], err)
		return 2
	}
	fmt.Fprintf(stderr, "daemoneye-cli %s: %v\n", args[0], err)
	return 1
}

var errUsage = errors.New("usage")

// Run is Main for a real process: os.Args, standard streams, and a context
// cancelled by SIGINT.
func Run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	return Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
}

func newFlagSet(name string, stderr io.Writer, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: daemoneye-cli %s\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return nil
}

func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", stderr, "bench [flags]: measure publish/subscribe throughput and latency")
	transport := fs.String("transport", "inproc", "transport to measure: inproc (the socket transports are not built yet)")
	var cfg bench.Config
	fs.IntVar(&cfg.Pubs, "pub", 1, "number of publishers")
	fs.IntVar(&cfg.Subs, "sub", 1, "number of subscribers, each receiving every message")
	fs.IntVar(&cfg.Size, "size", 128, "payload size in bytes")
	fs.IntVar(&cfg.Msgs, "msgs", 1_000_000, "messages to publish in all")
	asJSON := fs.Bool("json", false, "print one JSON object instead of a table")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *transport != "inproc" {
		return fmt.Errorf("%w: --transport %q: only inproc is available in this build", errUsage, *transport)
	}
	if isTerminal(stderr) && !*asJSON {
		cfg.Progress = func(received, expected int) {
			fmt.Fprintf(stderr, "\r%5.1f%%  %d/%d deliveries", 100*float64(received)/float64(max(expected, 1)), received, expected)
		}
	}
	r, err := bench.Inproc(ctx, cfg)
	if cfg.Progress != nil {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		return enc.Encode(r)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "transport %s: %d pub -> %d sub, %d msgs of %d B in %.3fs\n", r.Transport, r.Pubs, r.Subs, r.Msgs, r.Size, r.Seconds)
	fmt.Fprintf(&b, "  throughput  %12.0f msgs/s  %12.0f deliveries/s  %8.1f MB/s\n", r.MsgsPerSec, r.DeliveriesPerSec, r.MBPerSec)
	if r.Samples > 0 {
		fmt.Fprintf(&b, "  latency     p50 %.1f µs  p90 %.1f µs  p99 %.1f µs  (%d samples)\n", r.P50us, r.P90us, r.P99us, r.Samples)
	} else {
		fmt.Fprintf(&b, "  latency     not sampled: payloads under 9 bytes carry no timestamp\n")
	}
	fmt.Fprintf(&b, "  dropped     %d\n", r.Dropped)
	_, err = io.WriteString(stdout, b.String())
	return err
}

// isTerminal reports whether w is a character device, for the progress
// display.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
