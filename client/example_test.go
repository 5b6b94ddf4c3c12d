package client_test

import (
	"context"
	"fmt"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/topic"
)

// Connect to a broker in the same process and publish to a subscriber:
// the Conn has the API it has over a socket, and checks topics with the
// broker's own policy (here, the domains app and control).
func ExampleConnect() {
	b, err := eventbus.New(eventbus.Options{Policy: &topic.Policy{Domains: []string{"app", "control"}}})
	if err != nil {
		panic(err)
	}
	defer b.Close()

	c, err := client.Connect(b, client.Options{Name: "example"})
	if err != nil {
		panic(err)
	}
	defer c.Close()

	ctx := context.Background()
	sub, err := c.Subscribe(ctx, "app.orders.+", 16)
	if err != nil {
		panic(err)
	}
	if err := c.Publish("app.orders.created", []byte("order 42")); err != nil {
		panic(err)
	}
	m := <-sub.C()
	fmt.Printf("%s #%d via %s: %s\n", m.Topic, m.Seq, m.Pattern, m.Payload)

	err = c.Publish("events.orders.created", nil)
	fmt.Println(err)
	// Output:
	// app.orders.created #1 via app.orders.+: order 42
	// client: publish: invalid topic "events.orders.created": first segment "events" is not a registered domain (app, control)
}
