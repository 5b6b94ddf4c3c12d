// Command compare runs DaemonEye and an embedded nats-server side by side
// on this machine and prints a table, or one JSON document with --json.
//
//	cd bench && go run ./cmd/compare [--msgs N] [--reqs N] [--count K] [--scenario SUBSTRING] [--json]
//	cd bench && go run ./cmd/compare --from report.json   # the table of a saved --json report
//
// See package github.com/daemoneye/daemoneye/bench for the scenarios and
// the method.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/daemoneye/daemoneye/bench"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cfg bench.Config
	var asJSON, quiet, list bool
	var cpuProfile, from string
	fs.IntVar(&cfg.Msgs, "msgs", bench.DefaultMsgs, "measured messages per pub/sub trial (each subscriber receives all)")
	fs.IntVar(&cfg.Requests, "reqs", 0, "measured sequential requests per req/reply trial (default msgs/40, at least 1000)")
	fs.IntVar(&cfg.Count, "count", bench.DefaultCount, "repetitions of each scenario (systems alternate); the median is reported")
	fs.IntVar(&cfg.FlushEvery, "flush-every", 0, "publishers also flush (a round trip) every N messages; 0: only at the end")
	fs.StringVar(&cfg.Filter, "scenario", "", "run only scenarios whose id or title contains this (case-insensitive), e.g. 1:10, inproc, req, mtls, socket/128B")
	fs.DurationVar(&cfg.StallTimeout, "stall", bench.DefaultStallTimeout, "cut a trial short when nothing arrives for this long")
	fs.DurationVar(&cfg.TrialTimeout, "trial-timeout", bench.DefaultTrialTimeout, "upper bound of one trial")
	fs.BoolVar(&asJSON, "json", false, "print one JSON document instead of the table")
	fs.BoolVar(&quiet, "quiet", false, "do not print one progress line per trial on stderr")
	fs.BoolVar(&list, "list", false, "list the scenarios and exit")
	fs.StringVar(&from, "from", "", "print the table of a report saved with --json from this file, without running anything")
	fs.StringVar(&cpuProfile, "cpuprofile", "", "write a CPU profile of the whole run (both systems) to this file")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "compare: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if cfg.Msgs <= 0 || cfg.Count <= 0 || cfg.Requests < 0 || cfg.FlushEvery < 0 {
		fmt.Fprintln(stderr, "compare: --msgs and --count must be positive, --reqs and --flush-every not negative")
		return 2
	}
	if from != "" {
		return printSaved(from, stdout, stderr)
	}
	if list {
		for _, sc := range bench.Select(cfg.Filter) {
			fmt.Fprintf(stdout, "%-28s %s, %d B\n", sc.ID, sc.Title, sc.Size)
		}
		return 0
	}
	if !quiet {
		cfg.Progress = stderr
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			fmt.Fprintf(stderr, "compare: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "compare: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	start := time.Now()
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "compare: %v\n", err)
		return 1
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			fmt.Fprintf(stderr, "compare: %v\n", err)
			return 1
		}
		return 0
	}
	if err := rep.WriteTable(stdout); err != nil {
		fmt.Fprintf(stderr, "compare: %v\n", err)
		return 1
	}
	if !quiet {
		fmt.Fprintf(stderr, "done in %.1fs\n", time.Since(start).Seconds())
	}
	return 0
}

// printSaved prints the table of a report saved with --json.
func printSaved(path string, stdout, stderr io.Writer) int {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(stderr, "compare: %v\n", err)
		return 1
	}
	var rep bench.Report
	if err := json.Unmarshal(data, &rep); err != nil {
		fmt.Fprintf(stderr, "compare: %s is not a report saved with --json: %v\n", path, err)
		return 1
	}
	if err := rep.WriteTable(stdout); err != nil {
		fmt.Fprintf(stderr, "compare: %v\n", err)
		return 1
	}
	return 0
}
