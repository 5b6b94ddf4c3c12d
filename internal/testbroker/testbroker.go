// Package testbroker starts a broker behind a server on a UNIX socket in a
// test's temporary directory, as daemoneye-broker would, and stops it when
// the test ends. For tests only.
package testbroker

import (
	"path/filepath"
	"testing"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/server"
	"github.com/daemoneye/daemoneye/internal/transport"
)

// Start starts a broker and a server with opts (whose Broker it sets) on a
// fresh socket, and returns the socket's path. The test's cleanup closes
// the server, waits for it, and closes the broker.
func Start(t testing.TB, opts server.Options) (path string, srv *server.Server, b *eventbus.Broker) {
	t.Helper()
	b, err := eventbus.New(eventbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	opts.Broker = b
	if srv, err = server.New(opts); err != nil {
		t.Fatal(err)
	}
	path = filepath.Join(t.TempDir(), "eventbus.sock")
	l, err := transport.ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() { srv.Close(); <-served; b.Close() })
	return path, srv, b
}
