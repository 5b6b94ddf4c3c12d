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

// EachTransport runs fn as a subtest against a broker reached over a UNIX
// socket ("unix") and in process ("inproc"): the two must behave the
// same. dial connects a client named name; the test's cleanup closes it
// and the broker. (The client package's own tests keep a copy: they cannot
// import this package.)
func EachTransport(t *testing.T, fn func(t *testing.T, dial func(name string) *client.Conn)) {
	for _, tr := range []string{"unix", "inproc"} {
		t.Run(tr, func(t *testing.T) {
			var b *eventbus.Broker
			addr := "inproc://"
			if tr == "unix" {
				var path string
				path, _, b = testbroker.Start(t, server.Options{})
				addr = "unix://" + path
			} else {
				var err error
				if b, err = eventbus.New(eventbus.Options{}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { b.Close() })
			}
			fn(t, func(name string) *client.Conn {
				c, err := client.Dial(t.Context(), addr, client.Options{Name: name, Broker: b})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			})
		})
	}
}
