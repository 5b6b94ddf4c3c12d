package eventbus

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestQueueGroupDeliversOncePerGroup(t *testing.T) {
	b := newBroker(t, Options{})
	w1 := subscribe(t, b, "control.svc.+", SubscribeOptions{QueueGroup: "workers"})
	w2 := subscribe(t, b, "control.svc.+", SubscribeOptions{QueueGroup: "workers"})
	w3 := subscribe(t, b, "control.#", SubscribeOptions{QueueGroup: "workers"})
	other := subscribe(t, b, "control.svc.a", SubscribeOptions{QueueGroup: "auditors"})
	plain := subscribe(t, b, "control.svc.a", SubscribeOptions{})

	const n = 30
	for range n {
		publish(t, b, "control.svc.a", "x", 0)
	}
	counts := map[*Subscription]int{}
	for _, s := range []*Subscription{w1, w2, w3, other, plain} {
		counts[s], _, _, _ = s.q.depth() // nothing consumed yet: queued = received
	}
	if got := counts[w1] + counts[w2] + counts[w3]; got != n {
		t.Errorf("group workers got %d messages in all, want %d (each once)", got, n)
	}
	for i, s := range []*Subscription{w1, w2, w3} {
		if counts[s] != n/3 {
			t.Errorf("worker %d got %d, want %d: round robin spreads evenly", i+1, counts[s], n/3)
		}
	}
	if counts[other] != n || counts[plain] != n {
		t.Errorf("auditors got %d, plain subscriber %d; both want %d", counts[other], counts[plain], n)
	}
}

func TestQueueGroupSkipsFullAndClosedMembers(t *testing.T) {
	b := newBroker(t, Options{})
	full := subscribe(t, b, "control.svc.a", SubscribeOptions{QueueGroup: "g", MaxMessages: 1, Overflow: OverflowDropNewest})
	gone := subscribe(t, b, "control.svc.a", SubscribeOptions{QueueGroup: "g"})
	ok := subscribe(t, b, "control.svc.a", SubscribeOptions{QueueGroup: "g", MaxMessages: 100})
	publish(t, b, "control.svc.a", "fills full", 0) // some member takes it
	// Close one member without the index noticing yet: the route is cached.
	gone.q.mu.Lock()
	gone.q.closeLocked(ErrClosed)
	gone.q.mu.Unlock()
	for range 20 {
		publish(t, b, "control.svc.a", "x", 0)
	}
	total := 0
	for _, s := range []*Subscription{full, gone, ok} {
		c, _, _, _ := s.q.depth()
		total += c
	}
	if total != 21 {
		t.Errorf("queued %d of 21 messages across the group; a full or closed member must pass its turn on", total)
	}
	if st := b.Stats(); st.Dropped.Total() != 0 {
		t.Errorf("dropped %+v; nothing should drop while a member has room", st.Dropped)
	}
}

func TestQueueGroupAllFullAppliesPolicy(t *testing.T) {
	b := newBroker(t, Options{})
	opts := SubscribeOptions{QueueGroup: "g", MaxMessages: 1, Overflow: OverflowDropNewest}
	subscribe(t, b, "events.a", opts)
	subscribe(t, b, "events.a", opts)
	publish(t, b, "events.a", "1", 0)
	publish(t, b, "events.a", "2", 0)
	err := b.Publish(t.Context(), Message{Topic: "events.a", Payload: []byte("3")})
	if !errors.Is(err, ErrQueueFull) {
		t.Fatalf("third message to a full group: %v, want ErrQueueFull", err)
	}
	if d := b.Stats().Dropped.QueueFull; d != 1 {
		t.Errorf("dropped %d for a full queue, want 1", d)
	}
}

func TestRequestReply(t *testing.T) {
	b := newBroker(t, Options{})
	err := b.Publish(t.Context(), Message{Topic: "control.svc.ping", Reply: "control.inbox.me"})
	if !errors.Is(err, ErrNoResponders) {
		t.Fatalf("request with no subscriber: %v, want ErrNoResponders", err)
	}
	if st := b.Stats(); st.Published != 0 || st.Unrouted != 1 {
		t.Errorf("published %d, unrouted %d; want 0 and 1: a refused request takes no sequence number", st.Published, st.Unrouted)
	}
	// An event without a reply topic and no subscriber is fine.
	publish(t, b, "control.svc.ping", "", 0)

	svc := subscribe(t, b, "control.svc.ping", SubscribeOptions{})
	inbox := subscribe(t, b, "control.inbox.me", SubscribeOptions{})
	if err := b.Publish(t.Context(), Message{Topic: "control.svc.ping", Reply: "control.inbox.me", Payload: []byte("ping")}); err != nil {
		t.Fatal(err)
	}
	req := next(t, svc)
	if req.Reply != "control.inbox.me" {
		t.Fatalf("request arrived with reply %q", req.Reply)
	}
	publish(t, b, req.Reply, "pong", 0)
	if got := next(t, inbox); string(got.Payload) != "pong" {
		t.Errorf("reply %q, want pong", got.Payload)
	}

	err = b.Publish(t.Context(), Message{Topic: "control.svc.ping", Reply: "control.inbox.#"})
	if err == nil || !strings.Contains(err.Error(), "reply topic") {
		t.Errorf("request with a wildcard reply topic: %v, want an error naming the reply topic", err)
	}
}

func TestQueueGroupNames(t *testing.T) {
	b := newBroker(t, Options{})
	for _, tc := range []struct {
		group string
		ok    bool
	}{
		{"workers", true},
		{"svc.procmond-1_a", true},
		{strings.Repeat("g", MaxQueueGroupLen), true},
		{strings.Repeat("g", MaxQueueGroupLen+1), false},
		{"with space", false},
		{"star*", false},
		{"ünïcode", false},
	} {
		_, err := b.Subscribe("events.a", SubscribeOptions{QueueGroup: tc.group})
		if (err == nil) != tc.ok {
			t.Errorf("group %q: err %v, want ok=%v", tc.group, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("group %q: %v does not wrap ErrInvalidOptions", tc.group, err)
		}
	}
}

func TestDrainKeepsWhatIsQueued(t *testing.T) {
	b := newBroker(t, Options{})
	s := subscribe(t, b, "events.#", SubscribeOptions{})
	for range 3 {
		publish(t, b, "events.a", "x", 0)
	}
	s.Drain()
	publish(t, b, "events.a", "after the drain", 0) // not for s any more
	for i := range 3 {
		if d := next(t, s); d.Seq != uint64(i+1) {
			t.Fatalf("message %d: seq %d", i, d.Seq)
		}
	}
	if _, err := s.Next(t.Context()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after the queued messages: %v, want ErrClosed", err)
	}
	s.Unsubscribe()
	if st := b.Stats(); st.Dropped.Total() != 0 || st.Delivered != 3 || st.Unrouted != 1 {
		t.Errorf("delivered %d, dropped %+v, unrouted %d; want 3, none, 1", st.Delivered, st.Dropped, st.Unrouted)
	}
}

// Reply topics share one state: thousands of them neither grow the topic
// table nor evict other topics' sequences.
func TestEphemeralTopicsShareOneState(t *testing.T) {
	b := newBroker(t, Options{MaxTopics: 16})
	events := subscribe(t, b, "events.a", SubscribeOptions{})
	inbox := subscribe(t, b, "control.inbox.c1.+", SubscribeOptions{MaxMessages: 100000})
	publish(t, b, "events.a", "1", 0)
	for i := range 1000 {
		publish(t, b, fmt.Sprintf("control.inbox.c1.%d", i), "reply", 0)
	}
	publish(t, b, "events.a", "2", 0)
	if d := next(t, events); d.Seq != 1 {
		t.Fatalf("seq %d", d.Seq)
	}
	if d := next(t, events); d.Seq != 2 {
		t.Errorf("events.a seq %d after 1000 replies, want 2: its state was evicted", d.Seq)
	}
	if d := next(t, inbox); d.Topic != "control.inbox.c1.0" {
		t.Errorf("first reply on %q", d.Topic)
	}
	st := b.Stats()
	if len(st.Topics) != 2 || st.TopicsEvicted != 0 {
		t.Errorf("%d topics (%d evicted), want events.a and control.inbox.#", len(st.Topics), st.TopicsEvicted)
	}
}
