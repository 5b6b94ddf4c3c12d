// Command procmond watches the processes of the host and publishes their
// lifecycle on the DaemonEye bus (events.process.*). It answers the
// collector control operations on control.collector.+.procmond and sends
// heartbeats. daemoneye-agent normally starts it; run it by hand with
// --socket to point it at a broker. SIGINT or SIGTERM stops it.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/daemoneye/daemoneye/internal/programs/procmond"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := procmond.Main(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}
