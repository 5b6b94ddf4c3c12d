// Package testbroker starts a broker behind a server on a UNIX socket in a
// test's temporary directory, as daemoneye-broker would, and stops it when
// the test ends. For tests only.
package testbroker

import (
	"path/filepath"
	"sync"
	"testing"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/protocol/transport"
	"github.com/daemoneye/daemoneye/server"
)

// Start starts a server with opts on a broker (opts.Broker, or a new one) on a
// fresh socket, and returns the socket's path. The test's cleanup closes
// the server, waits for it, and closes the broker.
func Start(t testing.TB, opts server.Options) (path string, srv *server.Server, b *eventbus.Broker) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "eventbus.sock")
	srv, b, _ = StartAt(t, path, opts, nil)
	return path, srv, b
}

// StartAt is Start on the socket path given, for tests that stop a broker
// and start another in its place. before, if not nil, is called with the
// broker before the server accepts connections (to subscribe in process
// first, say). stop closes the server, waits for it and closes the broker;
// it is safe to call more than once, and the test's cleanup calls it.
func StartAt(t testing.TB, path string, opts server.Options, before func(*eventbus.Broker)) (srv *server.Server, b *eventbus.Broker, stop func()) {
	t.Helper()
	b = opts.Broker
	if b == nil {
		var err error
		if b, err = eventbus.New(eventbus.Options{}); err != nil {
			t.Fatal(err)
		}
		opts.Broker = b
	}
	var err error
	if srv, err = server.New(opts); err != nil {
		t.Fatal(err)
	}
	if before != nil {
		before(b)
	}
	l, err := transport.ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	stop = sync.OnceFunc(func() { srv.Close(); <-served; b.Close() })
	t.Cleanup(stop)
	return srv, b, stop
}
