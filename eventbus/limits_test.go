package eventbus

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
)

func TestMaxSubscriptions(t *testing.T) {
	b := newBroker(t, Options{MaxSubscriptions: 3})
	var subs []*Subscription
	for i := range 3 {
		s, err := b.Subscribe(fmt.Sprintf("events.t%d", i), SubscribeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	sr := b.NewSubscriber("one")
	_, err := sr.Subscribe("events.more", SubscribeOptions{})
	if !errors.Is(err, ErrTooManySubscriptions) {
		t.Fatalf("the fourth subscription: got %v, want ErrTooManySubscriptions", err)
	}
	if st := b.Stats(); len(st.Subscriptions) != 3 {
		t.Fatalf("a refused subscription is listed: %d subscriptions", len(st.Subscriptions))
	}
	if err := b.Publish(t.Context(), Message{Topic: "events.more"}); err != nil {
		t.Fatal(err)
	}
	if st := b.Stats(); st.Unrouted != 1 {
		t.Fatalf("a refused subscription routes messages: unrouted %d, want 1", st.Unrouted)
	}
	subs[0].Unsubscribe()
	if _, err := sr.Subscribe("events.more", SubscribeOptions{}); err != nil {
		t.Fatalf("after an unsubscribe there is room again: %v", err)
	}
	if _, err := New(Options{MaxSubscriptions: -1}); !errors.Is(err, ErrInvalidOptions) {
		t.Fatalf("negative MaxSubscriptions: got %v", err)
	}
}

func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// The memory of removed subscriptions is given back to the heap: the
// broker's registry, the index's trie node of their common prefix and the
// cached routes do not keep it after they go, even while other
// subscriptions under the same prefix stay.
func TestRemovedSubscriptionsReleaseMemory(t *testing.T) {
	const n = 40000
	b := newBroker(t, Options{MaxSubscriptions: n + 10})
	keep, err := b.Subscribe("events.t.keep", SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer keep.Unsubscribe()
	all, err := b.Subscribe("events.#", SubscribeOptions{MaxMessages: 1, Overflow: OverflowDropNewest})
	if err != nil {
		t.Fatal(err)
	}
	defer all.Unsubscribe()
	base := heapAfterGC()
	subs := make([]*Subscription, 0, n)
	for i := range n {
		s, err := b.Subscribe(fmt.Sprintf("events.t.%d", i), SubscribeOptions{MaxMessages: 1, Overflow: OverflowDropNewest})
		if err != nil {
			t.Fatal(err)
		}
		subs = append(subs, s)
	}
	for i := range 100 { // cached routes that hold some of them
		b.Publish(t.Context(), Message{Topic: fmt.Sprintf("events.t.%d", i)})
	}
	peak := heapAfterGC()
	for _, s := range subs {
		s.Unsubscribe()
	}
	subs = nil
	after := heapAfterGC()
	grew, kept := int64(peak)-int64(base), int64(after)-int64(base)
	t.Logf("%d subscriptions: +%d bytes; after they went: %+d bytes", n, grew, kept)
	if grew <= 0 || kept > grew/50 {
		t.Fatalf("%d bytes of the %d that %d subscriptions took are still held after they were removed", kept, grew, n)
	}
}
