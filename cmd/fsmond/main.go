// Command fsmond watches writes, renames, deletions, permission and owner
// changes below the watched paths (/etc, dot files of /root and /home,
// binary and library directories, cron and systemd units) and reads of
// sensitive files, with eBPF filtered in the kernel, and publishes them on
// the DaemonEye bus (events.filesystem.*). It answers the collector
// control operations on control.collector.+.fsmond and sends heartbeats.
// daemoneye-agent normally starts it; run it by hand with --socket to
// point it at a broker. SIGINT or SIGTERM stops it.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/daemoneye/daemoneye/internal/programs/fsmond"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := fsmond.Main(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}
