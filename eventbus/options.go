package eventbus

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/daemoneye/daemoneye/topic"
	"github.com/daemoneye/daemoneye/topics"
)

// Defaults for [Options] and [SubscribeOptions].
const (
	DefaultMaxPayload   = 1 << 20  // bytes
	DefaultMaxTopics    = 65536    // topics with state (sequence, stats)
	DefaultMaxMessages  = 10000    // messages per subscription queue
	DefaultMaxBytes     = 64 << 20 // bytes per subscription queue
	DefaultBlockTimeout = time.Second
	// DefaultMaxSubscriptions bounds the subscriptions of a whole broker.
	DefaultMaxSubscriptions = 65536
	// DefaultEphemeralPrefix starts the topics replies travel on (see
	// Options.EphemeralPrefix).
	DefaultEphemeralPrefix = topics.InboxPrefix
)

// Options configures a [Broker]. The zero value is a broker with the
// default topic policy and limits that logs nothing.
type Options struct {
	// Policy validates topics and patterns. Nil means the default policy
	// (domains "events" and "control", 8 segments, 256 bytes).
	Policy *topic.Policy
	// MaxPayload is the largest payload Publish accepts, in bytes. Zero
	// means DefaultMaxPayload (1 MiB).
	MaxPayload int
	// MaxTopics bounds how many topics the broker keeps state for
	// (sequence number and per-topic stats). When it is reached, an eighth
	// of the topics are forgotten at random; their sequences restart at 1
	// and Stats.TopicsEvicted counts them. Zero means DefaultMaxTopics.
	MaxTopics int
	// MaxSubscriptions bounds the subscriptions the broker holds at once,
	// over all subscribers (each costs about 1 KiB with its index entry).
	// Subscribe beyond it fails with an error wrapping
	// ErrTooManySubscriptions. Zero means DefaultMaxSubscriptions (65,536).
	MaxSubscriptions int
	// MatchCacheSize bounds the match-result cache of the subscription
	// index, in topics. Zero means topic.DefaultCacheSize; negative
	// disables it.
	MatchCacheSize int
	// EphemeralPrefix starts topics that are used once or a few times,
	// such as request inboxes: they share one state (one sequence, one
	// stats entry named prefix + "#") instead of each keeping its own, and
	// bypass the match cache, so that a stream of replies neither evicts
	// other topics' state under MaxTopics nor flushes the cache. Empty
	// means DefaultEphemeralPrefix ("control.inbox."); "-" turns it off.
	EphemeralPrefix string
	// Logger receives the broker's rare diagnostics (a subscriber
	// disconnected as slow, a forced shutdown). Nil discards them.
	Logger *slog.Logger
}

// Overflow is what a subscription does when a message arrives and its queue
// is at its message or byte limit. Every message lost this way is counted
// in the subscription's and the topic's stats.
type Overflow uint8

const (
	// OverflowBlock makes the publisher wait for room, bounded by its
	// context and by SubscribeOptions.BlockTimeout. If the wait ends first,
	// the message is dropped for that subscriber and Publish returns an
	// error wrapping ErrSlowConsumer that names the subscriber. The default.
	OverflowBlock Overflow = iota
	// OverflowDropOldest evicts the oldest queued message of the lowest
	// priority that is not above the new message's. If every queued
	// message outranks the new one, the new one is dropped instead and
	// Publish returns ErrQueueFull.
	OverflowDropOldest
	// OverflowDropNewest discards the new message for that subscriber;
	// Publish returns an error wrapping ErrQueueFull.
	OverflowDropNewest
	// OverflowDisconnect closes the subscription and drops what it had
	// queued; Publish returns an error wrapping ErrSlowConsumer and the
	// subscriber's Next returns ErrSlowConsumer.
	OverflowDisconnect
)

var overflowNames = [...]string{"block", "drop-oldest", "drop-newest", "disconnect"}

// String returns "block", "drop-oldest", "drop-newest" or "disconnect".
func (o Overflow) String() string {
	if int(o) < len(overflowNames) {
		return overflowNames[o]
	}
	return fmt.Sprintf("overflow(%d)", uint8(o))
}

// ParseOverflow parses the names String returns.
func ParseOverflow(s string) (Overflow, error) {
	for i, n := range overflowNames {
		if s == n {
			return Overflow(i), nil
		}
	}
	return 0, fmt.Errorf("%w: overflow policy %q: use %s", ErrInvalidOptions, s, strings.Join(overflowNames[:], ", "))
}

// SubscribeOptions configures one subscription. The zero value is a queue
// of 10,000 messages and 64 MiB whose publishers wait up to a second for
// room.
type SubscribeOptions struct {
	// Name identifies the subscription in stats and error messages. Empty
	// means "sub-<id>".
	Name string
	// MaxMessages bounds the queue by count. Zero means
	// DefaultMaxMessages (10,000).
	MaxMessages int
	// MaxBytes bounds the queue by the sum of payload and topic lengths.
	// Zero means DefaultMaxBytes (64 MiB).
	MaxBytes int64
	// Overflow says what happens when the queue is full. The zero value is
	// OverflowBlock.
	Overflow Overflow
	// BlockTimeout bounds how long a publisher waits for room under
	// OverflowBlock, in addition to the publisher's context. Zero means
	// DefaultBlockTimeout (1 s); negative means only the context bounds it.
	BlockTimeout time.Duration
	// QueueGroup, when set, makes the subscription one member of a queue
	// group: each message that matches the group's members goes to one of
	// them, not to all. Members are served round robin, skipping a member
	// whose queue is full or that has closed; only when no member has room
	// does the chosen member's overflow policy apply. Groups are global:
	// members of one name may belong to different subscribers and
	// connections. At most 64 bytes of letters, digits, '-', '_' and '.'.
	QueueGroup string
	// Tag is opaque to the broker and returned by Subscription.Tag; a
	// network server keeps the client's subscription id here.
	Tag uint64
}

func (o *SubscribeOptions) normalize() error {
	if o.MaxMessages < 0 || o.MaxBytes < 0 {
		return fmt.Errorf("%w: queue limits must not be negative (MaxMessages %d, MaxBytes %d)", ErrInvalidOptions, o.MaxMessages, o.MaxBytes)
	}
	if o.Overflow > OverflowDisconnect {
		return fmt.Errorf("%w: unknown overflow policy %d: use %s", ErrInvalidOptions, o.Overflow, strings.Join(overflowNames[:], ", "))
	}
	if err := validGroup(o.QueueGroup); err != nil {
		return err
	}
	if o.MaxMessages == 0 {
		o.MaxMessages = DefaultMaxMessages
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.BlockTimeout == 0 {
		o.BlockTimeout = DefaultBlockTimeout
	}
	return nil
}

// MaxQueueGroupLen is the longest queue group name, in bytes.
const MaxQueueGroupLen = 64

func validGroup(g string) error {
	if len(g) > MaxQueueGroupLen {
		return fmt.Errorf("%w: queue group %.16q... is %d bytes; the limit is %d", ErrInvalidOptions, g, len(g), MaxQueueGroupLen)
	}
	for i := 0; i < len(g); i++ {
		c := g[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return fmt.Errorf("%w: queue group %q: byte %d (%q) is not a letter, digit, '-', '_' or '.'", ErrInvalidOptions, g, i, c)
		}
	}
	return nil
}
