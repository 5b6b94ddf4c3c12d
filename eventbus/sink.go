package eventbus

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Sink receives the messages of a subscriber's subscriptions inline, in the
// publisher's goroutine, instead of through per-subscription queues. A
// network connection is a sink: it appends each message to its outbound
// buffer and flushes once per batch, so a connection with many
// subscriptions needs no goroutine per subscription.
type Sink interface {
	// Deliver hands m to the sink for subscription s. It is called with the
	// topic's lock held, in sequence order, possibly from several
	// publishers' goroutines at once, so it must be safe for concurrent use
	// and must not block: a sink enforces s's limits and overflow policy
	// itself (see [Subscription.Limits]) and returns at once. It returns
	// nil when it took the message, or an error wrapping ErrQueueFull (the
	// message was dropped), ErrSlowConsumer (the sink gave up on the
	// subscriber) or ErrClosed (the sink is closed). The broker counts the
	// drop and passes the error to the publisher. The payload is shared
	// with every other subscriber and must not be modified. m is passed by
	// value (56 bytes) so that the publisher's message never escapes to the
	// heap; a pointer would cost an allocation per publish. Deliver must
	// not call back into the broker; to drop the subscriber, return
	// ErrSlowConsumer and close it from another goroutine.
	//
	// ctx is the context the publisher passed to Publish, for the sink to
	// recognise its publisher (a network server flushes a connection once
	// per batch its publisher read, as nats-server does); Deliver must not
	// wait on it.
	Deliver(ctx context.Context, s *Subscription, m Message) error
}

// A Batch is a publisher's context that lets sinks put off flushing until
// the publisher has finished a batch of publishes. A sink that finds a
// *Batch as Deliver's ctx may Defer itself instead of waking a writer of
// its own; the publisher calls Flush when its batch is done, and each
// sink then writes from the publisher's goroutine. That saves a goroutine
// hand-off per message where latency matters: a network server's reader
// publishes everything it read with one Batch and flushes it before it
// reads again (nats-server's model). The broker flushes a Batch itself
// before the publisher waits for room (OverflowBlock), so that nothing
// deferred waits with it.
//
// The zero Batch with Context set is ready to use. A Batch belongs to one
// publisher goroutine at a time; it is not safe for concurrent use.
type Batch struct {
	context.Context
	pending []Flusher
}

// A Flusher is a Sink that can defer its flushes into a Batch.
type Flusher interface {
	// Flush sends what was delivered to the sink, from the calling
	// goroutine. It must not block: what cannot be sent at once is left to
	// the sink's own writer.
	Flush()
}

// Defer notes that f has deliveries to flush when the batch is done. The
// caller is a sink's Deliver, called with this Batch: it runs on the
// publisher's goroutine.
func (b *Batch) Defer(f Flusher) { b.pending = append(b.pending, f) }

// Flush flushes every Flusher deferred since the last Flush, in order.
func (b *Batch) Flush() {
	for i, f := range b.pending {
		f.Flush()
		b.pending[i] = nil
	}
	b.pending = b.pending[:0]
}

// flushBatch flushes ctx if it is a Batch: the publisher is about to wait.
func flushBatch(ctx context.Context) {
	if bt, ok := ctx.(*Batch); ok {
		bt.Flush()
	}
}

// A RoomWaiter is a Sink that can make a publisher wait for room, so that
// OverflowBlock holds for its subscriptions as for queues. When Deliver
// refuses a message with an error wrapping ErrQueueFull for a subscription
// whose policy is OverflowBlock, the broker waits on Room's channel (bounded
// by the publisher's context and the subscription's BlockTimeout) and offers
// the message again; it drops and counts it with DropTimeout if the wait
// ends first. The message may then arrive after later ones from other
// publishers.
type RoomWaiter interface {
	// Room returns nil if m fits now (or the sink is closed), else a
	// channel closed when room may have appeared. It must measure m as
	// Deliver does. It is called without the broker's locks and must not
	// block.
	Room(s *Subscription, m Message) <-chan struct{}
}

// A StallReporter is a RoomWaiter that is told when a publisher's wait for
// room at subscription s ended without room because the subscription's
// BlockTimeout passed (not because the publisher's context ended), after
// the message was counted as dropped with DropTimeout. A network server
// closes the connection as a slow consumer then, so that no publisher
// waits for it again. Stalled is called without the broker's locks, from
// the publisher's goroutine; it must not block.
type StallReporter interface {
	Stalled(s *Subscription)
}

// A TryDeliverer is a Sink that can take a message without applying the
// overflow policy when it has no room: TryDeliver returns an error wrapping
// ErrQueueFull and changes nothing. The broker probes queue-group members
// with it, so that a member passed over is not disconnected for it. A sink
// without it is offered group messages only on its own turn.
type TryDeliverer interface {
	TryDeliver(ctx context.Context, s *Subscription, m Message) error
}

// NewSinkSubscriber returns a subscriber whose subscriptions deliver into
// sink instead of queues. Its subscriptions cannot be read with Next and
// cannot have handlers.
func (b *Broker) NewSinkSubscriber(name string, sink Sink) *Subscriber {
	s := b.NewSubscriber(name)
	s.sink = sink
	return s
}

// Tag returns the value given in SubscribeOptions.Tag.
func (s *Subscription) Tag() uint64 { return s.tag }

// Limits returns the subscription's limits with defaults applied, for a
// Sink to enforce.
func (s *Subscription) Limits() (maxMessages int, maxBytes int64, overflow Overflow, blockTimeout time.Duration) {
	return s.q.maxCount, s.q.maxBytes, s.q.overflow, s.blockTimeout
}

var errSinkNext = fmt.Errorf("%w: this subscription delivers into a Sink; it has no queue to read", ErrInvalidOptions)

// sinkRefused counts a message a sink did not take and returns what the
// publisher should see.
func (b *Broker) sinkRefused(ts *topicState, s *Subscription, m *Message, err error) error {
	why := DropQueueFull
	switch {
	case errors.Is(err, ErrSlowConsumer):
		why = DropDisconnect
	case errors.Is(err, ErrClosed):
		why = DropClosed
		if !b.closing.Load() {
			// The subscriber went away as the message reached it: not the
			// publisher's error, but a copy lost, and counted.
			s.drops[why].Add(1)
			ts.dropped[why].Add(1)
			return nil
		}
	}
	s.drops[why].Add(1)
	ts.dropped[why].Add(1)
	return fmt.Errorf("eventbus: message %d to %q not delivered to %q: %w", m.Seq, m.Topic, s.Name(), err)
}
