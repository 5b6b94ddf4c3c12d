package server

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/topics"
)

// Stats is a snapshot of the server and its broker.
type Stats struct {
	Broker eventbus.Stats `json:"broker"`
	// Connections lists authenticated connections, those with the most
	// bytes pending first, at most MaxStatsEntries of them.
	Connections []ConnStats `json:"connections"`
	// TopicsOmitted, SubscriptionsOmitted and ConnectionsOmitted count
	// entries left out of a stats reply, which lists at most
	// MaxStatsEntries of each (the busiest), and fewer if the reply would
	// not otherwise fit in the broker's payload limit; the totals cover
	// everything.
	TopicsOmitted        int `json:"topics_omitted,omitempty"`
	SubscriptionsOmitted int `json:"subscriptions_omitted,omitempty"`
	ConnectionsOmitted   int `json:"connections_omitted,omitempty"`
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
	// Handshaking is the connections accepted that have not completed
	// their handshake (not listed in Connections).
	Handshaking int `json:"handshaking"`
	// RefusedPreAuth and RefusedConns count connections refused at the
	// MaxPreAuth and MaxConns limits.
	RefusedPreAuth uint64 `json:"refused_preauth"`
	RefusedConns   uint64 `json:"refused_conns"`
	// AuthFailures counts refused credentials; AuthThrottled, the part of
	// them refused unchecked because their source failed too often.
	AuthFailures  uint64 `json:"auth_failures"`
	AuthThrottled uint64 `json:"auth_throttled"`
	// Error, in a stats reply, says why the stats could not be sent;
	// nothing else is set then.
	Error string `json:"error,omitempty"`
}

// MaxStatsEntries bounds the topics, the subscriptions and the
// connections listed in a stats reply.
const MaxStatsEntries = 1000

// MaxClientName is the longest client name the server keeps, in bytes. A
// hello's client name is cleaned when it is read: invalid UTF-8 and
// characters that do not print (control characters, for example) become
// '?', and a longer name is cut at a character boundary to end in "…"
// within MaxClientName bytes.
const MaxClientName = 64

// maxStatsString bounds each name in a stats reply (topics, patterns,
// identities, queue groups), in bytes; longer ones are cut as client
// names are.
const maxStatsString = 256

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

// Stats returns a snapshot of the broker's counters and the connections,
// complete (not trimmed). Safe for concurrent use.
func (s *Server) Stats() Stats {
	st := Stats{Broker: s.opts.Broker.Stats(), Connections: []ConnStats{},
		DeniedPublishes: s.deniedPublishes.Load(), DeniedSubscribes: s.deniedSubscribes.Load(),
		RefusedPreAuth: s.refusedPreAuth.Load(), RefusedConns: s.refusedConns.Load(),
		AuthFailures: s.guard.failures.Load(), AuthThrottled: s.guard.throttled.Load(),
		SlowConsumers: s.slowConsumers.Load(), PendingTotal: s.pendingTotal.Load(), MaxPendingTotal: s.opts.MaxPendingTotal}
	s.mu.Lock()
	st.Handshaking = s.handshaking
	s.mu.Unlock()
	s.dropsMu.Lock() // so that a connection ending meanwhile is counted once
	defer s.dropsMu.Unlock()
	st.ConnDropped = s.closedDrops
	for _, c := range s.liveConns() {
		c.mu.Lock()
		cs := c.info
		cs.Pending = c.buf.Pending()
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
	slices.SortFunc(st.Connections, func(a, b ConnStats) int {
		return cmp.Or(cmp.Compare(b.Pending, a.Pending), strings.Compare(a.Session, b.Session))
	})
	return st
}

// serveStats answers requests on topics.BrokerStats until the subscription ends.
func (s *Server) serveStats() (*eventbus.Subscription, error) {
	b := s.opts.Broker
	return b.SubscribeFunc(topics.BrokerStats, eventbus.SubscribeOptions{Name: "server-stats", Overflow: eventbus.OverflowDropNewest, MaxMessages: 64},
		func(d eventbus.Delivery) {
			if d.Reply == "" {
				return
			}
			st := s.Stats()
			body, err := st.encode(b.MaxPayload())
			if err != nil { // the error alone, which a Stats decodes
				body, _ = json.Marshal(struct {
					Error string `json:"error"`
				}{err.Error()})
			}
			if err := b.Publish(context.Background(), eventbus.Message{Topic: d.Reply, Payload: body, Priority: eventbus.PriorityHigh}); err != nil {
				s.log.Warn("could not answer a stats request", "reply", d.Reply, "bytes", len(body), "err", err)
			}
		})
}

// ErrStatsTooLarge is returned by encoding stats that cannot fit the
// payload limit even without any list.
var ErrStatsTooLarge = errors.New("server: stats do not fit in the payload limit")

// encode returns st as JSON of at most limit bytes: it keeps the
// MaxStatsEntries busiest of each list, cuts long names, and then halves
// the longest lists until the reply fits, counting what it leaves out.
func (st *Stats) encode(limit int) ([]byte, error) {
	st.clip()
	st.trim(MaxStatsEntries)
	for {
		body, err := json.Marshal(st)
		if err != nil {
			return nil, fmt.Errorf("server: encode stats: %w", err)
		}
		if len(body) <= limit {
			return body, nil
		}
		longest := max(len(st.Connections), len(st.Broker.Topics), len(st.Broker.Subscriptions))
		if longest == 0 {
			return nil, fmt.Errorf("%w: %d bytes without any list, over the limit of %d: raise the broker's max payload", ErrStatsTooLarge, len(body), limit)
		}
		st.trim(longest / 2)
	}
}

// trim keeps the n busiest topics, subscriptions and connections (those
// with the most pending bytes).
func (st *Stats) trim(n int) {
	if len(st.Broker.Topics) > n {
		slices.SortStableFunc(st.Broker.Topics, func(a, b eventbus.TopicStats) int { return cmp.Compare(b.Published, a.Published) })
		st.TopicsOmitted += len(st.Broker.Topics) - n
		st.Broker.Topics = st.Broker.Topics[:n]
	}
	if len(st.Broker.Subscriptions) > n {
		slices.SortStableFunc(st.Broker.Subscriptions, func(a, b eventbus.SubscriptionStats) int { return cmp.Compare(b.Delivered, a.Delivered) })
		st.SubscriptionsOmitted += len(st.Broker.Subscriptions) - n
		st.Broker.Subscriptions = st.Broker.Subscriptions[:n]
	}
	if len(st.Connections) > n {
		slices.SortStableFunc(st.Connections, func(a, b ConnStats) int { return cmp.Compare(b.Pending, a.Pending) })
		st.ConnectionsOmitted += len(st.Connections) - n
		st.Connections = st.Connections[:n]
	}
}

// clip cuts every name in st to maxStatsString bytes.
func (st *Stats) clip() {
	for i := range st.Broker.Topics {
		t := &st.Broker.Topics[i]
		t.Topic = cut(t.Topic, maxStatsString)
	}
	for i := range st.Broker.Subscriptions {
		s := &st.Broker.Subscriptions[i]
		s.Name, s.Subscriber = cut(s.Name, maxStatsString), cut(s.Subscriber, maxStatsString)
		s.Pattern, s.QueueGroup = cut(s.Pattern, maxStatsString), cut(s.QueueGroup, maxStatsString)
	}
	for i := range st.Connections {
		c := &st.Connections[i]
		c.Identity, c.Client, c.Remote = cut(c.Identity, maxStatsString), cut(c.Client, maxStatsString), cut(c.Remote, maxStatsString)
	}
}

// clientName cleans a client name from a hello (see MaxClientName).
func clientName(b []byte) string {
	var sb strings.Builder
	for _, r := range string(b) { // invalid UTF-8 arrives as utf8.RuneError, which prints as '�': replaced too
		if r == utf8.RuneError || !unicode.IsPrint(r) {
			r = '?'
		}
		if sb.Len()+utf8.RuneLen(r) > MaxClientName+len(ellipsis) {
			break // enough to tell whether a cut is needed
		}
		sb.WriteRune(r)
	}
	return cut(sb.String(), MaxClientName)
}

const ellipsis = "…"

// cut returns s if it has at most n bytes, and otherwise its longest
// prefix ending at a character boundary, followed by "…", that fits in n.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	end := n - len(ellipsis)
	for end > 0 && !utf8.RuneStart(s[end]) {
		end--
	}
	return s[:end] + ellipsis
}
