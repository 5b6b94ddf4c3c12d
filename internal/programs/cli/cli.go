package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
)

const usage = `daemoneye-cli talks to the DaemonEye event bus.

Usage:
  daemoneye-cli [--socket PATH | --url URL] [--token-file F] [--tls-ca F --tls-cert F --tls-key F] COMMAND [flags] [args]

Commands:
  pub TOPIC [DATA]                 publish DATA, or each line of standard input
  sub [--count N] [--json] PATTERN...  print messages matching the patterns
  stats [--json]                   print the broker's counters, topics and connections
  bench [flags]                    measure publish/subscribe throughput and latency
  call SUBJECT [JSON]              send an RPC request (protobuf JSON) and print the response
  collectors list|status|restart [ID]   the agent's collectors
  collectors health|capabilities|config ID  ask a collector over RPC
  ps [--json]                      the processes procmond sees now
  alerts --follow [--json]         print alerts as the agent raises them

The broker is --socket, --url (unix:///path, tls://host:port with the
--tls-* files, or tcp://127.0.0.1:port with a token), $DAEMONEYE_SOCKET, or
the default socket path. A token is read from --token-file (a file of
mode 0600 holding the secret) or $DAEMONEYE_TOKEN, never from the command
line, where every user could read it. Over a UNIX socket the broker must
run as root or as you, or as the uid in $DAEMONEYE_BROKER_UID; nothing is
sent to anyone else. Run 'daemoneye-cli COMMAND -h' for a command's flags.
`

// Main runs the command line args (without the program name) and returns
// the exit code: 0 on success, 1 on failure, 2 on a usage error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return MainIO(ctx, args, os.Stdin, stdout, stderr)
}

// MainIO is Main with an explicit standard input.
func MainIO(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	stderr = &lockedWriter{w: stderr} // the connection's goroutine writes notices too
	g := &global{stdin: stdin, stderr: stderr}
	gfs := flag.NewFlagSet("daemoneye-cli", flag.ContinueOnError)
	gfs.SetOutput(io.Discard)
	gfs.StringVar(&g.socket, "socket", "", "broker socket path")
	gfs.StringVar(&g.url, "url", "", "broker URL (unix:///path, tls://host:port, tcp://127.0.0.1:port)")
	tokenFile := gfs.String("token-file", "", "authenticate with the token in this file (mode 0600), instead of $DAEMONEYE_TOKEN")
	tokenArg := gfs.String("token", "", "refused: use --token-file or $DAEMONEYE_TOKEN")
	gfs.StringVar(&g.tlsCA, "tls-ca", "", "CA certificate (PEM) of the broker, for tls://")
	gfs.StringVar(&g.tlsCert, "tls-cert", "", "client certificate (PEM), for tls://")
	gfs.StringVar(&g.tlsKey, "tls-key", "", "client key (PEM), for tls://")
	switch err := gfs.Parse(args); {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stderr, usage)
		return 0
	case err != nil:
		fmt.Fprintf(stderr, "daemoneye-cli: %v\n\n%s", err, usage)
		return 2
	}
	if *tokenArg != "" {
		fmt.Fprintf(stderr, "daemoneye-cli: %v\n", errTokenArg)
		return 2
	}
	if *tokenFile != "" {
		var err error
		if g.token, err = readTokenFile(*tokenFile); err != nil {
			fmt.Fprintf(stderr, "daemoneye-cli: %v\n", err)
			return 1
		}
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
		err = runBench(ctx, g, args[1:], stdout, stderr)
	case "pub":
		err = runPub(ctx, g, args[1:], stdout, stderr)
	case "sub":
		err = runSub(ctx, g, args[1:], stdout, stderr)
	case "stats":
		err = runStats(ctx, g, args[1:], stdout, stderr)
	case "call":
		err = runCall(ctx, g, args[1:], stdout, stderr)
	case "collectors":
		err = runCollectors(ctx, g, args[1:], stdout, stderr)
	case "ps":
		err = runPs(ctx, g, args[1:], stdout, stderr)
	case "alerts":
		err = runAlerts(ctx, g, args[1:], stdout, stderr)
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

// errTokenArg refuses --token: a secret on the command line is shown to
// every user by ps and /proc/PID/cmdline.
var errTokenArg = errors.New("--token is refused, since every user on the machine could read it from the process list: " +
	"put the token in a file only you can read (chmod 600) and pass --token-file FILE, or set DAEMONEYE_TOKEN")

// maxTokenFile bounds what readTokenFile reads, in bytes.
const maxTokenFile = 4096

// readTokenFile reads a token from path: the file's content without
// surrounding white space. The file must not be readable or writable by
// group or others.
func readTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("--token-file: %w", err)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return "", fmt.Errorf("--token-file %s has mode %04o, which lets other users read or change the token: chmod 600 %s", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("--token-file %s: %w", path, err)
	}
	if len(b) > maxTokenFile {
		return "", fmt.Errorf("--token-file %s is over %d bytes: it should hold the token alone", path, maxTokenFile)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("--token-file %s is empty: write the token into it", path)
	}
	return token, nil
}

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
