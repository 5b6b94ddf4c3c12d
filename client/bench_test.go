package client

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/eventbus"
)

// benchDeadline bounds a benchmark's wait for its subscriber or replies:
// past it the benchmark fails and says what it waited for, instead of
// hanging.
const benchDeadline = time.Minute

// BenchmarkUnixPubSub measures publish -> receive through a broker over
// its UNIX socket: one publishing connection, one subscribing connection,
// all in this process. Messages the subscriber's side could not take are
// reported as dropped/op rather than hidden.
func BenchmarkUnixPubSub(b *testing.B) {
	for _, size := range []int{16, 128, 1024} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			path, _ := startBrokerB(b)
			sub, pub := dialB(b, path), dialB(b, path)
			s, err := sub.Subscribe(b.Context(), "events.bench.#", 1<<16)
			if err != nil {
				b.Fatal(err)
			}
			// Flush every 4096 messages: keep the publisher within reach
			// of the subscriber.
			benchPubSub(b, sub, pub, s, size, 4096)
		})
	}
}

// BenchmarkInprocPubSub measures publish -> receive through a broker in
// this process, with Conns from Connect: one publishing, one subscribing
// on a channel. The subscription blocks its publisher when full (flow
// control), so nothing is dropped; dropped/op would show it.
func BenchmarkInprocPubSub(b *testing.B) {
	for _, size := range []int{16, 128, 1024} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			bk := newBrokerB(b)
			sub, pub := connectB(b, bk, "sub"), connectB(b, bk, "pub")
			s, err := sub.SubscribeWith(b.Context(), "events.bench.#", SubscribeOptions{Buffer: 1 << 16, Overflow: eventbus.OverflowBlock, BlockTimeout: time.Minute})
			if err != nil {
				b.Fatal(err)
			}
			benchPubSub(b, sub, pub, s, size, 0)
		})
	}
}

// benchPubSub publishes size-byte messages from pub for as long as b
// loops, flushing every flushEvery messages (never when 0), then a stop
// message, and reports what s received in msgs/s and what it did not in
// dropped/op. It fails after benchDeadline without the stop message.
func benchPubSub(b *testing.B, sub, pub *Conn, s *Subscription, size, flushEvery int) {
	payload := make([]byte, size)
	got := make(chan int, 1) // buffered: the goroutine ends even if nobody waits
	const stop = "events.bench.stop"
	go func() {
		n := 0
		for m := range s.C() {
			if m.Topic == stop {
				break
			}
			n++
		}
		got <- n
	}()
	b.ReportAllocs()
	b.SetBytes(int64(size))
	start := time.Now()
	n := 0
	for b.Loop() {
		if err := pub.Publish("events.bench.p", payload); err != nil {
			b.Fatal(err)
		}
		if n++; flushEvery > 0 && n%flushEvery == 0 {
			if err := pub.Flush(b.Context()); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := pub.Publish(stop, nil); err != nil {
		b.Fatal(err)
	}
	var received int
	select {
	case received = <-got:
	case <-time.After(benchDeadline):
		b.Fatalf("the subscriber did not receive the stop message within %v of the last publish (%d published; the subscriber's connection was lost %d times: a broker drops a slow consumer's messages)",
			benchDeadline, n, sub.Stats().Disconnects)
	}
	elapsed := time.Since(start)
	b.ReportMetric(float64(received)/elapsed.Seconds(), "msgs/s")
	b.ReportMetric(float64(n-received)/float64(n), "dropped/op")
}

// BenchmarkUnixRequest measures sequential request/reply round trips over
// the UNIX socket: a caller and a responder (SubscribeFunc + Respond), each
// on its own connection to an in-process server.
func BenchmarkUnixRequest(b *testing.B) {
	path, _ := startBrokerB(b)
	benchRequest(b, dialB(b, path), dialB(b, path))
}

// BenchmarkInprocRequest measures sequential request/reply round trips in
// process: a caller and a responder (SubscribeFunc + Respond), each on its
// own Conn from Connect to one broker.
func BenchmarkInprocRequest(b *testing.B) {
	bk := newBrokerB(b)
	benchRequest(b, connectB(b, bk, "svc"), connectB(b, bk, "caller"))
}

// benchRequest makes sequential requests from c to an echo service on svc
// for as long as b loops, and reports calls/s.
func benchRequest(b *testing.B, svc, c *Conn) {
	if _, err := svc.SubscribeFunc(b.Context(), "control.svc.echo", SubscribeOptions{}, func(m *Msg) { svc.Respond(m, m.Payload) }); err != nil {
		b.Fatal(err)
	}
	// One deadline for the whole run, so that a lost reply fails the
	// benchmark instead of hanging it (a context per call would allocate).
	ctx, cancel := context.WithTimeout(b.Context(), benchDeadline)
	defer cancel()
	p := make([]byte, 64)
	if _, err := c.Request(ctx, "control.svc.echo", p); err != nil { // the inbox
		b.Fatal(err)
	}
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		if _, err := c.Request(ctx, "control.svc.echo", p); err != nil {
			b.Fatalf("request %d: %v (the run has %v in all)", b.N, err, benchDeadline)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "calls/s")
}

// dialB dials the broker at path over its UNIX socket; the Conn is closed
// when b ends.
func dialB(b *testing.B, path string) *Conn {
	c, err := Dial(b.Context(), path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// connectB connects to bk in process; the Conn is closed when b ends.
func connectB(b *testing.B, bk *eventbus.Broker, name string) *Conn {
	c, err := Connect(bk, Options{Name: name})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	return c
}

// newBrokerB returns a broker closed when b ends.
func newBrokerB(b *testing.B) *eventbus.Broker {
	bk, err := eventbus.New(eventbus.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bk.Close() })
	return bk
}
