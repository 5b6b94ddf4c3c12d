package client

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/protocol/wire"
)

// SubscribeOptions configures a subscription. The zero value is a
// 1024-message channel and the broker's default queue.
type SubscribeOptions struct {
	// Buffer is the capacity of the subscription's channel, in messages
	// (default 1024).
	Buffer int
	// DropWhenFull chooses what happens to a message that arrives while
	// the channel is full.
	//
	// By default (false) the Conn waits for room: flow control. Over a
	// socket the Conn stops reading the connection, so the broker keeps
	// the messages, up to the server's per-connection MaxPending, and
	// beyond it applies the subscription's Overflow policy, where every
	// loss is counted in the broker's stats. While it waits, nothing else
	// arrives on the Conn either: other subscriptions' messages and
	// replies to requests queue behind. So a consumer must not wait for
	// something that arrives on the same Conn (a Request, Flush, Subscribe
	// or Drain on it) while its own channel may be full: that wait lasts
	// until its context ends. Make such calls on another Conn, or from a
	// goroutine that does not hold up the channel. In process, the
	// subscription's goroutine waits the same way, and the broker's queue
	// and Overflow apply.
	//
	// With DropWhenFull, the message is dropped at once and counted in
	// the subscription's Dropped and the Conn's Stats.Dropped: one slow
	// subscription never holds up the others, but the broker counted the
	// message as delivered and its stats do not show the loss.
	DropWhenFull bool
	// QueueGroup shares the matching messages with the group's other
	// members: each goes to one of them (see eventbus.SubscribeOptions).
	QueueGroup string
	// MaxMessages, MaxBytes, Overflow and BlockTimeout configure the
	// subscription's queue in the broker; zero values mean the broker's
	// defaults (see eventbus.SubscribeOptions). Over a socket the server
	// also bounds each connection's pending bytes.
	MaxMessages  int
	MaxBytes     int64
	Overflow     eventbus.Overflow
	BlockTimeout time.Duration
	// Inline, for SubscribeFunc, calls fn on the goroutine that reads the
	// connection instead of on one of the subscription's own: a message
	// reaches fn with no hand-off between goroutines, which on a small
	// machine saves tens of microseconds per message (see BENCHMARKS.md).
	// But while fn runs, nothing else arrives on the Conn: no message for
	// other subscriptions, no reply to a request. So fn must return
	// quickly, and must not wait for anything that arrives on this Conn (a
	// Request on it would wait out its context). It may publish, but a
	// publish can block it: a reply (Respond) is written from fn's
	// goroutine, and any publish waits, up to WriteTimeout, when the
	// Conn's send buffer is full. Messages do not queue for fn, and Buffer
	// is unused. In process, fn
	// runs on the goroutine that takes the subscription's messages from the
	// broker.
	Inline bool
}

// Subscription is one pattern subscribed on a Conn. It survives reconnects:
// the Conn subscribes again on every new connection.
type Subscription struct {
	c       *Conn
	sid     uint32
	pattern string
	opts    SubscribeOptions
	ch      chan Msg // closed when the subscription ends
	dropped atomic.Uint64
	// Over a socket, with flow control: messages the reader holds while
	// ch is full (under c.mu); sendMu is held by the reader while it
	// waits for room, without c.mu, and taken (under c.mu) before ch is
	// closed; ended is closed when the subscription ends, to wake it.
	backlog []Msg
	sendMu  sync.Mutex
	ended   chan struct{}
	err     error      // why it ended, if the server refused it; under c.mu
	inline  func(*Msg) // SubscribeFunc's fn with Inline: called by the reader, not through ch

	// in process only
	es       *eventbus.Subscription
	stop     chan struct{} // closed by Unsubscribe; the pump closes ch
	pumped   chan struct{} // closed when the pump has ended
	draining atomic.Bool   // Drain is ending it: not an error in process, not restored after a reconnect
}

// C returns the channel messages arrive on. It is closed when the
// subscription or the Conn ends.
func (s *Subscription) C() <-chan Msg { return s.ch }

// Pattern returns the subscription's pattern.
func (s *Subscription) Pattern() string { return s.pattern }

// Dropped counts messages dropped because C was full, which happens only
// with SubscribeOptions.DropWhenFull.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Err returns why the broker ended the subscription (for example it refused
// to restore it after a reconnect), or nil.
func (s *Subscription) Err() error {
	s.c.mu.Lock()
	defer s.c.mu.Unlock()
	return s.err
}

func (s *Subscription) appendSubscribe(b []byte) []byte {
	return wire.AppendSubscribe(b, &wire.Subscribe{
		SID: s.sid, Pattern: []byte(s.pattern), QueueGroup: []byte(s.opts.QueueGroup),
		Overflow: uint8(s.opts.Overflow), MaxMessages: uint32(max(0, s.opts.MaxMessages)),
		MaxBytes: uint64(max(0, s.opts.MaxBytes)), BlockTimeoutMs: uint32(max(0, s.opts.BlockTimeout.Milliseconds())),
	})
}

// Subscribe subscribes to pattern with a channel of buffer messages (0
// means 1024) and waits for the broker to accept it.
func (c *Conn) Subscribe(ctx context.Context, pattern string, buffer int) (*Subscription, error) {
	return c.SubscribeWith(ctx, pattern, SubscribeOptions{Buffer: buffer})
}

// SubscribeFunc subscribes like SubscribeWith and calls fn for each
// message, one at a time, on a goroutine the Conn owns (with
// opts.Inline, the one that reads the connection), until the subscription
// ends. The *Msg is reused for the next message: fn must copy what it
// keeps (the Payload slice itself is the message's own). fn must not call
// Close. A call of fn may still be running when Unsubscribe returns.
func (c *Conn) SubscribeFunc(ctx context.Context, pattern string, opts SubscribeOptions, fn func(*Msg)) (*Subscription, error) {
	if fn == nil {
		return nil, fmt.Errorf("client: SubscribeFunc on %q needs a handler", pattern)
	}
	if opts.Inline {
		return c.subscribe(ctx, pattern, opts, fn)
	}
	s, err := c.subscribe(ctx, pattern, opts, nil)
	if err != nil {
		return nil, err
	}
	c.wg.Go(func() {
		var m Msg // one for the subscription, not one per message
		for m = range s.ch {
			fn(&m)
		}
	})
	return s, nil
}

// SubscribeWith subscribes to pattern and waits until the broker accepts
// it, or ctx ends. While the connection is down it waits for the
// reconnect.
// Inline applies to SubscribeFunc only and is ignored here.
func (c *Conn) SubscribeWith(ctx context.Context, pattern string, opts SubscribeOptions) (*Subscription, error) {
	opts.Inline = false
	return c.subscribe(ctx, pattern, opts, nil)
}

// subscribe makes a subscription whose messages go to inline, if set, or
// else to its channel.
func (c *Conn) subscribe(ctx context.Context, pattern string, opts SubscribeOptions, inline func(*Msg)) (*Subscription, error) {
	if err := c.opts.Policy.ValidatePattern(pattern); err != nil {
		return nil, fmt.Errorf("client: subscribe: %w", err)
	}
	if opts.Buffer <= 0 {
		opts.Buffer = DefaultSubBuffer
	}
	s := &Subscription{c: c, pattern: pattern, opts: opts, inline: inline, ended: make(chan struct{})}
	if inline != nil {
		s.ch = make(chan Msg) // nothing is sent on it; it is closed when the subscription ends
	} else {
		s.ch = make(chan Msg, opts.Buffer)
	}
	if c.ip != nil {
		return s, c.ip.subscribe(c, s)
	}
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return nil, err
	}
	c.nextSID++
	s.sid = c.nextSID
	c.subs[s.sid] = s
	// Under mu, so that a reconnect either restores it or sees it here,
	// never both.
	if c.sess != nil {
		c.buf.Queued(s.appendSubscribe(c.buf.Frames()))
	}
	c.mu.Unlock()
	c.signal()
	err := c.Flush(ctx) // the pong comes after the server handled the subscribe
	if err == nil {
		err = s.Err()
	}
	if err != nil {
		s.Unsubscribe() // in case the server did subscribe (ctx ended first)
		return nil, err
	}
	return s, nil
}

// Unsubscribe ends the subscription: the broker stops sending and C is
// closed. Calling it again does nothing.
func (s *Subscription) Unsubscribe() error {
	c := s.c
	c.mu.Lock()
	if c.subs[s.sid] != s {
		c.mu.Unlock()
		return nil
	}
	c.endSubLocked(s)
	if c.sess != nil {
		c.buf.Queued(wire.AppendU32(c.buf.Frames(), wire.TypeUnsubscribe, s.sid))
	}
	c.mu.Unlock()
	c.signal()
	return nil
}

// Drain ends the subscription gently: the broker stops sending to it at
// once, and what it sent before that still reaches the subscription before
// Drain returns: its channel (a SubscribeFunc's goroutine may still be
// working through it), or an Inline function, which has returned for each
// by then. Then the subscription ends, as with Unsubscribe. If ctx ends first, it ends the
// subscription at once and returns ctx's error. Over a socket it waits for
// the server to confirm (as Flush does), so an Inline function that is
// still running holds it up.
func (s *Subscription) Drain(ctx context.Context) error {
	c := s.c
	c.mu.Lock()
	if c.subs[s.sid] != s || s.draining.Load() {
		c.mu.Unlock()
		return nil
	}
	s.draining.Store(true)
	if s.es != nil { // in process: the pump forwards what is queued, then ends
		c.mu.Unlock()
		s.es.Drain()
		select {
		case <-s.pumped:
			return nil
		case <-ctx.Done():
			s.Unsubscribe()
			return fmt.Errorf("client: drain %q: %w", s.pattern, ctx.Err())
		}
	}
	if c.sess != nil {
		c.buf.Queued(wire.AppendU32(c.buf.Frames(), wire.TypeUnsubscribe, s.sid))
	}
	c.mu.Unlock()
	c.signal()
	// Deliveries the server sent before it handled the unsubscribe arrive
	// before the pong.
	err := c.Flush(ctx)
	c.mu.Lock()
	c.endSubLocked(s)
	c.mu.Unlock()
	if err != nil {
		return fmt.Errorf("client: drain %q: %w", s.pattern, err)
	}
	return nil
}

// endSubLocked removes s from the Conn and ends its channel: at once over
// a socket (the reader sends under mu), by its pump in process.
func (c *Conn) endSubLocked(s *Subscription) {
	if c.subs[s.sid] != s {
		return
	}
	delete(c.subs, s.sid)
	if s.es != nil {
		close(s.stop)
		s.es.Unsubscribe()
		return
	}
	// The reader may be waiting for room in ch, with sendMu held and
	// without mu: wake it, and close ch once it has let go. It never
	// takes mu while it holds sendMu.
	close(s.ended)
	s.sendMu.Lock()
	close(s.ch)
	s.backlog = nil
	s.sendMu.Unlock()
}

func (c *Conn) sortedSubsLocked() []*Subscription {
	subs := make([]*Subscription, 0, len(c.subs))
	for _, s := range c.subs {
		subs = append(subs, s)
	}
	sort.Slice(subs, func(i, j int) bool { return subs[i].sid < subs[j].sid })
	return subs
}

// Drain ends the Conn gently: it unsubscribes everything, waits (bounded
// by ctx) until the broker has handled that, so that every message already
// on its way is in the subscriptions' channels, then closes the channels,
// sends what is buffered and closes the Conn. Consumers read the channels
// to their end; SubscribeFunc handlers finish the messages they have.
func (c *Conn) Drain(ctx context.Context) error {
	if c.ip != nil {
		c.mu.Lock()
		subs := c.sortedSubsLocked()
		c.mu.Unlock()
		for _, s := range subs {
			s.draining.Store(true)
			s.es.Drain() // the pump forwards what is queued, then ends
		}
		for _, s := range subs {
			select {
			case <-s.pumped:
			case <-ctx.Done():
				c.Close()
				return fmt.Errorf("client: drain: %w", ctx.Err())
			}
		}
		return c.Close()
	}
	{
		c.mu.Lock()
		if c.sess != nil {
			for _, s := range c.sortedSubsLocked() {
				c.buf.Queued(wire.AppendU32(c.buf.Frames(), wire.TypeUnsubscribe, s.sid))
			}
		}
		c.mu.Unlock()
		c.signal()
	}
	err := c.Flush(ctx) // deliveries sent before the unsubscribes arrive before the pong
	c.mu.Lock()
	for _, s := range c.sortedSubsLocked() {
		c.endSubLocked(s)
	}
	c.mu.Unlock()
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	return err
}
