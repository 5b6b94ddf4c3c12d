package client

import (
	"bytes"
	"context"
	"errors"

	"github.com/daemoneye/daemoneye/eventbus"
)

// inproc is the in-process transport: the Conn calls the broker directly,
// with nothing serialized. The Conn is one subscriber of the broker, as a
// socket connection is one subscriber of its server's broker.
type inproc struct {
	b     *eventbus.Broker
	sub   *eventbus.Subscriber
	inbox *eventbus.Subscriber // the reply inbox's: a sink, made with the inbox
}

func newInproc(b *eventbus.Broker, name string) *inproc {
	if name == "" {
		name = "inproc"
	}
	return &inproc{b: b, sub: b.NewSubscriber(name)}
}

// publish hands the message to the broker. The payload is copied, so that
// the caller may reuse it at once, as over a socket. Drops at subscribers
// are kept for AsyncErr, as the server reports them; a refusal of the
// message itself is returned.
//
// A socket connection the message goes to is written by its own writer
// goroutine, not from here (with an eventbus.Batch): measured both ways,
// writing from here gained nothing across processes and cost 20 µs per
// call in one process (BenchmarkCall/agent/seq, 39 → 60 µs p50).
func (ip *inproc) publish(c *Conn, name, replyTo string, payload []byte, value any, prio eventbus.Priority) error {
	if err := c.Err(); err != nil {
		return err
	}
	err := ip.b.Publish(c.ctx, eventbus.Message{Topic: name, Reply: replyTo, Priority: prio, Payload: bytes.Clone(payload), Value: value})
	if err == nil {
		c.published.Add(1)
		return nil
	}
	if errors.Is(err, eventbus.ErrQueueFull) || errors.Is(err, eventbus.ErrSlowConsumer) {
		c.published.Add(1) // published; some subscriber missed it
		c.mu.Lock()
		c.noteAsyncLocked(err)
		c.mu.Unlock()
		return nil
	}
	return err
}

func (ip *inproc) subscribe(c *Conn, s *Subscription) error {
	c.mu.Lock()
	inbox := c.inboxName
	c.mu.Unlock()
	if inbox != "" && s.pattern == inbox+"+" {
		return ip.subscribeInbox(c, s, inbox)
	}
	es, err := ip.sub.Subscribe(s.pattern, eventbus.SubscribeOptions{
		QueueGroup: s.opts.QueueGroup, MaxMessages: s.opts.MaxMessages, MaxBytes: s.opts.MaxBytes,
		Overflow: s.opts.Overflow, BlockTimeout: s.opts.BlockTimeout,
	})
	if err != nil {
		return err
	}
	s.es, s.stop, s.pumped = es, make(chan struct{}), make(chan struct{})
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		es.Unsubscribe()
		return err
	}
	c.nextSID++
	s.sid = c.nextSID
	c.subs[s.sid] = s
	c.mu.Unlock()
	c.wg.Go(func() { c.pump(s) })
	return nil
}

// subscribeInbox subscribes the reply inbox as a sink: the broker hands
// each reply to its waiting request from the responder's goroutine, with no
// queue and no pump in between (one goroutine hop less per call).
func (ip *inproc) subscribeInbox(c *Conn, s *Subscription, inbox string) error {
	sink := ip.b.NewSinkSubscriber(ip.sub.Name()+"/inbox", inboxSink{c: c, prefix: inbox})
	es, err := sink.Subscribe(s.pattern, eventbus.SubscribeOptions{})
	if err != nil {
		sink.Close()
		return err
	}
	s.es, s.stop, s.pumped = es, make(chan struct{}), make(chan struct{})
	close(s.pumped) // there is no pump
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		sink.Close()
		return c.err
	}
	ip.inbox = sink // under mu: close reads it
	c.nextSID++
	s.sid = c.nextSID
	c.subs[s.sid] = s
	return nil
}

// inboxSink delivers replies to their requests. Deliver runs on the
// publisher's goroutine under the broker's topic lock: it takes only the
// Conn's reqMu and never blocks.
type inboxSink struct {
	c      *Conn
	prefix string
}

func (k inboxSink) Deliver(_ context.Context, s *eventbus.Subscription, m eventbus.Message) error {
	k.c.reply(k.prefix, &Msg{Topic: m.Topic, Payload: m.Payload, Seq: m.Seq, Priority: m.Priority, Pattern: s.Pattern(), Value: m.Value})
	return nil
}

// pump moves messages from the broker's queue to the subscription's
// channel, waiting for room (the broker's overflow policy applies to a
// consumer that falls behind; with DropWhenFull it drops and counts
// instead, as over a socket), or hands each to an Inline SubscribeFunc's
// fn itself. It closes the channel when the subscription ends.
func (c *Conn) pump(s *Subscription) {
	defer close(s.pumped)
	defer close(s.ch)
	var m Msg // one per subscription: an Inline fn gets a pointer to it
	for {
		d, err := s.es.Next(c.ctx)
		if err != nil {
			c.mu.Lock()
			if c.subs[s.sid] == s { // ended by the broker or by Drain, not by Unsubscribe
				if !s.draining.Load() {
					s.err = err
				}
				delete(c.subs, s.sid)
				s.es.Unsubscribe()
			}
			c.mu.Unlock()
			return
		}
		m = Msg{Topic: d.Topic, Reply: d.Reply, Payload: d.Payload, Seq: d.Seq, Priority: d.Priority, Pattern: d.Pattern, Value: d.Value}
		if s.inline != nil {
			s.inline(&m)
			select {
			case <-s.stop:
				return
			default:
				continue
			}
		}
		if s.opts.DropWhenFull {
			select {
			case s.ch <- m:
			default:
				s.dropped.Add(1)
				c.subDropped.Add(1)
			}
			continue
		}
		select {
		case s.ch <- m:
		case <-s.stop:
			return
		case <-c.ctx.Done():
			return
		}
	}
}

func (ip *inproc) close(c *Conn) error {
	c.shutdown(ErrClosed)
	ip.sub.Close()
	c.mu.Lock()
	inbox := ip.inbox
	c.mu.Unlock()
	if inbox != nil {
		inbox.Close()
	}
	c.wg.Wait()
	return nil
}
