package eventbus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/daemoneye/daemoneye/internal/testutil/wait"
)

// recSink records deliveries and refuses with refuse, if set.
type recSink struct {
	mu     sync.Mutex
	got    []string // "tag:topic:seq"
	refuse error
}

func (r *recSink) Deliver(_ context.Context, s *Subscription, m Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.refuse != nil {
		return r.refuse
	}
	r.got = append(r.got, fmt.Sprintf("%d:%s:%d", s.Tag(), m.Topic, m.Seq))
	return nil
}

func TestSinkSubscriber(t *testing.T) {
	b := newBroker(t, Options{})
	sink := &recSink{}
	conn := b.NewSinkSubscriber("conn-1", sink)
	if _, err := conn.Subscribe("events.#", SubscribeOptions{Tag: 1}); err != nil {
		t.Fatal(err)
	}
	narrow, err := conn.Subscribe("events.process.+", SubscribeOptions{Tag: 2, MaxMessages: 5, Overflow: OverflowDropNewest})
	if err != nil {
		t.Fatal(err)
	}
	if n, _, o, _ := narrow.Limits(); n != 5 || o != OverflowDropNewest {
		t.Errorf("Limits = %d, %v", n, o)
	}
	queued := subscribe(t, b, "events.#", SubscribeOptions{}) // a queue subscriber alongside

	publish(t, b, "events.process.lifecycle", "a", 0)
	publish(t, b, "events.network.conn", "b", 0)
	publish(t, b, "events.process.lifecycle", "c", 0)
	want := []string{"2:events.process.lifecycle:1", "1:events.network.conn:1", "2:events.process.lifecycle:2"}
	if fmt.Sprint(sink.got) != fmt.Sprint(want) {
		t.Errorf("sink got %v, want %v (once per message, via the most specific pattern)", sink.got, want)
	}
	for range 3 {
		next(t, queued)
	}

	if _, err := narrow.Next(t.Context()); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("Next on a sink subscription = %v", err)
	}
	if _, err := conn.SubscribeFunc("control.#", SubscribeOptions{}, func(Delivery) {}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("SubscribeFunc on a sink subscriber = %v", err)
	}

	// A refusal is counted and reaches the publisher; others still get it.
	sink.refuse = fmt.Errorf("%w: connection buffer full", ErrQueueFull)
	err = b.Publish(t.Context(), Message{Topic: "events.process.lifecycle"})
	if !errors.Is(err, ErrQueueFull) {
		t.Errorf("publish refused by sink = %v", err)
	}
	next(t, queued)
	sink.refuse = fmt.Errorf("%w: gave up", ErrSlowConsumer)
	if err := b.Publish(t.Context(), Message{Topic: "events.network.conn"}); !errors.Is(err, ErrSlowConsumer) {
		t.Errorf("publish to a slow sink = %v", err)
	}
	next(t, queued)

	st := b.Stats()
	byTag := map[string]SubscriptionStats{}
	for _, s := range st.Subscriptions {
		byTag[s.Name] = s
	}
	if s := byTag[narrow.Name()]; s.Delivered != 2 || s.Dropped.QueueFull != 1 {
		t.Errorf("narrow stats %+v", s)
	}
	if st.Dropped.QueueFull != 1 || st.Dropped.Disconnect != 1 {
		t.Errorf("total drops %+v", st.Dropped)
	}

	// A closed sink whose subscriber is leaving is not a loss.
	sink.refuse = fmt.Errorf("%w: connection closed", ErrClosed)
	if err := b.Publish(t.Context(), Message{Topic: "events.network.conn"}); err != nil {
		t.Errorf("publish to a closing sink = %v", err)
	}
}

// capSink holds up to cap messages until drained, and implements RoomWaiter.
type capSink struct {
	mu   sync.Mutex
	cap  int
	held int
	room chan struct{}
}

func (c *capSink) Deliver(_ context.Context, s *Subscription, m Message) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held >= c.cap {
		return fmt.Errorf("%w: sink full", ErrQueueFull)
	}
	c.held++
	return nil
}

func (c *capSink) Room(s *Subscription, m Message) <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held < c.cap {
		return nil
	}
	if c.room == nil {
		c.room = make(chan struct{})
	}
	return c.room
}

func (c *capSink) drain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.held = 0
	if c.room != nil {
		close(c.room)
		c.room = nil
	}
}

func TestBlockingSinkMakesThePublisherWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker(t, Options{})
		sink := &capSink{cap: 1}
		conn := b.NewSinkSubscriber("conn", sink)
		if _, err := conn.Subscribe("events.#", SubscribeOptions{BlockTimeout: time.Second}); err != nil {
			t.Fatal(err)
		}
		publish(t, b, "events.a", "1", 0)
		done := make(chan error, 1)
		go func() { done <- b.Publish(t.Context(), Message{Topic: "events.a", Payload: []byte("2")}) }()
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("publish to a full blocking sink returned at once: %v", err)
		default:
		}
		sink.drain()
		if err := <-done; err != nil {
			t.Fatalf("publish after room appeared: %v", err)
		}

		// No room within BlockTimeout: dropped, counted, reported.
		start := time.Now()
		err := b.Publish(t.Context(), Message{Topic: "events.a", Payload: []byte("3")})
		if !errors.Is(err, ErrSlowConsumer) {
			t.Fatalf("publish that waited out BlockTimeout: %v, want ErrSlowConsumer", err)
		}
		if waited := time.Since(start); waited != time.Second {
			t.Errorf("waited %v, want the BlockTimeout of 1s", waited)
		}
		st := b.Stats()
		if st.Dropped.Timeout != 1 || st.Delivered != 2 {
			t.Errorf("dropped %+v, delivered %d; want 1 timeout and 2 delivered", st.Dropped, st.Delivered)
		}
	})
}

// batchSink defers itself into a publisher's Batch and counts flushes.
type batchSink struct {
	mu       sync.Mutex
	unsent   int // delivered, not flushed
	flushes  int
	deferred bool
}

func (k *batchSink) Deliver(ctx context.Context, _ *Subscription, _ Message) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.unsent++
	if bt, ok := ctx.(*Batch); ok && !k.deferred {
		k.deferred = true
		bt.Defer(k)
	}
	return nil
}

func (k *batchSink) Flush() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.unsent, k.deferred = 0, false
	k.flushes++
}

func (k *batchSink) state() (unsent, flushes int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.unsent, k.flushes
}

// A sink defers into the publisher's Batch and is flushed once per batch,
// when the publisher says so, or by the broker before the publisher waits
// for room elsewhere.
func TestBatchDefersFlushes(t *testing.T) {
	b := newBroker(t, Options{})
	k := &batchSink{}
	if _, err := b.NewSinkSubscriber("conn", k).Subscribe("events.#", SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	bt := &Batch{Context: t.Context()}
	for range 3 {
		if err := b.Publish(bt, Message{Topic: "events.a"}); err != nil {
			t.Fatal(err)
		}
	}
	if unsent, flushes := k.state(); unsent != 3 || flushes != 0 {
		t.Fatalf("before Flush: %d unsent, %d flushes; want 3, 0", unsent, flushes)
	}
	bt.Flush()
	bt.Flush() // nothing deferred: no flush
	if unsent, flushes := k.state(); unsent != 0 || flushes != 1 {
		t.Fatalf("after Flush: %d unsent, %d flushes; want 0, 1", unsent, flushes)
	}

	// A publisher about to wait for room in a full blocking queue flushes
	// its batch first, so the sink's delivery does not wait with it.
	full := subscribe(t, b, "events.#", SubscribeOptions{MaxMessages: 1, Overflow: OverflowBlock})
	publish(t, b, "events.fill", "", 0)
	published := make(chan error, 1)
	go func() { published <- b.Publish(bt, Message{Topic: "events.b"}) }()
	wait.Until(t, 5*time.Second, "the blocked publisher to flush its batch before it waits", func() bool {
		_, flushes := k.state()
		return flushes == 2
	})
	next(t, full) // room: the publisher goes on
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	next(t, full)
}
