package collector

import (
	"testing"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/eventbus"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/testutil/clienttest"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/rpc"
	"github.com/daemoneye/daemoneye/server"
)

// BenchmarkHealth measures a health check through the collector service
// (Client.Health, Handler answering inline) by one caller, both parties
// in process (inproc) or over the UNIX socket (unix).
func BenchmarkHealth(b *testing.B) {
	for _, tr := range []string{"inproc", "unix"} {
		b.Run(tr, func(b *testing.B) {
			var bk *eventbus.Broker
			addr := "inproc"
			if tr == "unix" {
				var path string
				path, _, bk = testbroker.Start(b, server.Options{})
				addr = "unix://" + path
			} else {
				var err error
				if bk, err = eventbus.New(eventbus.Options{}); err != nil {
					b.Fatal(err)
				}
				defer bk.Close()
			}
			dial := func(name string) *client.Conn { return clienttest.Conn(b, addr, bk, name) }
			srv := rpc.NewServer(dial("demo"), rpc.ServerOptions{})
			defer srv.Close()
			if err := Serve(b.Context(), srv, "demo", minimal{}); err != nil {
				b.Fatal(err)
			}
			c := NewClient(rpc.NewClient(dial("agent"), rpc.ClientOptions{}))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Health(b.Context(), "demo", &eventbusv1.HealthCheckRequest{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
