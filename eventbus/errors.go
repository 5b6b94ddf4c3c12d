package eventbus

import "errors"

// Sentinel errors. The broker wraps them with detail (which topic, which
// subscriber, which limit); test for them with errors.Is.
var (
	// ErrClosed is returned by operations on a broker that is shutting
	// down or closed, and by Next on a closed subscription.
	ErrClosed = errors.New("eventbus: closed")
	// ErrSlowConsumer is returned to a publisher whose message a subscriber
	// could not take in time (overflow policy block, after the wait), or
	// that caused a subscriber to be disconnected (overflow policy
	// disconnect); Next returns it on a subscription that was disconnected.
	ErrSlowConsumer = errors.New("eventbus: slow consumer")
	// ErrQueueFull is returned to a publisher whose message was discarded
	// because a subscriber's queue was full (overflow policy drop-newest, or
	// drop-oldest when every queued message outranks the new one).
	ErrQueueFull = errors.New("eventbus: subscriber queue full")
	// ErrPayloadTooLarge is returned for a payload over Options.MaxPayload.
	ErrPayloadTooLarge = errors.New("eventbus: payload too large")
	// ErrInvalidPriority is returned for a priority outside low..critical.
	ErrInvalidPriority = errors.New("eventbus: invalid priority")
	// ErrInvalidOptions is returned for options out of range.
	ErrInvalidOptions = errors.New("eventbus: invalid options")
	// ErrNoResponders is returned for a request (a message with a Reply
	// topic) that no subscription matches: nobody would ever answer it.
	ErrNoResponders = errors.New("eventbus: no responders")
	// ErrBudgetExhausted is wrapped, with ErrQueueFull, by a Sink that
	// refused a message because a memory budget it shares with other
	// subscribers (a network server's buffers for all its connections) is
	// spent: waiting for this subscriber could not make room, so even under
	// OverflowBlock the publisher does not wait; the message is dropped and
	// counted as DropQueueFull.
	ErrBudgetExhausted = errors.New("eventbus: buffer budget exhausted")
	// ErrTooManySubscriptions is returned by Subscribe when the broker
	// holds Options.MaxSubscriptions subscriptions already.
	ErrTooManySubscriptions = errors.New("eventbus: too many subscriptions")
)
