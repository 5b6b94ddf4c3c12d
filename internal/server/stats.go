package server

import (
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
}

// ConnStats describes one client connection.
type ConnStats struct {
	Session  string `json:"session"`
	Identity string `json:"identity"`
	Client   string `json:"client"`
	Remote   string `json:"remote"`
	// Pending is the bytes waiting to be written to the client now.
	Pending int `json:"pending"`
}

// Stats returns a snapshot of the broker's counters and the connections.
// Safe for concurrent use.
func (s *Server) Stats() Stats {
	st := Stats{Broker: s.opts.Broker.Stats(), Connections: []ConnStats{}}
	for _, c := range s.liveConns() {
		c.mu.Lock()
		cs := c.info
		cs.Pending = len(c.out) + c.writing
		ready := c.sub != nil
		c.mu.Unlock()
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
			body, err := json.Marshal(s.Stats())
			if err != nil {
				return // cannot happen: Stats has no unencodable fields
			}
			b.Publish(context.Background(), eventbus.Message{Topic: d.Reply, Payload: body, Priority: eventbus.PriorityHigh})
		})
}
