// Command netmond watches the network activity of the host's processes
// (TCP connects, accepts and listens, first UDP sends) with eBPF and
// publishes it on the DaemonEye bus (events.network.connections.*). It
// answers the collector control operations on control.collector.+.netmond
// and sends heartbeats. daemoneye-agent normally starts it; run it by hand
// with --socket to point it at a broker. SIGINT or SIGTERM stops it.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/daemoneye/daemoneye/internal/programs/netmond"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := netmond.Main(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}
