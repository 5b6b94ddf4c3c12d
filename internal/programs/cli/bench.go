package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/daemoneye/daemoneye/internal/programs/loadgen"
)

const benchHelp = `usage: daemoneye-cli [--socket PATH | --url URL] bench [flags]

Measure publish/subscribe throughput and end-to-end latency.

Without --socket or --url, bench starts a broker of its own for the run:
  inproc  an eventbus.Broker in this process, called directly (the default)
  unix    the same broker behind the server, on a socket in a new temporary
          directory; each publisher and subscriber has its own connection
  tcp     the same over plaintext TCP on a loopback port; the clients
          authenticate with a token made up for the run
With --socket or --url, it measures the broker there (unix, or tcp for a
tcp:// or tls:// URL).

Every subscriber receives each of the --msgs messages. msgs/s is --msgs over
the time from the first publish to the last delivery; deliveries/s counts
every subscriber's copy. The publish rate is how fast the publishers handed
their messages over; over a socket it runs ahead of delivery by what the
connections buffer.

Latency: a payload starts with its send time (8 bytes: nanoseconds since the
run started, on the monotonic clock), which the subscriber subtracts from the
time it receives the message. Every message carries one, except in-process
without --rate, where one in 64 does (--sample): there, reading the clock
costs as much as delivering a message. The latencies go into a log-linear
histogram of bounded memory whose percentiles are within 0.4%. Payloads
under 8 bytes carry no send time, and latency is reported as unavailable.
Publishers running flat out fill the queues, so latency then includes the
time spent waiting in them; use --rate to measure it below saturation.

Deliveries that never arrive are reported as dropped: bench stops waiting
when nothing has arrived for 2 s after the publishers finished. A progress
line is drawn on standard error when it is a terminal.

Flags:
`

// runBench runs `daemoneye-cli bench`.
func runBench(ctx context.Context, g *global, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("bench", stderr, "")
	fs.Usage = func() {
		fmt.Fprint(stderr, benchHelp)
		fs.PrintDefaults()
	}
	cfg, asJSON, err := parseBench(fs, g, args)
	if err != nil {
		return err
	}
	progress := isTerminal(stderr)
	if progress {
		cfg.Progress = func(p loadgen.Progress) { fmt.Fprintf(stderr, "\r\033[K%s", progressLine(p)) }
	}
	r, err := loadgen.Run(ctx, cfg)
	if progress {
		fmt.Fprint(stderr, "\r\033[K")
	}
	if errors.Is(err, loadgen.ErrConfig) {
		return usageErr{err}
	}
	if err != nil {
		return err
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(r)
	}
	_, err = io.WriteString(stdout, formatBench(&r))
	return err
}

// parseBench turns bench's flags, and the global --socket and --url, into
// a configuration. Errors are usage errors.
func parseBench(fs *flag.FlagSet, g *global, args []string) (cfg loadgen.Config, asJSON bool, err error) {
	transport := fs.String("transport", "", "`name` of the transport to measure: inproc, unix or tcp (default inproc, or what --socket/--url names)")
	fs.IntVar(&cfg.Pubs, "pub", loadgen.DefaultPubs, "number of publishers")
	fs.IntVar(&cfg.Subs, "sub", loadgen.DefaultSubs, "number of subscribers, each receiving every message (0: publish only)")
	fs.IntVar(&cfg.Size, "size", loadgen.DefaultSize, "payload size in `bytes` (at least 8 to measure latency)")
	fs.IntVar(&cfg.Msgs, "msgs", loadgen.DefaultMsgs, "messages to publish in all, split across the publishers")
	fs.IntVar(&cfg.Rate, "rate", 0, "messages per second per publisher (0: as fast as possible)")
	fs.IntVar(&cfg.SampleEvery, "sample", 0, "measure the latency of one message in `N` per publisher (0: every message, but 1 in 64 in-process without --rate)")
	fs.BoolVar(&asJSON, "json", false, "print one JSON object instead of a table")
	if err := parseFlags(fs, args); err != nil {
		return cfg, false, err
	}
	if fs.NArg() > 0 {
		return cfg, false, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if cfg.Token, cfg.TLS, err = g.credentials(); err != nil {
		return cfg, false, err
	}
	cfg.Addr = g.url
	if cfg.Addr == "" {
		cfg.Addr = g.socket
	}
	switch {
	case *transport != "":
		if cfg.Transport, err = loadgen.ParseTransport(*transport); err != nil {
			return cfg, false, usageErr{err}
		}
	case cfg.Addr != "":
		cfg.Transport = addrTransport(cfg.Addr)
	default:
		cfg.Transport = loadgen.Inproc
	}
	// Inproc with an address is left to Validate, which explains it.
	if implied := addrTransport(cfg.Addr); cfg.Addr != "" && cfg.Transport != loadgen.Inproc && cfg.Transport != implied {
		return cfg, false, usageErr{fmt.Errorf("%w: --transport %s does not match the broker address %s, which is %s; leave out --transport",
			loadgen.ErrConfig, cfg.Transport, cfg.Addr, implied)}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, false, usageErr{err}
	}
	return cfg, asJSON, nil
}

// addrTransport returns the transport a broker address names.
func addrTransport(addr string) loadgen.Transport {
	if strings.HasPrefix(addr, "tcp://") || strings.HasPrefix(addr, "tls://") {
		return loadgen.TCP
	}
	return loadgen.Unix
}

// usageErr is an error in how bench was called: it is printed as it is,
// with exit code 2.
type usageErr struct{ err error }

func (e usageErr) Error() string        { return e.err.Error() }
func (e usageErr) Unwrap() error        { return e.err }
func (e usageErr) Is(target error) bool { return target == errUsage }

// progressLine describes a run in progress, on one line.
func progressLine(p loadgen.Progress) string {
	pct := func(n, of int64) float64 { return 100 * float64(n) / float64(max(of, 1)) }
	line := fmt.Sprintf("%5.1fs  published %5.1f%%", p.Elapsed.Seconds(), pct(p.Published, p.Msgs))
	if p.Deliveries > 0 {
		line += fmt.Sprintf("  delivered %5.1f%% (%d/%d)", pct(p.Delivered, p.Deliveries), p.Delivered, p.Deliveries)
	}
	return line
}

// formatBench renders a result as a short table.
func formatBench(r *loadgen.Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "transport %s: %d pub -> %d sub, %d msgs of %d B in %.3fs", r.Transport, r.Pubs, r.Subs, r.Msgs, r.Size, r.ElapsedS)
	if r.Rate > 0 {
		fmt.Fprintf(&b, ", %d msgs/s per pub", r.Rate)
	}
	if r.Broker != "self-started" {
		fmt.Fprintf(&b, " (broker %s)", r.Broker)
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "  throughput  %12.0f msgs/s  %12.0f deliveries/s  %8.1f MB/s\n", r.MsgsPerSec, r.DeliveriesPerSec, r.MBPerSec)
	fmt.Fprintf(&b, "  publish     %12.0f msgs/s  (the publishers finished in %.3fs)\n", r.PubMsgsPerSec, r.PublishS)
	switch {
	case r.LatencySamples > 0:
		fmt.Fprintf(&b, "  latency     p50 %s  p90 %s  p99 %s  max %s  (%d samples)\n",
			fmtMicros(*r.P50us), fmtMicros(*r.P90us), fmtMicros(*r.P99us), fmtMicros(*r.MaxUs), r.LatencySamples)
	case r.Subs == 0:
		b.WriteString("  latency     unavailable: no subscribers\n")
	case r.Size < loadgen.StampSize:
		fmt.Fprintf(&b, "  latency     unavailable: payloads under %d bytes carry no send time\n", loadgen.StampSize)
	default:
		b.WriteString("  latency     unavailable: nothing was delivered\n")
	}
	fmt.Fprintf(&b, "  dropped     %d", r.Dropped)
	if r.Dropped != 0 || r.ClientDropped != 0 || (r.BrokerDropped != nil && *r.BrokerDropped != 0) {
		fmt.Fprintf(&b, " of %d deliveries (", int64(r.Msgs)*int64(r.Subs))
		if r.BrokerDropped != nil {
			fmt.Fprintf(&b, "counted by the broker %d, ", *r.BrokerDropped)
		}
		fmt.Fprintf(&b, "by full client buffers %d)", r.ClientDropped)
	}
	b.WriteString("\n")
	return b.String()
}

// fmtMicros formats a latency in microseconds with a fitting unit.
func fmtMicros(us float64) string {
	switch {
	case us < 1000:
		return fmt.Sprintf("%.1f µs", us)
	case us < 1e6:
		return fmt.Sprintf("%.2f ms", us/1e3)
	}
	return fmt.Sprintf("%.2f s", us/1e6)
}

// isTerminal reports whether w is a character device, for the progress
// display. It looks through the lockedWriter that MainIO wraps stderr in.
func isTerminal(w io.Writer) bool {
	if l, ok := w.(*lockedWriter); ok {
		w = l.w
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
