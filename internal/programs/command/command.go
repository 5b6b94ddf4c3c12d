package command

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
)

// ParseFlags parses args with fs, whose errors go to stderr. It returns
// ok when the program should go on; otherwise the exit code: 0 after -h or
// --help (fs printed the usage), 2 after a bad flag (fs printed why) or
// when arguments are left over, which it reports.
func ParseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return 2, false
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "%s: unexpected arguments %q\n", fs.Name(), fs.Args())
		return 2, false
	}
	return 0, true
}

// Logger returns a text logger that writes to w from level info, or from
// debug when verbose (-v).
func Logger(w io.Writer, verbose bool) *slog.Logger {
	level := slog.LevelInfo
	if verbose {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))
}
