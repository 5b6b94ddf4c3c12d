package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/protocol/wire"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
)

// A message whose frame is larger than the connection's whole buffer, for a
// block subscription: the publisher must not spin until its context ends
// (Room and Deliver once measured it differently), and gets an error.
func TestBlockedPublishOfAFrameThatNeverFits(t *testing.T) {
	path, _, b := start(t, Options{MaxPending: 100})
	sub := dial(t, path)
	sub.send(wire.AppendSubscribe(nil, &wire.Subscribe{SID: 1, Pattern: []byte("events.#"), BlockTimeoutMs: 100}))
	sub.sync()
	payload := []byte(strings.Repeat("x", 80)) // topic + payload 88 bytes <= 100; the frame is 116 > 100
	done := make(chan error, 1)
	go func() { done <- b.Publish(context.Background(), eventbus.Message{Topic: "events.a", Payload: payload}) }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("a frame over MaxPending was accepted")
		}
	case <-time.After(3 * time.Second):
		t.Error("Publish still running after 3 s with BlockTimeout 100 ms")
		sub.nc.Close()
		<-done
	}
}

// Server.Close does not wait on a connection whose reader is publishing to
// a blocked in-process subscriber.
func TestCloseEndsAPublishWaitingForRoom(t *testing.T) {
	path, srv, b := start(t, Options{})
	s, err := b.Subscribe("events.#", eventbus.SubscribeOptions{MaxMessages: 1, BlockTimeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Unsubscribe()
	pub := dial(t, path)
	pub.send(publishFrame("events.a", "1"))
	pub.send(publishFrame("events.a", "2")) // the reader waits for room
	pub.send(wire.AppendU64(nil, wire.TypePing, 1))
	// The broker numbers a message before it waits for room: once the
	// topic counts 2, the reader is in Publish with the second.
	wait.Until(t, 10*time.Second, "the reader to publish the second message", func() bool {
		for _, tp := range b.Stats().Topics {
			if tp.Topic == "events.a" && tp.Published >= 2 {
				return true
			}
		}
		return false
	})
	done := make(chan struct{})
	go func() { srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Error("Server.Close still waiting after 3 s: the reader is stuck in Broker.Publish")
		s.Unsubscribe()
		<-done
	}
}

// Probing a queue-group member that is full must not disconnect it when its
// policy is disconnect and another member takes the message.
func TestGroupProbeDoesNotDisconnect(t *testing.T) {
	path, _, b := start(t, Options{MaxPending: 4096, WriteTimeout: 5 * time.Second})
	w1, w2 := dial(t, path), dial(t, path)
	for _, w := range []*client{w1, w2} {
		w.send(wire.AppendSubscribe(nil, &wire.Subscribe{SID: 5, Pattern: []byte("control.svc.+"), QueueGroup: []byte("workers"), Overflow: uint8(eventbus.OverflowDisconnect)}))
		w.sync()
	}
	// w1 alone subscribes to a noisy topic and does not read: it fills up.
	w1.send(wire.AppendSubscribe(nil, &wire.Subscribe{SID: 6, Pattern: []byte("events.noise"), Overflow: uint8(eventbus.OverflowDropNewest)}))
	w1.sync()
	big := make([]byte, 1000)
	// Full means the writer is stuck on a full socket, not just between
	// two batches: 50 refusals in a row, 1 ms apart, with no progress.
	// The sleep stays: it is the observation itself (no event says that
	// a write is stuck; 50 ms without progress does).
	for fails := 0; fails < 50; {
		if err := b.Publish(context.Background(), eventbus.Message{Topic: "events.noise", Payload: big}); err != nil {
			fails++
			time.Sleep(time.Millisecond)
		} else {
			fails = 0
		}
	}
	for range 2 { // one of them is w1's turn
		if err := b.Publish(context.Background(), eventbus.Message{Topic: "control.svc.a", Payload: big}); err != nil {
			t.Fatalf("group publish: %v", err)
		}
	}
	for range 2 {
		w2.deliver()
	}
	if d := b.Stats().Dropped.Disconnect; d != 0 {
		t.Errorf("%d messages dropped by disconnect; w2 took both", d)
	}
	w1.nc.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	for {
		f, err := w1.r.ReadFrame()
		if err != nil {
			break // the deadline: w1 is still connected and quiet
		}
		if f.Type == wire.TypeError {
			e, _ := wire.ParseError(f.Type, f.Flags, f.Body)
			t.Fatalf("w1 got error code %d (%s) though w2 took the group messages", e.Code, e.Text)
		}
	}
}

func TestStatsTrim(t *testing.T) {
	var st Stats
	for i := range 5 {
		st.Broker.Topics = append(st.Broker.Topics, eventbus.TopicStats{Topic: fmt.Sprint("events.t", i), Published: uint64(i)})
	}
	st.trim(2)
	if len(st.Broker.Topics) != 2 || st.Broker.Topics[0].Published != 4 || st.TopicsOmitted != 3 {
		t.Errorf("trimmed to %+v, omitted %d; want the 2 busiest and 3 omitted", st.Broker.Topics, st.TopicsOmitted)
	}
}

// A connection closed as a slow consumer is told so before it is closed.
func TestSlowConsumerGetsItsErrorFrame(t *testing.T) {
	path, _, b := start(t, Options{MaxPending: 8 << 10})
	sub := dial(t, path)
	sub.send(wire.AppendSubscribe(nil, &wire.Subscribe{SID: 1, Pattern: []byte("events.#"), Overflow: uint8(eventbus.OverflowDisconnect)}))
	sub.sync()
	big := make([]byte, 1000)
	for range 10000 {
		if err := b.Publish(context.Background(), eventbus.Message{Topic: "events.a", Payload: big}); errors.Is(err, eventbus.ErrSlowConsumer) {
			break
		}
	}
	for {
		sub.nc.SetReadDeadline(time.Now().Add(3 * time.Second))
		f, err := sub.r.ReadFrame()
		if err != nil {
			t.Fatalf("connection ended without a slow_consumer error frame: %v", err)
		}
		if f.Type == wire.TypeError {
			if e, _ := wire.ParseError(f.Type, f.Flags, f.Body); e.Code != wire.CodeSlowConsumer {
				t.Fatalf("error code %d (%s), want slow_consumer", e.Code, e.Text)
			}
			return
		}
	}
}
