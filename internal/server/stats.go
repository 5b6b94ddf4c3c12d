package server

import (
	"cmp"
	"context"
	"encoding/json"
	"slices"
	"strings"

	"github.com/daemoneye/daemoneye/eventbus"
)

// StatsTopic is where the server answers requests for its stats: a request
// (any payload) gets a JSON Stats as its reply.
const StatsTopic = "control.broker.stats"

// Stats is a snapshot of the server and its broker.
type Stats struct {
	Broker      eventbus.Stats `json:"broker"`
	Connections []ConnStats    `json:"connections"`
	// TopicsOmitted and SubscriptionsOmitted count entries left out of a
	// stats reply, which lists at most MaxStatsEntries of each (the
	// busiest); the totals cover everything.
	TopicsOmitted        int `json:"topics_omitted,omitempty"`
	SubscriptionsOmitted int `json:"subscriptions_omitted,omitempty"`
	// DeniedPublishes and DeniedSubscribes count what the Authorizer
	// refused.
	DeniedPublishes  uint64 `json:"denied_publishes"`
	DeniedSubscribes uint64 `json:"denied_subscribes"`
	// SlowConsumers counts connections closed as slow consumers: their
	// buffer stayed full for MaxStall under block, or filled under
	// disconnect.
	SlowConsumers uint64 `json:"slow_consumers"`
	// ConnDropped sums ConnStats.Dropped over every connection, those that
	// have ended included.
	ConnDropped ConnDrops `json:"conn_dropped"`
	// PendingTotal is the bytes of MaxPendingTotal the connections hold
	// now (in 64 KiB chunks), and MaxPendingTotal the limit.
	PendingTotal    int64 `json:"pending_total"`
	MaxPendingTotal int   `json:"max_pending_total"`
}

// MaxStatsEntries bounds the topics and the subscriptions listed in a
// stats reply, so that it fits in a message.
const MaxStatsEntries = 1000

// ConnStats describes one client connection.
type ConnStats struct {
	Session  string `json:"session"`
	Identity string `json:"identity"`
	Client   string `json:"client"`
	Remote   string `json:"remote"`
	// Pending is the bytes waiting to be written to the client now.
	Pending int `json:"pending"`
	// Dropped counts the messages this connection lost, by reason.
	Dropped ConnDrops `json:"dropped"`
}

// Stats returns a snapshot of the broker's counters and the connections.
// Safe for concurrent use.
func (s *Server) Stats() Stats {
	st := Stats{Broker: s.opts.Broker.Stats(), Connections: []ConnStats{},
		DeniedPublishes: s.deniedPublishes.Load(), DeniedSubscribes: s.deniedSubscribes.Load(),
		SlowConsumers: s.slowConsumers.Load(), PendingTotal: s.pendingTotal.Load(), MaxPendingTotal: s.opts.MaxPendingTotal}
	s.dropsMu.Lock() // so that a connection ending meanwhile is counted once
	defer s.dropsMu.Unlock()
	st.ConnDropped = s.closedDrops
	for _, c := range s.liveConns() {
		c.mu.Lock()
		cs := c.info
		cs.Pending = len(c.out) + c.writing
		cs.Dropped = c.drops
		ready := c.sub != nil
		moved := c.dropsMoved
		c.mu.Unlock()
		if !moved {
			st.ConnDropped.add(cs.Dropped)
		}
		if ready {
			st.Connections = append(st.Connections, cs)
		}
	}
	slices.SortFunc(st.Connections, func(a, b ConnStats) int { return strings.Compare(a.Session, b.Session) })
	return st
}

// serveStats answers requests on StatsTopic until the subscription ends.
func (s *Server) serveStats() (*eventbus.Subscription, error) {
	b := s.opts.Broker
	return b.SubscribeFunc(StatsTopic, eventbus.SubscribeOptions{Name: "server-stats", Overflow: eventbus.OverflowDropNewest, MaxMessages: 64},
		func(d eventbus.Delivery) {
			if d.Reply == "" {
				return
			}
			st := s.Stats()
			st.trim(MaxStatsEntries)
			body, err := json.Marshal(st)
			if err != nil {
				return // cannot happen: Stats has no unencodable fields
			}
			if err := b.Publish(context.Background(), eventbus.Message{Topic: d.Reply, Payload: body, Priority: eventbus.PriorityHigh}); err != nil {
				s.log.Warn("could not answer a stats request", "reply", d.Reply, "bytes", len(body), "err", err)
			}
		})
}

// trim keeps the n busiest topics and subscriptions.
func (st *Stats) trim(n int) {
	if len(st.Broker.Topics) > n {
		slices.SortStableFunc(st.Broker.Topics, func(a, b eventbus.TopicStats) int { return cmp.Compare(b.Published, a.Published) })
		st.TopicsOmitted = len(st.Broker.Topics) - n
		st.Broker.Topics = st.Broker.Topics[:n]
	}
	if len(st.Broker.Subscriptions) > n {
		slices.SortStableFunc(st.Broker.Subscriptions, func(a, b eventbus.SubscriptionStats) int { return cmp.Compare(b.Delivered, a.Delivered) })
		st.SubscriptionsOmitted = len(st.Broker.Subscriptions) - n
		st.Broker.Subscriptions = st.Broker.Subscriptions[:n]
	}
}
