package eventbus

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// batchSize is how many messages a consumer takes from its queue at a time.
// Priority holds across batches: a critical message queued while a batch is
// being consumed is next after that batch.
const batchSize = 64

// Subscriber is a group of subscriptions that receives every message at
// most once: when several of its patterns match a topic, only the
// subscription with the most specific pattern receives the message, and its
// options apply. A network connection is one subscriber; in process, each
// [Broker.Subscribe] call makes a subscriber of its own. Safe for concurrent
// use.
type Subscriber struct {
	b    *Broker
	id   uint64
	name string // empty: Name makes one up from id
	sink Sink   // nil: subscriptions have queues

	mu   sync.Mutex
	subs []*Subscription
}

// Name returns the subscriber's name, "subscriber-<id>" if it was given
// none.
func (s *Subscriber) Name() string {
	if s.name == "" {
		return fmt.Sprintf("subscriber-%d", s.id)
	}
	return s.name
}

// Subscribe adds a pull subscription: read it with [Subscription.Next]. A
// subscriber may subscribe to each pattern once. It returns an error wrapping
// topic.ErrInvalidPattern, topic.ErrDuplicate, ErrInvalidOptions or
// ErrClosed.
func (s *Subscriber) Subscribe(pattern string, opts SubscribeOptions) (*Subscription, error) {
	return s.subscribe(pattern, opts, nil)
}

// SubscribeFunc adds a subscription whose messages are handed to fn, one at
// a time and in queue order, on a goroutine the broker owns. fn must not
// call [Broker.Close] or [Broker.Shutdown]; it may unsubscribe. The
// goroutine ends when the subscription closes.
func (s *Subscriber) SubscribeFunc(pattern string, opts SubscribeOptions, fn func(Delivery)) (*Subscription, error) {
	if fn == nil {
		return nil, fmt.Errorf("%w: SubscribeFunc needs a handler", ErrInvalidOptions)
	}
	if s.sink != nil {
		return nil, fmt.Errorf("%w: a sink subscriber's messages go to its Sink, not to handlers", ErrInvalidOptions)
	}
	return s.subscribe(pattern, opts, fn)
}

func (s *Subscriber) subscribe(pattern string, opts SubscribeOptions, fn func(Delivery)) (*Subscription, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	b := s.b
	sub := &Subscription{
		b: b, owner: s, id: b.nextID.Add(1), pattern: pattern, name: opts.Name,
		blockTimeout: opts.BlockTimeout, handler: fn, tag: opts.Tag, group: opts.QueueGroup,
	}
	sub.q.init(&opts)

	errClosed := fmt.Errorf("%w: cannot subscribe to %q: the broker is shutting down", ErrClosed, pattern)
	if b.closing.Load() {
		return nil, errClosed
	}
	if err := b.roomForSubscription(pattern); err != nil { // checked again below, exactly
		return nil, err
	}
	s.mu.Lock()
	err := b.index.Insert(pattern, s.id, sub)
	if err == nil {
		s.subs = append(s.subs, sub)
	}
	s.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("eventbus: subscribe %s: %w", s.Name(), err)
	}
	// Register under b.mu, so that Close either sees the subscription or
	// has already closed the broker, and handlers.Go happens before Wait.
	b.mu.Lock()
	if b.closed || b.closing.Load() {
		b.mu.Unlock()
		sub.unsubscribe()
		return nil, errClosed
	}
	if len(b.subs) >= b.maxSubs {
		b.mu.Unlock()
		sub.unsubscribe()
		return nil, b.tooMany(pattern)
	}
	b.subs[sub] = struct{}{}
	b.subsPeak = max(b.subsPeak, len(b.subs))
	if fn != nil {
		b.handlers.Go(sub.run)
	}
	b.mu.Unlock()
	return sub, nil
}

// Close unsubscribes all of the subscriber's subscriptions.
func (s *Subscriber) Close() {
	s.mu.Lock()
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	for _, sub := range subs {
		sub.Unsubscribe()
	}
}

// Subscription is one pattern of a subscriber with its bounded queue. Next
// may be called from one goroutine at a time; every other method is safe for
// concurrent use.
type Subscription struct {
	b            *Broker
	owner        *Subscriber
	id           uint64
	pattern      string
	name         string // empty: Name makes one up from id
	blockTimeout time.Duration
	handler      func(Delivery)
	tag          uint64
	group        string        // queue group; empty for none
	sunk         atomic.Uint64 // messages a Sink took

	// The errors publishers get for this subscription, built on first use:
	// most subscriptions never drop anything.
	errOnce          sync.Once
	errFull, errSlow error

	q       queue
	drops   [numDropReasons]atomic.Uint64
	removed atomic.Bool // out of the index
	retired atomic.Bool // out of the broker's registry

	// Consumer side, touched only by the goroutine calling Next.
	batch  []Message
	bi, bn int
}

// Pattern returns the subscription's pattern.
func (s *Subscription) Pattern() string { return s.pattern }

// QueueGroup returns the subscription's queue group, "" for none.
func (s *Subscription) QueueGroup() string { return s.group }

// Name returns the subscription's name, "sub-<id>" if it was given none.
func (s *Subscription) Name() string {
	if s.name == "" {
		return fmt.Sprintf("sub-%d", s.id)
	}
	return s.name
}

func (s *Subscription) buildErrors() {
	desc := fmt.Sprintf("subscription %q of %q (pattern %q, queue %d msgs / %d bytes)",
		s.Name(), s.owner.Name(), s.pattern, s.q.maxCount, s.q.maxBytes)
	s.errFull = fmt.Errorf("%w: %s: message dropped for it; give it larger queue limits or a faster consumer", ErrQueueFull, desc)
	s.errSlow = fmt.Errorf("%w: %s did not keep up (overflow policy %s)", ErrSlowConsumer, desc, s.q.overflow)
}

// fullErr is what a publisher gets when its message was dropped because
// the queue was full.
func (s *Subscription) fullErr() error {
	s.errOnce.Do(s.buildErrors)
	return s.errFull
}

// slowErr is what a publisher gets when the subscription did not take its
// message in time or was disconnected for it.
func (s *Subscription) slowErr() error {
	s.errOnce.Do(s.buildErrors)
	return s.errSlow
}

// Next returns the next message, highest priority first, waiting until one
// arrives, ctx ends, or the subscription closes. After Unsubscribe it
// returns an error wrapping ErrClosed; after a disconnect for overflow, one
// wrapping ErrSlowConsumer. Messages already taken from the queue (at most
// one batch of 64) are returned before that error.
func (s *Subscription) Next(ctx context.Context) (Delivery, error) {
	if s.owner.sink != nil {
		return Delivery{}, errSinkNext
	}
	for {
		if s.bi < s.bn {
			d := Delivery{Message: s.batch[s.bi], Pattern: s.pattern}
			s.batch[s.bi] = Message{}
			s.bi++
			return d, nil
		}
		if s.batch == nil {
			s.batch = make([]Message, batchSize)
		}
		n, err := s.q.pop(s.batch)
		if n > 0 {
			s.bi, s.bn = 0, n
			continue
		}
		if err == errDisconnected {
			return Delivery{}, s.slowErr()
		}
		if err != nil {
			return Delivery{}, err
		}
		// Park until a publisher wakes us. Do not spin here: the wake-up
		// latency is what lets a fast consumer take messages in batches
		// instead of contending for the queue lock on every message.
		select {
		case <-s.q.ready: // a message, or the queue closed
		case <-ctx.Done():
			return Delivery{}, ctx.Err()
		}
	}
}

// run is the handler goroutine of a SubscribeFunc subscription.
func (s *Subscription) run() {
	ctx := context.Background() // the queue's done channel ends Next
	for {
		d, err := s.Next(ctx)
		if err != nil {
			return
		}
		s.handler(d)
	}
}

// Unsubscribe removes the subscription. Messages still queued are dropped
// and counted with DropClosed; Next then returns ErrClosed. It does not wait
// for a SubscribeFunc handler to finish its current message. Calling it
// again does nothing.
func (s *Subscription) Unsubscribe() {
	s.close(fmt.Errorf("%w: subscription %q was unsubscribed", ErrClosed, s.Name()))
}

// Drain stops new messages from reaching the subscription while keeping
// what is queued: Next returns the queued messages, then an error wrapping
// ErrClosed; a SubscribeFunc handler gets them all before its goroutine
// ends. Call Unsubscribe afterwards to release the subscription (Drain
// then Unsubscribe on an empty queue loses nothing).
func (s *Subscription) Drain() {
	s.unroute()
	s.q.mu.Lock()
	s.q.closeLocked(fmt.Errorf("%w: subscription %q was drained", ErrClosed, s.Name()))
	s.q.mu.Unlock()
}

// close removes the subscription from routing, then closes its queue with
// err, counting what was still queued. Leaving the index first means that a
// subscriber's other patterns take over its topics at once.
func (s *Subscription) close(err error) {
	s.unroute()
	var lost []Message
	s.q.mu.Lock()
	s.q.drainLocked(&lost)
	s.q.closeLocked(err)
	s.q.mu.Unlock()
	s.b.countDrops(s, DropClosed, lost)
	s.retire()
}

// unsubscribe removes a subscription whose queue is closed (or was never
// used) from routing and from the broker.
func (s *Subscription) unsubscribe() {
	s.unroute()
	s.retire()
}

// unroute removes the subscription from the index.
func (s *Subscription) unroute() {
	if s.removed.Swap(true) {
		return
	}
	s.owner.mu.Lock()
	s.b.index.Remove(s.pattern, s.owner.id, s)
	for i, o := range s.owner.subs {
		if o == s {
			s.owner.subs = append(s.owner.subs[:i], s.owner.subs[i+1:]...)
			break
		}
	}
	s.owner.mu.Unlock()
}

// retire removes the subscription from the broker's registry, keeping its
// Delivered count in the totals. Its queue is closed: nothing more is taken.
func (s *Subscription) retire() {
	if s.retired.Swap(true) {
		return
	}
	b := s.b
	_, _, _, delivered := s.q.depth()
	sweep := false
	b.mu.Lock()
	if _, ok := b.subs[s]; ok {
		delete(b.subs, s)
		b.retiredDelivered += delivered + s.sunk.Swap(0) // see addSunk and SinkDiscarded
		if b.subsPeak >= shrinkMin && len(b.subs) <= b.subsPeak/4 {
			b.subs = resized(b.subs)
			b.subsPeak = len(b.subs)
		}
		b.removed++
		if b.removed >= max(shrinkMin, len(b.subs)) {
			b.removed = 0
			sweep = true
		}
	}
	b.mu.Unlock()
	if sweep {
		b.sweepRoutes()
	}
}

// addSunk counts a message the subscription's Sink took. A publisher may
// get here after retire took the count into the broker's totals (the
// connection closed while Deliver ran): then it moves its count there
// itself, so that no delivery is lost from Stats.Delivered.
func (s *Subscription) addSunk() {
	s.sunk.Add(1)
	if !s.retired.Load() { // the common case: one load more than counting
		return
	}
	b := s.b
	b.mu.Lock()
	if _, live := b.subs[s]; !live {
		b.retiredDelivered += s.sunk.Swap(0)
	}
	b.mu.Unlock()
}

// SinkDiscarded tells the broker that n messages to topic, which the
// subscription's Sink took (and the broker counted as delivered), never
// reached the subscriber: the sink discarded them, for instance with the
// buffer of a network connection that closed. They are counted as dropped
// for why (DropClosed, or DropDisconnect for a slow consumer) instead of
// delivered, against the subscription and the topic. It may be called
// after the subscription closed. Safe for concurrent use; not for the hot
// path (it takes the broker's lock).
func (s *Subscription) SinkDiscarded(topic string, why DropReason, n uint64) {
	if n == 0 || why >= numDropReasons {
		return
	}
	b := s.b
	b.mu.Lock()
	if _, live := b.subs[s]; live || !s.retired.Load() {
		s.sunk.Add(-n)
	} else {
		b.retiredDelivered -= n
	}
	b.mu.Unlock()
	s.drops[why].Add(n)
	if v, ok := b.topics.Load(topic); ok {
		v.(*topicState).dropped[why].Add(n)
	} else if b.ephemeral != nil && strings.HasPrefix(topic, b.ephemeral.prefix) {
		b.ephemeral.state.dropped[why].Add(n)
	}
}

// roomForSubscription returns an error if the broker holds MaxSubscriptions.
func (b *Broker) roomForSubscription(pattern string) error {
	b.mu.Lock()
	full := len(b.subs) >= b.maxSubs
	b.mu.Unlock()
	if full {
		return b.tooMany(pattern)
	}
	return nil
}

func (b *Broker) tooMany(pattern string) error {
	return fmt.Errorf("%w: cannot subscribe to %q: the broker holds its limit of %d subscriptions; unsubscribe some or raise MaxSubscriptions",
		ErrTooManySubscriptions, pattern, b.maxSubs)
}

// sweepRoutes forgets the cached routes made before the index last
// changed, so that they stop holding removed subscriptions (and what
// their subscribers hold) until their topic's next publish. retire calls
// it after as many removals as there are live subscriptions (at least
// shrinkMin), so its cost, one pass over the topics, is spread thinly.
func (b *Broker) sweepRoutes() {
	gen := b.index.Generation()
	b.topics.Range(func(_, v any) bool {
		ts := v.(*topicState)
		if r := ts.route.Load(); r != nil && r.gen != gen {
			ts.route.CompareAndSwap(r, nil) // a publisher rerouting meanwhile wins
		}
		return true
	})
}

// shrinkMin is the size from which a map that has lost three quarters of
// its entries is rebuilt: Go maps keep their memory when entries go.
const shrinkMin = 256

// resized returns a copy of m sized for its entries. (maps.Clone copies
// the table as it is, emptied part and all.)
func resized[K comparable, V any](m map[K]V) map[K]V {
	out := make(map[K]V, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}
