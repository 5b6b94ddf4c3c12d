package client

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/protocol/wire"
	"github.com/daemoneye/daemoneye/topics"
)

// reply is what a request waits for.
type reply struct {
	msg *Msg
	err error
}

// Request publishes payload to topic as a request and waits for the first
// reply, until ctx ends. It fails at once with an error wrapping
// ErrNoResponders if nobody subscribes to topic, and with ErrDisconnected
// if the connection is lost while it waits (the request may or may not have
// reached the service). Replies travel to the Conn's inbox, subscribed on
// the first Request.
func (c *Conn) Request(ctx context.Context, topic string, payload []byte) (*Msg, error) {
	return c.request(ctx, topic, payload, nil, 0)
}

// RequestMsg is Request for m's Topic, Payload, Priority and Value (as
// PublishMsg sends them); the rest of m is ignored.
func (c *Conn) RequestMsg(ctx context.Context, m *Msg) (*Msg, error) {
	return c.request(ctx, m.Topic, m.Payload, m.Value, m.Priority)
}

func (c *Conn) request(ctx context.Context, topic string, payload []byte, value any, prio eventbus.Priority) (*Msg, error) {
	if err := c.ensureInbox(ctx); err != nil {
		return nil, err
	}
	n := c.nonce.Add(1) | nonceBit
	replyTo := c.inboxName + strconv.FormatUint(n&^nonceBit, 10)
	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.reqMu.Lock()
	c.requests[n] = ch
	c.reqMu.Unlock()
	c.mu.Unlock()
	// Ask for refusals only: a request nobody subscribes to is refused
	// with an error frame that names it; the reply confirms the rest.
	if err := c.publish(topic, replyTo, payload, value, prio, wire.AckErrors, n, true); err != nil {
		c.forgetRequest(n)
		return nil, err
	}
	select {
	case r := <-ch:
		if r.err != nil {
			if _, ok := r.err.(*refusal); ok { // the server's text names the topic
				return nil, r.err
			}
			return nil, fmt.Errorf("%w (request to %q)", r.err, topic)
		}
		return r.msg, nil
	case <-ctx.Done():
		c.forgetRequest(n)
		return nil, fmt.Errorf("client: request to %q: no reply: %w", topic, ctx.Err())
	}
}

func (c *Conn) forgetRequest(n uint64) {
	c.reqMu.Lock()
	delete(c.requests, n)
	c.reqMu.Unlock()
}

// ensureInbox subscribes the Conn's inbox once.
func (c *Conn) ensureInbox(ctx context.Context) error {
	c.inboxMu.Lock()
	defer c.inboxMu.Unlock()
	c.mu.Lock()
	done := c.inbox != nil
	c.mu.Unlock()
	if done {
		return nil
	}
	var b [8]byte
	rand.Read(b[:])
	// Named after the identity the broker gave us, so that a broker
	// that confines identities can bind the inbox to it.
	name := topics.InboxPrefix + wire.InboxName(c.Identity(), hex.EncodeToString(b[:])) + "."
	c.mu.Lock()
	c.inboxName = name // before subscribing: the reader routes on it
	c.mu.Unlock()
	s, err := c.SubscribeWith(ctx, name+"+", SubscribeOptions{Buffer: 1})
	if err != nil {
		return fmt.Errorf("client: subscribe the reply inbox: %w", err)
	}
	c.mu.Lock()
	c.inbox = s
	c.mu.Unlock()
	return nil
}

// isInboxLocked reports whether m arrived on the inbox subscription.
func (c *Conn) isInboxLocked(s *Subscription) bool {
	// Compared without building inboxName+"+", which would allocate per
	// message once the name is longer than a small stack buffer.
	p := s.pattern
	return c.inboxName != "" && len(p) == len(c.inboxName)+1 && p[len(p)-1] == '+' && strings.HasPrefix(p, c.inboxName)
}

// reply hands a message that arrived on the inbox (whose topics start
// with inbox) to its request; a reply nobody waits for any more (the
// request timed out) is dropped. It never blocks.
func (c *Conn) reply(inbox string, m *Msg) {
	id, err := strconv.ParseUint(strings.TrimPrefix(m.Topic, inbox), 10, 63)
	if err != nil {
		return
	}
	n := id | nonceBit
	c.reqMu.Lock()
	ch, ok := c.requests[n]
	delete(c.requests, n)
	c.reqMu.Unlock()
	if ok {
		ch <- reply{msg: m} // capacity 1, and only one reply is taken
	}
}
