// Command daemoneye-broker runs the DaemonEye event bus as a standalone
// broker: on a UNIX socket, and optionally on TCP with mutual TLS. SIGINT
// or SIGTERM drains the clients and removes the socket.
//
// Settings come from flags, then $DAEMONEYE_SOCKET, then the file given
// with --config (YAML; an unknown key is an error), then the defaults.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/daemoneye/daemoneye/internal/programs/broker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := broker.Main(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}
