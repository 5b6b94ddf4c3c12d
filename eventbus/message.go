package eventbus

import (
	"fmt"
	"strings"
)

// Priority orders messages in a subscriber's queue: a subscriber receives
// queued messages of a higher priority first. Within one priority, messages
// from one publisher keep their order. The zero value means
// [PriorityNormal].
type Priority uint8

// The priorities, lowest first.
const (
	PriorityLow      Priority = 1
	PriorityNormal   Priority = 2
	PriorityHigh     Priority = 3
	PriorityCritical Priority = 4

	numPriorities = 4
)

// level maps a priority to a queue level, 0 (low) to 3 (critical).
func (p Priority) level() (int, bool) {
	switch {
	case p == 0:
		return int(PriorityNormal) - 1, true
	case p <= PriorityCritical:
		return int(p) - 1, true
	}
	return 0, false
}

// String returns "low", "normal", "high" or "critical".
func (p Priority) String() string {
	switch p {
	case PriorityLow:
		return "low"
	case 0, PriorityNormal:
		return "normal"
	case PriorityHigh:
		return "high"
	case PriorityCritical:
		return "critical"
	}
	return fmt.Sprintf("priority(%d)", uint8(p))
}

// ParsePriority parses the names String returns.
func ParsePriority(s string) (Priority, error) {
	for p := PriorityLow; p <= PriorityCritical; p++ {
		if strings.EqualFold(s, p.String()) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("%w: %q: use low, normal, high or critical", ErrInvalidPriority, s)
}

// Message is what a publisher hands to the broker and what subscribers
// receive. The broker never serializes or copies the payload: every
// subscriber receives the same Payload slice, so neither the publisher nor a
// subscriber may modify it after Publish.
type Message struct {
	// Topic is the concrete topic the message was published to.
	Topic string
	// Payload is opaque to the broker. At most [Options.MaxPayload] bytes.
	Payload []byte
	// Priority defaults to PriorityNormal.
	Priority Priority
	// Reply, when set, makes the message a request: it is the topic the
	// answer should be published to (the requester's inbox). It must be a
	// valid topic. A request that no subscription matches fails at once
	// with ErrNoResponders.
	Reply string
	// Seq is set by the broker: 1 for the first message published to Topic,
	// then one more for each message, so a subscriber that sees a jump knows
	// how many it missed. A value set by the publisher is ignored. If the
	// broker forgets a topic's state (see [Options.MaxTopics]), the topic's
	// sequence starts again at 1.
	Seq uint64
	// Value optionally carries the decoded form of Payload, for subscribers
	// in this process: they may use it instead of decoding Payload, and
	// nothing is serialized on their behalf. The broker carries it along and
	// never looks at it; connections to other processes send Payload. The
	// publisher must keep the two equivalent, and nobody may modify Value
	// after Publish (every in-process subscriber shares it).
	//
	// A message may carry a Value and no Payload if the Value implements
	// encoding.BinaryAppender: a connection to another process then encodes
	// it when it delivers the message (see envelope.Lazy), and in-process
	// subscribers never pay for an encoding. The broker's MaxPayload and
	// byte limits count only Payload; the connection checks the encoded
	// size against its own limits.
	Value any
}

// size is what a message counts against a queue's byte limit.
func (m *Message) size() int64 { return int64(len(m.Payload) + len(m.Topic) + len(m.Reply)) }

// Delivery is a message as one subscription received it.
type Delivery struct {
	Message
	// Pattern is the pattern of the subscription that received the
	// message: of all the subscriber's patterns that match the topic, the
	// most specific (see topic.Specificity).
	Pattern string
}
