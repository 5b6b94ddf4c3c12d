package eventbus

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/daemoneye/daemoneye/internal/testutil/wait"
	"github.com/daemoneye/daemoneye/topic"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newBroker(t testing.TB, opts Options) *Broker {
	t.Helper()
	b, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func subscribe(t testing.TB, b *Broker, pattern string, opts SubscribeOptions) *Subscription {
	t.Helper()
	s, err := b.Subscribe(pattern, opts)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func publish(t testing.TB, b *Broker, name, payload string, p Priority) {
	t.Helper()
	if err := b.Publish(t.Context(), Message{Topic: name, Payload: []byte(payload), Priority: p}); err != nil {
		t.Fatal(err)
	}
}

// next returns the next delivery or fails after a second.
func next(t testing.TB, s *Subscription) Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	d, err := s.Next(ctx)
	if err != nil {
		t.Fatalf("Next on %q: %v", s.Pattern(), err)
	}
	return d
}

// empty asserts that nothing is queued for s.
func empty(t testing.TB, s *Subscription) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if d, err := s.Next(ctx); err == nil {
		t.Fatalf("%q received %q (%s), want nothing", s.Pattern(), d.Topic, d.Payload)
	}
}

func TestPublishSubscribe(t *testing.T) {
	b := newBroker(t, Options{})
	all := subscribe(t, b, "#", SubscribeOptions{})
	proc := subscribe(t, b, "events.process.+", SubscribeOptions{})
	ctl := subscribe(t, b, "control.#", SubscribeOptions{})

	payload := []byte("pid=42")
	if err := b.Publish(t.Context(), Message{Topic: "events.process.lifecycle", Payload: payload}); err != nil {
		t.Fatal(err)
	}
	d1, d2 := next(t, all), next(t, proc)
	for _, d := range []Delivery{d1, d2} {
		if d.Topic != "events.process.lifecycle" || string(d.Payload) != "pid=42" || d.Seq != 1 || d.Priority != 0 {
			t.Errorf("got %+v", d)
		}
		if &d.Payload[0] != &payload[0] {
			t.Error("the payload was copied; in-process delivery must share it")
		}
	}
	if d1.Pattern != "#" || d2.Pattern != "events.process.+" {
		t.Errorf("patterns %q, %q", d1.Pattern, d2.Pattern)
	}
	empty(t, ctl)
}

func TestSequencePerTopic(t *testing.T) {
	b := newBroker(t, Options{})
	s := subscribe(t, b, "events.#", SubscribeOptions{})
	for i := range 3 {
		publish(t, b, "events.a", fmt.Sprint(i), 0)
		publish(t, b, "events.b", fmt.Sprint(i), 0)
	}
	want := map[string]uint64{}
	for range 6 {
		d := next(t, s)
		want[d.Topic]++
		if d.Seq != want[d.Topic] {
			t.Errorf("%s: seq %d, want %d", d.Topic, d.Seq, want[d.Topic])
		}
	}
}

// A subscriber with several matching patterns receives a message once, via
// the most specific pattern, whose options apply.
func TestSubscriberReceivesOnceViaMostSpecific(t *testing.T) {
	b := newBroker(t, Options{})
	sub := b.NewSubscriber("detector")
	broad, err := sub.Subscribe("events.#", SubscribeOptions{Name: "broad"})
	if err != nil {
		t.Fatal(err)
	}
	narrow, err := sub.Subscribe("events.process.+", SubscribeOptions{Name: "narrow", MaxMessages: 1, Overflow: OverflowDropNewest})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sub.Subscribe("events.#", SubscribeOptions{}); !errors.Is(err, topic.ErrDuplicate) {
		t.Errorf("second subscribe to the same pattern = %v, want topic.ErrDuplicate", err)
	}
	other := subscribe(t, b, "events.#", SubscribeOptions{})

	publish(t, b, "events.process.lifecycle", "1", 0)
	publish(t, b, "events.network.conn", "2", 0)
	if d := next(t, narrow); d.Pattern != "events.process.+" || string(d.Payload) != "1" {
		t.Errorf("narrow got %+v", d)
	}
	if d := next(t, broad); string(d.Payload) != "2" {
		t.Errorf("broad got %q, want only the network event", d.Payload)
	}
	empty(t, broad)
	next(t, other)
	next(t, other)

	// The narrow subscription's own limit applies: 1 message, drop-newest.
	publish(t, b, "events.process.lifecycle", "3", 0)
	err = b.Publish(t.Context(), Message{Topic: "events.process.lifecycle", Payload: []byte("4")})
	if !errors.Is(err, ErrQueueFull) || !strings.Contains(err.Error(), `"narrow"`) {
		t.Errorf("publish over narrow's limit = %v, want ErrQueueFull naming it", err)
	}
	empty(t, broad)

	// Unsubscribing the specific pattern hands the topic back to the broad one.
	narrow.Unsubscribe()
	publish(t, b, "events.process.lifecycle", "5", 0)
	if d := next(t, broad); string(d.Payload) != "5" {
		t.Errorf("broad got %q after narrow left", d.Payload)
	}
}

func TestPriorityOrder(t *testing.T) {
	b := newBroker(t, Options{})
	s := subscribe(t, b, "events.#", SubscribeOptions{})
	seq := []struct {
		p    Priority
		data string
	}{
		{PriorityLow, "l1"}, {PriorityNormal, "n1"}, {PriorityCritical, "c1"}, {PriorityHigh, "h1"},
		{PriorityLow, "l2"}, {0, "n2"}, {PriorityCritical, "c2"}, {PriorityHigh, "h2"},
	}
	for _, m := range seq {
		publish(t, b, "events.a", m.data, m.p)
	}
	var got []string
	for range seq {
		got = append(got, string(next(t, s).Payload))
	}
	if want := "c1 c2 h1 h2 n1 n2 l1 l2"; strings.Join(got, " ") != want {
		t.Errorf("order %v, want %s", got, want)
	}
	if err := b.Publish(t.Context(), Message{Topic: "events.a", Priority: 9}); !errors.Is(err, ErrInvalidPriority) {
		t.Errorf("priority 9: %v", err)
	}
}

// Per publisher and priority, order holds even with many publishers.
func TestOrderPerPublisher(t *testing.T) {
	b := newBroker(t, Options{})
	s := subscribe(t, b, "events.#", SubscribeOptions{MaxMessages: 64})
	const pubs, per = 4, 2000
	var wg sync.WaitGroup
	for p := range pubs {
		wg.Go(func() {
			for i := range per {
				if err := b.Publish(t.Context(), Message{Topic: fmt.Sprintf("events.p%d", p), Payload: []byte(fmt.Sprint(i))}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	last := map[string]int{}
	for range pubs * per {
		d := next(t, s)
		var i int
		fmt.Sscan(string(d.Payload), &i)
		if prev, ok := last[d.Topic]; ok && i != prev+1 {
			t.Fatalf("%s: %d after %d", d.Topic, i, prev)
		}
		if d.Seq != uint64(i+1) {
			t.Fatalf("%s: message %d has seq %d", d.Topic, i, d.Seq)
		}
		last[d.Topic] = i
	}
	wg.Wait()
}

func TestBadInput(t *testing.T) {
	b := newBroker(t, Options{MaxPayload: 8})
	s := subscribe(t, b, "#", SubscribeOptions{})
	tests := []struct {
		m    Message
		want error
		text string
	}{
		{Message{Topic: "events.Bad"}, topic.ErrInvalidTopic, "upper-case"},
		{Message{Topic: "events.+"}, topic.ErrInvalidTopic, "wildcards belong in subscription patterns"},
		{Message{Topic: "nope.a"}, topic.ErrInvalidTopic, "not a registered domain"},
		{Message{Topic: "events.a", Payload: make([]byte, 9)}, ErrPayloadTooLarge, "9 bytes"},
		{Message{Topic: "events.a", Priority: 5}, ErrInvalidPriority, "PriorityLow"},
	}
	for _, tt := range tests {
		err := b.Publish(t.Context(), tt.m)
		if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.text) {
			t.Errorf("Publish(%q) = %v, want %v containing %q", tt.m.Topic, err, tt.want, tt.text)
		}
	}
	empty(t, s)
	for _, p := range []string{"events.*", "events.a+", "", "events.#.a"} {
		if _, err := b.Subscribe(p, SubscribeOptions{}); !errors.Is(err, topic.ErrInvalidPattern) {
			t.Errorf("Subscribe(%q) = %v, want ErrInvalidPattern", p, err)
		}
	}
	for _, o := range []SubscribeOptions{{MaxMessages: -1}, {MaxBytes: -1}, {Overflow: 9}} {
		if _, err := b.Subscribe("#", o); !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("Subscribe with %+v = %v, want ErrInvalidOptions", o, err)
		}
	}
	if _, err := New(Options{Policy: &topic.Policy{MaxSegments: 99}}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("New with a bad policy = %v", err)
	}
	if _, err := b.SubscribeFunc("#", SubscribeOptions{}, nil); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("SubscribeFunc(nil) = %v", err)
	}
	if _, err := ParseOverflow("drop-everything"); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("ParseOverflow = %v", err)
	}
	b.Close()
	if err := b.Publish(t.Context(), Message{Topic: "events.a"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Publish after Close = %v, want ErrClosed", err)
	}
	if _, err := b.Subscribe("#", SubscribeOptions{}); !errors.Is(err, ErrClosed) {
		t.Errorf("Subscribe after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Next(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Next after Close = %v, want ErrClosed", err)
	}
}

func TestOverflowPolicies(t *testing.T) {
	msg := func(i int, p Priority) Message {
		return Message{Topic: "events.a", Payload: []byte(fmt.Sprint(i)), Priority: p}
	}
	t.Run("drop-newest", func(t *testing.T) {
		b := newBroker(t, Options{})
		s := subscribe(t, b, "#", SubscribeOptions{Name: "slow", MaxMessages: 2, Overflow: OverflowDropNewest})
		for i := range 5 {
			err := b.Publish(t.Context(), msg(i, 0))
			if full := i >= 2; full != errors.Is(err, ErrQueueFull) {
				t.Errorf("publish %d: %v", i, err)
			}
		}
		if a, b := string(next(t, s).Payload), string(next(t, s).Payload); a != "0" || b != "1" {
			t.Errorf("kept %s %s, want 0 1", a, b)
		}
		st := b.Stats()
		if st.Subscriptions[0].Dropped.QueueFull != 3 || st.Topics[0].Dropped.QueueFull != 3 || st.Dropped.Total() != 3 {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("drop-oldest", func(t *testing.T) {
		b := newBroker(t, Options{})
		s := subscribe(t, b, "#", SubscribeOptions{MaxMessages: 2, Overflow: OverflowDropOldest})
		for i := range 5 {
			if err := b.Publish(t.Context(), msg(i, 0)); err != nil {
				t.Errorf("publish %d: %v", i, err)
			}
		}
		// A critical message evicts the normal ones, never the reverse.
		if err := b.Publish(t.Context(), msg(10, PriorityCritical)); err != nil {
			t.Error(err)
		}
		if err := b.Publish(t.Context(), msg(11, PriorityCritical)); err != nil {
			t.Error(err)
		}
		if err := b.Publish(t.Context(), msg(12, PriorityLow)); !errors.Is(err, ErrQueueFull) {
			t.Errorf("low message into a queue of critical ones: %v, want ErrQueueFull", err)
		}
		if a, b := string(next(t, s).Payload), string(next(t, s).Payload); a != "10" || b != "11" {
			t.Errorf("kept %s %s, want 10 11", a, b)
		}
		if d := b.Stats().Subscriptions[0].Dropped; d.Oldest != 5 || d.QueueFull != 1 {
			t.Errorf("dropped %+v, want 5 oldest, 1 queue_full", d)
		}
	})
	t.Run("byte-limit", func(t *testing.T) {
		b := newBroker(t, Options{})
		// Each message counts len("events.a") + 1 = 9 bytes.
		s := subscribe(t, b, "#", SubscribeOptions{MaxBytes: 20, Overflow: OverflowDropOldest})
		for i := range 4 {
			if err := b.Publish(t.Context(), msg(i, 0)); err != nil {
				t.Fatal(err)
			}
		}
		if a, b := string(next(t, s).Payload), string(next(t, s).Payload); a != "2" || b != "3" {
			t.Errorf("kept %s %s, want 2 3", a, b)
		}
		err := b.Publish(t.Context(), Message{Topic: "events.a", Payload: make([]byte, 30)})
		if !errors.Is(err, ErrQueueFull) {
			t.Errorf("message larger than the queue: %v, want ErrQueueFull", err)
		}
	})
	t.Run("disconnect", func(t *testing.T) {
		b := newBroker(t, Options{})
		s := subscribe(t, b, "#", SubscribeOptions{Name: "laggard", MaxMessages: 2, Overflow: OverflowDisconnect})
		other := subscribe(t, b, "#", SubscribeOptions{})
		publish(t, b, "events.a", "0", 0)
		publish(t, b, "events.a", "1", 0)
		err := b.Publish(t.Context(), msg(2, 0))
		if !errors.Is(err, ErrSlowConsumer) || !strings.Contains(err.Error(), "laggard") {
			t.Errorf("overflowing publish = %v, want ErrSlowConsumer naming laggard", err)
		}
		if _, err := s.Next(t.Context()); !errors.Is(err, ErrSlowConsumer) {
			t.Errorf("Next after disconnect = %v, want ErrSlowConsumer", err)
		}
		publish(t, b, "events.a", "3", 0) // no longer routed to laggard: no error
		for _, want := range []string{"0", "1", "2", "3"} {
			if got := string(next(t, other).Payload); got != want {
				t.Errorf("other got %s, want %s", got, want)
			}
		}
		st := b.Stats()
		if st.Dropped.Disconnect != 3 || len(st.Subscriptions) != 1 {
			t.Errorf("stats: dropped %+v, %d subscriptions; want 3 disconnect drops and laggard gone", st.Dropped, len(st.Subscriptions))
		}
	})
}

func TestBlockPolicy(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		b := newBroker(t, Options{})
		s := subscribe(t, b, "#", SubscribeOptions{Name: "slow", MaxMessages: 1, BlockTimeout: 3 * time.Second})
		publish(t, b, "events.a", "0", 0)

		// The publisher waits until the consumer makes room.
		done := make(chan error)
		go func() { done <- b.Publish(context.Background(), Message{Topic: "events.a", Payload: []byte("1")}) }()
		time.Sleep(2 * time.Second) // the bubble's fake clock: within BlockTimeout
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("publish returned %v while the queue was full", err)
		default:
		}
		if got := string(next(t, s).Payload); got != "0" {
			t.Fatalf("got %s", got)
		}
		if err := <-done; err != nil {
			t.Fatalf("blocked publish: %v", err)
		}

		// Nobody consumes: the wait ends at BlockTimeout with an error naming slow.
		start := time.Now()
		err := b.Publish(context.Background(), Message{Topic: "events.a", Payload: []byte("2")})
		if !errors.Is(err, ErrSlowConsumer) || !strings.Contains(err.Error(), `"slow"`) {
			t.Errorf("publish = %v, want ErrSlowConsumer naming slow", err)
		}
		if waited := time.Since(start); waited != 3*time.Second {
			t.Errorf("waited %v, want the 3s BlockTimeout", waited)
		}

		// The publisher's context bounds the wait too.
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		err = b.Publish(ctx, Message{Topic: "events.a", Payload: []byte("3")})
		if !errors.Is(err, ErrSlowConsumer) || !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("publish with deadline = %v", err)
		}
		if d := b.Stats().Subscriptions[0].Dropped; d.Timeout != 2 {
			t.Errorf("dropped %+v, want 2 timeouts", d)
		}
		b.Close()
	})
}

func TestSubscribeFuncAndShutdownDrains(t *testing.T) {
	b, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []string
	release := make(chan struct{})
	_, err = b.SubscribeFunc("events.#", SubscribeOptions{}, func(d Delivery) {
		<-release
		mu.Lock()
		got = append(got, string(d.Payload))
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		publish(t, b, "events.a", fmt.Sprint(i), 0)
	}
	shut := make(chan error)
	go func() { shut <- b.Shutdown(context.Background()) }()
	wait.Until(t, 5*time.Second, "Shutdown to begin", b.closing.Load)
	if err := b.Publish(t.Context(), Message{Topic: "events.a"}); !errors.Is(err, ErrClosed) {
		t.Errorf("publish during shutdown = %v, want ErrClosed", err)
	}
	close(release)
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if len(got) != 100 {
		t.Errorf("handler saw %d messages before shutdown returned, want 100", len(got))
	}
}

func TestShutdownDeadlineCountsLoss(t *testing.T) {
	b, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	s := subscribe(t, b, "#", SubscribeOptions{}) // nobody reads it
	for range 5 {
		publish(t, b, "events.a", "x", 0)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := b.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Shutdown = %v, want DeadlineExceeded", err)
	}
	if st := b.Stats(); st.Dropped.Closed != 5 || st.Published != 5 {
		t.Errorf("stats after forced shutdown: %+v", st)
	}
	if _, err := s.Next(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Next = %v", err)
	}
}

func TestStats(t *testing.T) {
	b := newBroker(t, Options{})
	s := subscribe(t, b, "events.process.#", SubscribeOptions{Name: "procs", MaxMessages: 10})
	publish(t, b, "events.process.a", "x", 0)
	publish(t, b, "events.process.a", "y", 0)
	publish(t, b, "events.other", "z", 0)
	next(t, s)
	st := b.Stats()
	if st.Published != 3 || st.Enqueued != 2 || st.Unrouted != 1 {
		t.Errorf("totals %+v", st)
	}
	if len(st.Topics) != 2 || st.Topics[1].Topic != "events.process.a" || st.Topics[1].Published != 2 {
		t.Errorf("topics %+v", st.Topics)
	}
	ss := st.Subscriptions[0]
	if ss.Name != "procs" || ss.Delivered != 2 || ss.QueueDepth != 0 || ss.HighWater != 2 || ss.MaxMessages != 10 {
		t.Errorf("subscription %+v (Delivered counts the whole batch Next took)", ss)
	}
}

func TestTopicEviction(t *testing.T) {
	b := newBroker(t, Options{MaxTopics: 8})
	for i := range 20 {
		publish(t, b, fmt.Sprintf("events.t%d", i), "", 0)
	}
	st := b.Stats()
	if len(st.Topics) > 8 || st.TopicsEvicted == 0 || st.TopicsEvicted+uint64(len(st.Topics)) != 20 {
		t.Errorf("%d topics kept, %d evicted", len(st.Topics), st.TopicsEvicted)
	}
}

func TestUnsubscribeCountsQueued(t *testing.T) {
	b := newBroker(t, Options{})
	s := subscribe(t, b, "#", SubscribeOptions{})
	publish(t, b, "events.a", "x", 0)
	publish(t, b, "events.a", "y", 0)
	s.Unsubscribe()
	s.Unsubscribe()
	if _, err := s.Next(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Next = %v", err)
	}
	if st := b.Stats(); st.Dropped.Closed != 2 || len(st.Subscriptions) != 0 {
		t.Errorf("stats %+v", st)
	}
	publish(t, b, "events.a", "z", 0)
	if st := b.Stats(); st.Unrouted != 1 {
		t.Errorf("publish after unsubscribe was routed: %+v", st)
	}
}

// Many publishers, subscribers and churn at once, for the race detector.
func TestConcurrentChurn(t *testing.T) {
	b := newBroker(t, Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	var wg sync.WaitGroup
	for p := range 3 {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				m := Message{Topic: fmt.Sprintf("events.p%d.m%d", p, i%7), Priority: Priority(1 + i%4)}
				if err := b.Publish(ctx, m); err != nil && !errors.Is(err, ErrSlowConsumer) && !errors.Is(err, ErrQueueFull) {
					t.Error(err)
					return
				}
			}
		})
	}
	for c := range 3 {
		wg.Go(func() {
			for ctx.Err() == nil {
				s, err := b.Subscribe([]string{"events.#", "events.+.m1", "#"}[c], SubscribeOptions{MaxMessages: 16, Overflow: Overflow(c + 1)})
				if err != nil {
					t.Error(err)
					return
				}
				for range 20 {
					if _, err := s.Next(ctx); err != nil {
						break
					}
				}
				s.Unsubscribe()
				_ = b.Stats()
			}
		})
	}
	wg.Wait()
}

// Shutdown returns at its deadline even when a handler is stuck; Close then
// waits for the handler.
func TestShutdownDeadlineWithStuckHandler(t *testing.T) {
	b, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	if _, err := b.SubscribeFunc("#", SubscribeOptions{}, func(Delivery) { <-release }); err != nil {
		t.Fatal(err)
	}
	publish(t, b, "events.a", "x", 0)
	publish(t, b, "events.a", "y", 0)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	done := make(chan error)
	go func() { done <- b.Shutdown(ctx) }()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return at its deadline")
	}
	close(release)
	b.Close()
}

// Every message published while the broker closes is either delivered or
// counted as dropped; none disappears.
func TestPublishRacingCloseLosesNothingUncounted(t *testing.T) {
	for range 20 {
		b, err := New(Options{})
		if err != nil {
			t.Fatal(err)
		}
		s := subscribe(t, b, "#", SubscribeOptions{MaxMessages: 8, BlockTimeout: time.Second})
		var wg sync.WaitGroup
		var ok, refused atomic.Int64
		for p := range 2 {
			wg.Go(func() {
				for i := range 200 {
					err := b.Publish(context.Background(), Message{Topic: fmt.Sprintf("events.p%d.m%d", p, i%3)})
					switch {
					case err == nil:
						ok.Add(1)
					case errors.Is(err, ErrClosed):
						refused.Add(1)
					default:
						t.Error(err)
					}
				}
			})
		}
		got := 0
		wg.Go(func() {
			for {
				if _, err := s.Next(context.Background()); err != nil {
					return
				}
				got++
			}
		})
		// Kept: random jitter, so that Close lands at a different point of
		// the publishers' and the consumer's work in each round.
		time.Sleep(time.Duration(rand.IntN(300)) * time.Microsecond)
		b.Close()
		wg.Wait()
		st := b.Stats()
		// Published counts every message that got a sequence number; once
		// Close unroutes the subscription, late ones are unrouted.
		if st.Published != uint64(got)+st.Dropped.Total()+st.Unrouted {
			t.Fatalf("published %d, received %d, unrouted %d, dropped %+v: %d unaccounted",
				st.Published, got, st.Unrouted, st.Dropped, int64(st.Published)-int64(got)-int64(st.Dropped.Total()+st.Unrouted))
		}
		if uint64(ok.Load()+refused.Load()) != 400 || st.Published < uint64(ok.Load()) {
			t.Fatalf("ok %d refused %d published %d", ok.Load(), refused.Load(), st.Published)
		}
	}
}

// Subscribe racing Close never leaves a live subscription or index entry.
func TestSubscribeRacingClose(t *testing.T) {
	for range 50 {
		b, err := New(Options{})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() {
			for i := range 20 {
				_, err := b.SubscribeFunc(fmt.Sprintf("events.s%d", i), SubscribeOptions{}, func(Delivery) {})
				if err != nil && !errors.Is(err, ErrClosed) {
					t.Error(err)
				}
			}
		})
		b.Close()
		wg.Wait()
		b.Close() // waits for any handler started in the race
		if n := b.index.Len(); n != 0 {
			t.Fatalf("%d index entries left after Close", n)
		}
		if st := b.Stats(); len(st.Subscriptions) != 0 {
			t.Fatalf("%d subscriptions left after Close", len(st.Subscriptions))
		}
	}
}

// The publish path must not allocate: not for a topic with no subscriber,
// not for a queue subscriber, not for a sink subscriber.
func TestPublishDoesNotAllocate(t *testing.T) {
	b := newBroker(t, Options{})
	q := subscribe(t, b, "events.q.#", SubscribeOptions{})
	if _, err := b.NewSinkSubscriber("sink", discardSink{}).Subscribe("events.s.#", SubscribeOptions{}); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for range 200 { // grow the ring once, then keep it
		publish(t, b, "events.q.a", "x", 0)
		next(t, q)
	}
	payload := []byte("payload")
	for _, name := range []string{"events.none", "events.q.a", "events.s.a"} {
		m := Message{Topic: name, Payload: payload}
		allocs := testing.AllocsPerRun(100, func() {
			if err := b.Publish(ctx, m); err != nil {
				t.Fatal(err)
			}
		})
		if allocs != 0 {
			t.Errorf("Publish to %s: %v allocs per call, want 0", name, allocs)
		}
	}
}

type discardSink struct{}

func (discardSink) Deliver(context.Context, *Subscription, Message) error { return nil }
