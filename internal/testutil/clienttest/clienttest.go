// Package clienttest runs a test against the bus over each transport a
// client can use. For tests only.
package clienttest

import (
	"testing"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/server"
)

// Options configures EachTransportWith. The zero value is what
// EachTransport uses.
type Options struct {
	// Broker makes the broker of each subtest.
	Broker eventbus.Options
	// Server serves that broker on the UNIX socket ("unix" only; its
	// Broker field is set by the helper).
	Server server.Options
	// Client is every client's options; Name is set per dial. For
	// "inproc" a nil Policy means the broker's (client.Connect); for
	// "unix" it means the default policy, as with client.Dial.
	Client client.Options
}

// EachTransport runs fn as a subtest against a broker reached over a UNIX
// socket ("unix", client.Dial) and in process ("inproc", client.Connect):
// the two must behave the same. dial connects a client named name; the
// test's cleanup closes it and the broker. (The client package's own tests
// keep a copy: they cannot import this package.)
func EachTransport(t *testing.T, fn func(t *testing.T, dial func(name string) *client.Conn)) {
	EachTransportWith(t, Options{}, fn)
}

// EachTransportWith is EachTransport with the broker, server and client
// options of opts.
func EachTransportWith(t *testing.T, opts Options, fn func(t *testing.T, dial func(name string) *client.Conn)) {
	for _, tr := range []string{"unix", "inproc"} {
		t.Run(tr, func(t *testing.T) {
			b, err := eventbus.New(opts.Broker)
			if err != nil {
				t.Fatal(err)
			}
			var addr string
			if tr == "unix" {
				sopts := opts.Server
				sopts.Broker = b
				var path string
				path, _, _ = testbroker.Start(t, sopts) // closes b
				addr = "unix://" + path
			} else {
				t.Cleanup(func() { b.Close() })
			}
			fn(t, func(name string) *client.Conn {
				copts := opts.Client
				copts.Name = name
				var c *client.Conn
				var err error
				if addr == "" {
					c, err = client.Connect(b, copts)
				} else {
					c, err = client.Dial(t.Context(), addr, copts)
				}
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			})
		})
	}
}

// Conn returns a client named name: of bk in process (client.Connect) when
// addr is "inproc", else dialled at addr. The cleanup of tb closes it.
func Conn(tb testing.TB, addr string, bk *eventbus.Broker, name string) *client.Conn {
	tb.Helper()
	var c *client.Conn
	var err error
	if addr == "inproc" {
		c, err = client.Connect(bk, client.Options{Name: name})
	} else {
		c, err = client.Dial(tb.Context(), addr, client.Options{Name: name})
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}
