package client

import (
	"context"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
	"github.com/daemoneye/daemoneye/server"
)

// A subscription whose consumer falls behind loses nothing by default:
// the Conn waits for room instead of dropping (flow control).
func TestSubscriptionFlowControlLosesNothing(t *testing.T) {
	eachTransport(t, func(t *testing.T, dial func(string) *Conn) {
		sub, pub := dial("sub"), dial("pub")
		s, err := sub.Subscribe(t.Context(), "events.#", 4)
		if err != nil {
			t.Fatal(err)
		}
		const n = 20000
		published := make(chan error, 1)
		go func() { // in process, the publisher waits for the consumer
			payload := make([]byte, 100)
			for range n {
				if err := pub.Publish("events.flow", payload); err != nil {
					published <- err
					return
				}
			}
			published <- pub.Flush(t.Context())
		}()
		for i := range n {
			select {
			case m := <-s.C():
				if m.Seq != uint64(i+1) {
					t.Fatalf("message %d has seq %d: %d missed", i+1, m.Seq, m.Seq-uint64(i+1))
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("received %d of %d (dropped %d)", i, n, s.Dropped())
			}
		}
		if err := <-published; err != nil {
			t.Fatal(err)
		}
		if d := s.Dropped(); d != 0 || sub.Stats().Dropped != 0 {
			t.Errorf("dropped %d (Conn: %d), want 0", d, sub.Stats().Dropped)
		}
	})
}

// A subscriber that stops reading is held up at the broker, whose limits
// count what it loses: once it reads again, every message published is
// received or counted in the broker's stats.
func TestSlowSubscriberLossIsCountedByTheBroker(t *testing.T) {
	path, _, b := testbroker.Start(t, server.Options{MaxPending: 16 << 10, Logger: testLogger()})
	sub, pub := dialT(t, path), dialT(t, path)
	s, err := sub.Subscribe(t.Context(), "events.#", 4)
	if err != nil {
		t.Fatal(err)
	}
	const n = 20000
	published := make(chan error, 1)
	go func() {
		payload := make([]byte, 100)
		for range n {
			if err := pub.Publish("events.slow", payload); err != nil {
				published <- err
				return
			}
		}
		published <- pub.Flush(t.Context())
	}()
	// Not reading until the broker has dropped some for the subscriber.
	wait.Until(t, 60*time.Second, "the broker to drop messages for a subscriber that does not read", func() bool {
		return b.Stats().Dropped.Total() > 0
	})
	// The consumer reads without pause from now on (pauses would get it
	// disconnected again and again): the receive is the synchronisation;
	// the 50 ms case only looks at the broker's counters again.
	received := 0
	timeout := time.After(60 * time.Second)
	for {
		st := b.Stats()
		if st.Published == n && uint64(received)+st.Dropped.Total()+st.Unrouted == n {
			break
		}
		select {
		case _, ok := <-s.C():
			if !ok {
				t.Fatalf("subscription ended: %v", s.Err())
			}
			received++
		case <-time.After(50 * time.Millisecond):
		case <-timeout:
			t.Fatalf("published %d, but received %d + dropped at the broker %d + unrouted %d (the client dropped %d)",
				st.Published, received, st.Dropped.Total(), st.Unrouted, s.Dropped())
		}
	}
	if err := <-published; err != nil {
		t.Fatal(err)
	}
}

// With DropWhenFull, a full channel drops, and the drops are counted.
func TestDropWhenFullCounts(t *testing.T) {
	eachTransport(t, func(t *testing.T, dial func(string) *Conn) {
		sub, pub := dial("sub"), dial("pub")
		s, err := sub.SubscribeWith(t.Context(), "events.#", SubscribeOptions{Buffer: 4, DropWhenFull: true})
		if err != nil {
			t.Fatal(err)
		}
		const n = 100
		for range n {
			if err := pub.Publish("events.drop", nil); err != nil {
				t.Fatal(err)
			}
		}
		if err := pub.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		// The reader is never held up: a Flush on the subscriber's Conn
		// returns after every delivery before it.
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		if err := sub.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		// In process, the pump may still be at work.
		wait.Until(t, 10*time.Second, "the drops counted", func() bool { return s.Dropped() == n-4 })
		if s.Dropped() != n-4 || sub.Stats().Dropped != n-4 || len(s.C()) != 4 {
			t.Errorf("dropped %d (Conn: %d), %d in the channel; want %d and 4", s.Dropped(), sub.Stats().Dropped, len(s.C()), n-4)
		}
	})
}
