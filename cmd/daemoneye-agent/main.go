// Command daemoneye-agent watches the processes of the host: it hosts the
// DaemonEye event bus on a UNIX socket, starts and supervises procmond
// (this same binary in collector mode), runs the detection rules on the
// process events and prints the alerts. SIGINT or SIGTERM stops it and its
// collectors.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/daemoneye/daemoneye/internal/programs/agent"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := agent.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
