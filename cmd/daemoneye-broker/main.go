// Command daemoneye-broker runs the DaemonEye event bus as a standalone
// broker on a UNIX socket. SIGINT or SIGTERM drains the clients and removes
// the socket.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/server"
	"github.com/daemoneye/daemoneye/internal/transport"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "daemoneye-broker:", err)
		os.Exit(1)
	}
}

func run() error {
	fs := flag.NewFlagSet("daemoneye-broker", flag.ContinueOnError)
	socket := fs.String("socket", envOr("DAEMONEYE_SOCKET", transport.DefaultSocketPath()), "UNIX socket to listen on (env DAEMONEYE_SOCKET)")
	maxConns := fs.Int("max-conns", 1024, "most concurrent client connections")
	drain := fs.Duration("drain-timeout", 5*time.Second, "how long SIGINT/SIGTERM waits for clients to leave")
	verbose := fs.Bool("v", false, "log connections")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	b, err := eventbus.New(eventbus.Options{Logger: log})
	if err != nil {
		return err
	}
	defer b.Close()
	srv, err := server.New(server.Options{Broker: b, Logger: log, MaxConns: *maxConns})
	if err != nil {
		return err
	}
	l, err := transport.ListenUnix(*socket)
	if err != nil {
		return err
	}
	log.Info("listening", "socket", *socket)

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "drain_timeout", *drain)
	dctx, cancel := context.WithTimeout(context.Background(), *drain)
	defer cancel()
	if err := srv.Shutdown(dctx); err != nil {
		log.Warn("clients did not leave in time", "err", err)
	}
	<-served // the listener closed: the socket file is removed
	return b.Shutdown(dctx)
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}
