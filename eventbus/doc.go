// Package eventbus is DaemonEye's embeddable broker: publish and subscribe
// over dot-separated topics with "+" and "#" wildcards (see package topic),
// bounded queues with an explicit overflow policy, message priorities and
// per-topic sequence numbers.
//
// # Delivery
//
// [Broker.Publish] finds the matching subscriptions through a cached route
// per topic and appends the message to each one's queue; nothing is
// serialized and the payload is never copied, so every subscriber sees the
// same bytes. A [Subscriber] groups subscriptions: when several of its
// patterns match a topic it receives the message once, through the
// subscription with the most specific pattern, whose options apply.
//
// Each subscription has a bounded queue (10,000 messages and 64 MiB by
// default) and an [Overflow] policy for when it is full: block the
// publisher for a bounded time, drop the oldest, drop the newest, or
// disconnect the subscriber. No message is lost without a trace: every drop
// is counted per subscription, per topic and per [DropReason] in
// [Broker.Stats], and a publish that a subscriber missed returns an error
// that names it.
//
// A subscriber made with [Broker.NewSinkSubscriber] has no queues: the
// broker hands its messages to a [Sink] inline, in the publisher's goroutine
// and in sequence order. A network connection is such a subscriber; it
// buffers what it is given and enforces the subscriptions' limits itself.
//
// A subscriber takes higher [Priority] messages first; within one priority,
// messages from one publisher keep their order. The broker numbers the
// messages of each topic (Message.Seq) so that a subscriber can detect gaps.
//
// # Lifecycle and goroutines
//
// [New] starts nothing. [Subscriber.SubscribeFunc] starts one goroutine per
// subscription, owned by the broker; [Broker.Close] waits for them.
// [Broker.Shutdown] refuses new work and waits, bounded by its context,
// until every queue has been consumed before it closes.
//
// # Locks
//
// The order of the broker's locks, and of the locks of other packages
// taken under them, is in docs/locks.md. A Sink's Deliver (and a
// TryDeliverer's TryDeliver) runs under the topic's lock: it must not
// block or call what takes the broker's locks (Publish, Subscribe,
// Unsubscribe, Close), and the locks it takes must never be held while
// calling into the broker.
//
// The publish path holds a topic's lock while it assigns the sequence
// number and appends to each queue, so each subscriber sees a topic's
// messages in sequence order within a priority. The exception is a
// publisher that had to wait for room under OverflowBlock: it releases the
// topic lock to wait, so its message may arrive after later ones from other
// publishers (never after its own later ones: Publish returns only once the
// message is queued or dropped). While any publisher waits for a queue, new
// ones wait behind it, so waiters are not starved.
package eventbus
