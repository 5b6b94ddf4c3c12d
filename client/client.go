package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/wire"
	"github.com/daemoneye/daemoneye/topic"
)

// Errors returned by a Conn.
var (
	// ErrClosed is returned by operations on a closed connection.
	ErrClosed = errors.New("client: connection closed")
	// ErrRefused wraps an error frame the server answered with.
	ErrRefused = errors.New("client: refused by the server")
)

// Options configures Dial. The zero value is usable.
type Options struct {
	// Name identifies the client in the server's logs and stats.
	Name string
	// DialTimeout bounds connecting and the handshake (default 5 s).
	DialTimeout time.Duration
	// WriteTimeout bounds each flush to the server (default 10 s).
	WriteTimeout time.Duration
	// TLSConfig is used for tls:// addresses: the CA that signs the
	// server's certificate and the client's own certificate. Nil means
	// the system roots and no client certificate.
	TLSConfig *tls.Config
	// Token authenticates the client with a shared secret instead of its
	// peer credentials or certificate. Empty means no token.
	Token string
}

// Msg is a message received on a subscription. Payload is the client's own
// copy.
type Msg struct {
	Topic    string
	Payload  []byte
	Seq      uint64
	Priority eventbus.Priority
	Pattern  string // the pattern of the subscription that received it
}

// Conn is a connection to a broker. It is safe for concurrent use.
type Conn struct {
	nc      net.Conn
	opts    Options
	welcome wire.Welcome

	mu       sync.Mutex
	out      []byte
	spare    []byte
	err      error // why the connection ended; nil while it is open
	asyncErr error // refusals of earlier publishes, until AsyncErr takes them
	subs     map[uint32]*Subscription
	waiters  map[uint64]chan error // ping nonce or ack id -> result
	nextSID  uint32
	wake     chan struct{}
	done     chan struct{}

	nonce atomic.Uint64
	wg    sync.WaitGroup
}

// Subscription is one pattern subscribed on a Conn.
type Subscription struct {
	c         *Conn
	sid       uint32
	pattern   string
	ch        chan Msg // closed, under c.mu, when the subscription ends
	dropped   atomic.Uint64
	confirmed bool  // the server accepted it; under c.mu
	err       error // set by the reader when the server refused it; under c.mu
}

// C returns the channel messages arrive on. It is closed when the
// subscription or the connection ends.
func (s *Subscription) C() <-chan Msg { return s.ch }

// Dropped counts messages that arrived while C was full.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Dial connects to the broker at addr: "unix:///path/to/socket" or a plain
// socket path.
func Dial(ctx context.Context, addr string, opts Options) (*Conn, error) {
	if opts.DialTimeout == 0 {
		opts.DialTimeout = 5 * time.Second
	}
	if opts.WriteTimeout == 0 {
		opts.WriteTimeout = 10 * time.Second
	}
	sess, err := dial(ctx, addr, &opts)
	if err != nil {
		return nil, err
	}
	c := &Conn{
		nc: sess.nc, opts: opts, welcome: sess.welcome,
		subs: make(map[uint32]*Subscription), waiters: make(map[uint64]chan error),
		wake: make(chan struct{}, 1), done: make(chan struct{}),
	}
	c.wg.Go(func() { c.readLoop(sess.r) })
	c.wg.Go(c.writeLoop)
	return c, nil
}

// Identity returns who the server authenticated this client as.
func (c *Conn) Identity() string { return string(c.welcome.Identity) }

// enqueue appends a frame and wakes the writer.
func (c *Conn) enqueue(build func([]byte) []byte) error {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	c.out = build(c.out)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// Publish queues a message for the broker. It returns once the message is
// in the connection's buffer; Flush waits until the server has handled it,
// and AsyncErr then reports whether the server refused it.
func (c *Conn) Publish(name string, payload []byte) error {
	if err := topic.Validate(name); err != nil {
		return fmt.Errorf("client: publish: %w", err)
	}
	if len(payload) > int(c.welcome.MaxPayload) {
		return fmt.Errorf("%w: %d bytes; the server accepts at most %d", eventbus.ErrPayloadTooLarge, len(payload), c.welcome.MaxPayload)
	}
	return c.enqueue(func(b []byte) []byte {
		return wire.AppendPublish(b, &wire.Publish{Topic: []byte(name), Payload: payload})
	})
}

// Flush waits until the server has handled everything sent before it.
func (c *Conn) Flush(ctx context.Context) error {
	n := c.nonce.Add(1)
	ch := make(chan error, 1)
	c.mu.Lock()
	c.waiters[n] = ch
	c.mu.Unlock()
	if err := c.enqueue(func(b []byte) []byte { return wire.AppendU64(b, wire.TypePing, n) }); err != nil {
		return err
	}
	select {
	case err := <-ch:
		return err
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.waiters, n)
		c.mu.Unlock()
		return ctx.Err()
	}
}

// Subscribe subscribes to pattern and waits for the server to accept it.
// Messages arrive on the returned subscription's channel, which holds up to
// buffer messages (default 1024); when it is full, messages are dropped and
// counted in Dropped.
func (c *Conn) Subscribe(ctx context.Context, pattern string, buffer int) (*Subscription, error) {
	if buffer <= 0 {
		buffer = 1024
	}
	c.mu.Lock()
	c.nextSID++
	s := &Subscription{c: c, sid: c.nextSID, pattern: pattern, ch: make(chan Msg, buffer)}
	c.subs[s.sid] = s
	c.mu.Unlock()
	err := c.enqueue(func(b []byte) []byte {
		return wire.AppendSubscribe(b, &wire.Subscribe{SID: s.sid, Pattern: []byte(pattern)})
	})
	if err == nil {
		err = c.Flush(ctx)
	}
	c.mu.Lock()
	if err == nil {
		err = s.err
	}
	if err == nil {
		s.confirmed = true
	}
	c.mu.Unlock()
	if err != nil {
		s.Unsubscribe() // in case the server did subscribe (ctx ended first)
		return nil, err
	}
	return s, nil
}

// Unsubscribe ends the subscription: the server stops sending and C is
// closed. Calling it again does nothing.
func (s *Subscription) Unsubscribe() error {
	c := s.c
	c.mu.Lock()
	if c.subs[s.sid] != s {
		c.mu.Unlock()
		return nil
	}
	delete(c.subs, s.sid)
	close(s.ch)
	c.mu.Unlock()
	return c.enqueue(func(b []byte) []byte { return wire.AppendU32(b, wire.TypeUnsubscribe, s.sid) })
}

func (c *Conn) readLoop(r *wire.Reader) {
	var err error
	for {
		var f wire.Frame
		if f, err = r.ReadFrame(); err != nil {
			break
		}
		if err = c.handle(f); err != nil {
			break
		}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		err = ErrClosed
	}
	c.shutdown(err)
}

func (c *Conn) handle(f wire.Frame) error {
	switch f.Type {
	case wire.TypeDeliver:
		d, err := wire.ParseDeliver(f.Flags, f.Body)
		if err != nil {
			return err
		}
		m := Msg{Topic: string(d.Topic), Payload: append([]byte(nil), d.Payload...), Seq: d.Seq,
			Priority: eventbus.Priority(d.Priority)}
		// Send under mu: channels are closed under mu, so a send never
		// meets a closed channel. The send does not block.
		c.mu.Lock()
		if s := c.subs[d.SID]; s != nil { // else unsubscribed meanwhile
			m.Pattern = s.pattern
			select {
			case s.ch <- m:
			default:
				s.dropped.Add(1)
			}
		}
		c.mu.Unlock()
	case wire.TypePong, wire.TypeAck: // nonce 0 is the keepalive's: no waiter
		n, err := wire.ParseU64(f.Type, f.Flags, f.Body)
		if err != nil {
			return err
		}
		c.resolve(n, nil)
	case wire.TypePing:
		n, err := wire.ParseU64(f.Type, f.Flags, f.Body)
		if err != nil {
			return err
		}
		c.enqueue(func(b []byte) []byte { return wire.AppendU64(b, wire.TypePong, n) })
	case wire.TypeError:
		e, err := wire.ParseError(f.Type, f.Flags, f.Body)
		if err != nil {
			return err
		}
		refused := fmt.Errorf("%w: %s", ErrRefused, e.Text)
		c.mu.Lock()
		// An error whose ref names a subscription the server has not yet
		// confirmed refuses it; anything else (a publish the server
		// refused) is kept for AsyncErr.
		if s := c.subs[uint32(e.Ref)]; s != nil && e.Ref != 0 && !s.confirmed {
			s.err = refused
			delete(c.subs, s.sid)
			close(s.ch)
		} else {
			c.asyncErr = errors.Join(c.asyncErr, refused)
		}
		c.mu.Unlock()
	case wire.TypeGoAway:
		e, _ := wire.ParseError(f.Type, f.Flags, f.Body)
		return fmt.Errorf("%w: the server is going away: %s", ErrClosed, e.Text)
	}
	return nil
}

func (c *Conn) resolve(n uint64, err error) {
	c.mu.Lock()
	ch := c.waiters[n]
	delete(c.waiters, n)
	c.mu.Unlock()
	if ch != nil {
		ch <- err
	}
}

func (c *Conn) writeLoop() {
	// Ping at half the server's interval so that a connection that only
	// receives is not closed as idle.
	interval := time.Duration(c.welcome.PingIntervalMs) * time.Millisecond / 2
	if interval <= 0 {
		interval = 15 * time.Second
	}
	keepalive := time.NewTicker(interval)
	defer keepalive.Stop()
	for {
		select {
		case <-c.wake:
		case <-keepalive.C:
			c.enqueue(func(b []byte) []byte { return wire.AppendU64(b, wire.TypePing, 0) })
			continue
		case <-c.done:
			return
		}
		c.mu.Lock()
		batch := c.out
		if len(batch) == 0 {
			c.mu.Unlock()
			continue
		}
		// Swap buffers: publishers append to the spare while this one is
		// written. out and spare must never share an array.
		c.out, c.spare = c.spare[:0], nil
		c.mu.Unlock()
		c.nc.SetWriteDeadline(time.Now().Add(c.opts.WriteTimeout))
		_, err := c.nc.Write(batch)
		c.mu.Lock()
		c.spare = batch[:0]
		c.mu.Unlock()
		if err != nil {
			c.shutdown(fmt.Errorf("client: write: %w", err))
			return
		}
	}
}

// shutdown ends the connection once, failing waiters and closing channels.
func (c *Conn) shutdown(why error) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = why
	for n, ch := range c.waiters {
		ch <- why
		delete(c.waiters, n)
	}
	for sid, s := range c.subs {
		close(s.ch)
		delete(c.subs, sid)
	}
	c.mu.Unlock()
	close(c.done)
	c.nc.Close()
}

// AsyncErr returns, and forgets, the refusals of earlier publishes that
// have arrived from the server (call Flush first to be sure they have).
func (c *Conn) AsyncErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	err := c.asyncErr
	c.asyncErr = nil
	return err
}

// Err returns why the connection ended, or nil while it is open.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Close flushes what is buffered (bounded by the write timeout), closes
// the connection and waits for its goroutines.
func (c *Conn) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.WriteTimeout)
	c.Flush(ctx)
	cancel()
	c.shutdown(ErrClosed)
	c.wg.Wait()
	return nil
}
