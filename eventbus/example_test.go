package eventbus_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/daemoneye/daemoneye/eventbus"
)

// Embed a broker, subscribe with a wildcard and receive what a collector
// publishes.
func Example() {
	b, err := eventbus.New(eventbus.Options{})
	if err != nil {
		panic(err)
	}
	defer b.Close()

	sub, err := b.Subscribe("events.process.+", eventbus.SubscribeOptions{Name: "detector"})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	err = b.Publish(ctx, eventbus.Message{Topic: "events.process.lifecycle", Payload: []byte(`{"pid":4242}`)})
	if err != nil {
		panic(err)
	}
	d, err := sub.Next(ctx)
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s #%d via %s: %s\n", d.Topic, d.Seq, d.Pattern, d.Payload)
	// Output: events.process.lifecycle #1 via events.process.+: {"pid":4242}
}

// A handler subscription runs on a goroutine the broker owns; Shutdown
// waits until it has handled everything queued.
func ExampleBroker_SubscribeFunc() {
	b, _ := eventbus.New(eventbus.Options{})
	_, err := b.SubscribeFunc("events.#", eventbus.SubscribeOptions{}, func(d eventbus.Delivery) {
		fmt.Println(d.Topic, string(d.Payload))
	})
	if err != nil {
		panic(err)
	}
	for _, t := range []string{"events.process.lifecycle", "events.network.connections"} {
		_ = b.Publish(context.Background(), eventbus.Message{Topic: t, Payload: []byte("hello")})
	}
	if err := b.Shutdown(context.Background()); err != nil {
		panic(err)
	}
	// Output:
	// events.process.lifecycle hello
	// events.network.connections hello
}

// A subscriber with overlapping patterns receives each message once, through
// its most specific pattern.
func ExampleSubscriber() {
	b, _ := eventbus.New(eventbus.Options{})
	defer b.Close()
	s := b.NewSubscriber("agent")
	all, _ := s.Subscribe("events.#", eventbus.SubscribeOptions{})
	procs, _ := s.Subscribe("events.process.#", eventbus.SubscribeOptions{Name: "procs"})

	ctx := context.Background()
	_ = b.Publish(ctx, eventbus.Message{Topic: "events.process.lifecycle"})
	_ = b.Publish(ctx, eventbus.Message{Topic: "events.network.connections"})

	d1, _ := procs.Next(ctx)
	d2, _ := all.Next(ctx)
	fmt.Println(d1.Topic, "->", d1.Pattern)
	fmt.Println(d2.Topic, "->", d2.Pattern)
	// Output:
	// events.process.lifecycle -> events.process.#
	// events.network.connections -> events.#
}

// A subscription that must never hold up publishers drops its oldest
// messages when full; the drops show in Stats.
func ExampleSubscribeOptions_dropOldest() {
	b, _ := eventbus.New(eventbus.Options{})
	defer b.Close()
	_, _ = b.Subscribe("events.#", eventbus.SubscribeOptions{
		Name:        "best-effort",
		MaxMessages: 100,
		Overflow:    eventbus.OverflowDropOldest,
	})
	for range 150 {
		_ = b.Publish(context.Background(), eventbus.Message{Topic: "events.perf.metrics"})
	}
	st := b.Stats().Subscriptions[0]
	fmt.Println("queued:", st.QueueDepth, "dropped oldest:", st.Dropped.Oldest)
	// Output: queued: 100 dropped oldest: 50
}

// A publish that a subscriber could not take returns an error naming it;
// every other subscriber got the message.
func ExampleBroker_Publish_queueFull() {
	b, _ := eventbus.New(eventbus.Options{})
	defer b.Close()
	_, _ = b.Subscribe("events.#", eventbus.SubscribeOptions{Name: "tiny", MaxMessages: 1, Overflow: eventbus.OverflowDropNewest})
	ctx := context.Background()
	_ = b.Publish(ctx, eventbus.Message{Topic: "events.a"})
	err := b.Publish(ctx, eventbus.Message{Topic: "events.a"})
	fmt.Println(errors.Is(err, eventbus.ErrQueueFull))
	// Output: true
}
