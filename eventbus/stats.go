package eventbus

import (
	"cmp"
	"slices"
	"sync/atomic"
)

// DropReason says why a message did not reach a subscriber.
type DropReason uint8

const (
	// DropQueueFull: the queue was full and the new message was discarded
	// (drop-newest, drop-oldest when outranked, or a message larger than
	// the queue's byte limit).
	DropQueueFull DropReason = iota
	// DropOldest: a queued message was evicted for a newer one
	// (drop-oldest).
	DropOldest
	// DropTimeout: a blocked publisher stopped waiting for room (block).
	DropTimeout
	// DropDisconnect: the subscription was disconnected as a slow consumer;
	// the message that overflowed it and everything it had queued count
	// here (disconnect).
	DropDisconnect
	// DropClosed: the subscription or broker closed with the message still
	// queued, or as the message was offered to it (a connection that
	// closed while it was being delivered to).
	DropClosed

	numDropReasons
)

var dropNames = [numDropReasons]string{"queue_full", "oldest", "timeout", "disconnect", "closed"}

// String returns the reason's name as used in stats: "queue_full",
// "oldest", "timeout", "disconnect" or "closed".
func (r DropReason) String() string {
	if r < numDropReasons {
		return dropNames[r]
	}
	return "unknown"
}

// Drops counts dropped messages by reason.
type Drops struct {
	QueueFull  uint64 `json:"queue_full"`
	Oldest     uint64 `json:"oldest"`
	Timeout    uint64 `json:"timeout"`
	Disconnect uint64 `json:"disconnect"`
	Closed     uint64 `json:"closed"`
}

// Total returns the sum over all reasons.
func (d Drops) Total() uint64 {
	return d.QueueFull + d.Oldest + d.Timeout + d.Disconnect + d.Closed
}

func (d *Drops) add(o Drops) {
	d.QueueFull += o.QueueFull
	d.Oldest += o.Oldest
	d.Timeout += o.Timeout
	d.Disconnect += o.Disconnect
	d.Closed += o.Closed
}

func loadDrops(c *[numDropReasons]atomic.Uint64) Drops {
	return Drops{
		QueueFull:  c[DropQueueFull].Load(),
		Oldest:     c[DropOldest].Load(),
		Timeout:    c[DropTimeout].Load(),
		Disconnect: c[DropDisconnect].Load(),
		Closed:     c[DropClosed].Load(),
	}
}

// TopicStats are the counters of one topic.
type TopicStats struct {
	Topic string `json:"topic"`
	// Published counts messages published to the topic; it equals the
	// topic's last sequence number.
	Published uint64 `json:"published"`
	// Enqueued counts copies queued for subscribers.
	Enqueued uint64 `json:"enqueued"`
	// Unrouted counts messages that matched no subscriber.
	Unrouted uint64 `json:"unrouted"`
	// Dropped counts copies that a subscriber lost, by reason.
	Dropped Drops `json:"dropped"`
}

// SubscriptionStats are the counters and queue state of one subscription.
type SubscriptionStats struct {
	ID         uint64 `json:"id"`
	Name       string `json:"name"`
	Subscriber string `json:"subscriber"`
	Pattern    string `json:"pattern"`
	QueueGroup string `json:"queue_group,omitempty"`
	Overflow   string `json:"overflow"`
	// Delivered counts messages the consumer took from the queue, or that
	// the subscriber's Sink accepted.
	Delivered uint64 `json:"delivered"`
	// Dropped counts messages lost for this subscription, by reason.
	Dropped Drops `json:"dropped"`
	// QueueDepth and QueueBytes are the queue's fill now; HighWater is the
	// most messages it ever held at once.
	QueueDepth  int   `json:"queue_depth"`
	QueueBytes  int64 `json:"queue_bytes"`
	HighWater   int   `json:"high_water"`
	MaxMessages int   `json:"max_messages"`
	MaxBytes    int64 `json:"max_bytes"`
}

// Stats is a snapshot of the broker's counters. Each counter is read
// atomically; the snapshot as a whole is not a single instant.
type Stats struct {
	Published     uint64              `json:"published"`
	Enqueued      uint64              `json:"enqueued"`
	Delivered     uint64              `json:"delivered"`
	Unrouted      uint64              `json:"unrouted"`
	Dropped       Drops               `json:"dropped"`
	TopicsEvicted uint64              `json:"topics_evicted"`
	Topics        []TopicStats        `json:"topics"`
	Subscriptions []SubscriptionStats `json:"subscriptions"`
}

// Stats returns a snapshot of every topic's and subscription's counters,
// sorted by topic and by subscription id. The totals include subscriptions
// that have gone; they miss topics evicted under Options.MaxTopics.
func (b *Broker) Stats() Stats {
	var st Stats
	var topics []*topicState
	b.topics.Range(func(_, v any) bool {
		topics = append(topics, v.(*topicState))
		return true
	})
	if b.ephemeral != nil && b.ephemeral.state.seq.Load() > 0 {
		topics = append(topics, &b.ephemeral.state)
	}
	for _, ts := range topics {
		ts.mu.Lock()
		t := TopicStats{Topic: ts.name, Published: ts.seq.Load(), Enqueued: ts.enqueued}
		ts.mu.Unlock()
		t.Unrouted = ts.unrouted.Load()
		t.Dropped = loadDrops(&ts.dropped)
		st.Published += t.Published
		st.Enqueued += t.Enqueued
		st.Unrouted += t.Unrouted
		st.Dropped.add(t.Dropped)
		st.Topics = append(st.Topics, t)
	}
	subs, retired := b.snapshot()
	for _, ls := range subs {
		s := ls.s
		depth, bytes, hwm, delivered := s.q.depth()
		delivered += ls.sunk
		ss := SubscriptionStats{
			ID: s.id, Name: s.Name(), Subscriber: s.owner.Name(), Pattern: s.pattern, QueueGroup: s.group,
			Overflow: s.q.overflow.String(), Delivered: delivered, Dropped: loadDrops(&s.drops),
			QueueDepth: depth, QueueBytes: bytes, HighWater: hwm,
			MaxMessages: s.q.maxCount, MaxBytes: s.q.maxBytes,
		}
		st.Delivered += ss.Delivered
		st.Subscriptions = append(st.Subscriptions, ss)
	}
	st.Delivered += retired
	st.TopicsEvicted = b.evicted.Load()
	slices.SortFunc(st.Topics, func(a, b TopicStats) int { return cmp.Compare(a.Topic, b.Topic) })
	slices.SortFunc(st.Subscriptions, func(a, b SubscriptionStats) int { return cmp.Compare(a.ID, b.ID) })
	return st
}
