package server_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/server"
)

// Host a broker on a UNIX socket, as daemoneye-broker does, and talk to
// it from a client. Local users other than root and the server's own
// user need Options.Auth.Peers to connect.
func ExampleServer() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dir, _ := os.MkdirTemp("", "example-")
	defer os.RemoveAll(dir)

	b, _ := eventbus.New(eventbus.Options{})
	defer b.Close()
	srv, err := server.New(server.Options{Broker: b})
	if err != nil {
		fmt.Println(err)
		return
	}
	path := filepath.Join(dir, "sock", server.SocketName)
	l, err := server.ListenUnix(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()

	c, err := client.Dial(ctx, "unix://"+path, client.Options{Name: "example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	sub, _ := c.Subscribe(ctx, "events.example.+", 16)
	_ = c.Publish("events.example.hello", []byte("hi"))
	select {
	case m := <-sub.C():
		fmt.Printf("%s %s\n", m.Topic, m.Payload)
	case <-ctx.Done():
		fmt.Println(ctx.Err())
	}
	c.Close()

	_ = srv.Shutdown(ctx)                                    // goaway to every client, then wait for them
	fmt.Println(errors.Is(<-served, server.ErrServerClosed)) // Serve returns once shut down
	// Output:
	// events.example.hello hi
	// true
}
