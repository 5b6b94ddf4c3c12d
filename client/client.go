package client

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/protocol/sendbuf"
	"github.com/daemoneye/daemoneye/internal/protocol/wire"
	"github.com/daemoneye/daemoneye/topic"
)

// Errors returned by a Conn. Test for them with errors.Is.
var (
	// ErrClosed is returned by operations on a closed connection.
	ErrClosed = errors.New("client: connection closed")
	// ErrRefused is matched by an error frame the server answered with:
	// the error reads "client: refused by the server: " and the
	// server's text, said once. A request nobody subscribes to is
	// ErrNoResponders instead.
	ErrRefused = errors.New("client: refused by the server")
	// ErrDisconnected is returned to a Flush, Request or acknowledged
	// publish that was waiting when the connection to the broker was
	// lost: what it waited for may or may not have happened. The Conn
	// reconnects by itself; retry if the operation is idempotent.
	ErrDisconnected = errors.New("client: disconnected from the broker")
	// ErrBufferFull is returned by Publish when Options.MaxBuffered bytes
	// are already waiting to be sent: while disconnected at once, while
	// connected after waiting WriteTimeout for the writer. The message was
	// not sent.
	ErrBufferFull = errors.New("client: send buffer full")
	// ErrNoResponders is returned by Request when no subscription matches
	// the request's topic. It is eventbus.ErrNoResponders, so one test
	// serves both in-process and socket connections.
	ErrNoResponders = eventbus.ErrNoResponders
	// ErrNoBroker is returned by Connect when it is given a nil broker.
	ErrNoBroker = errors.New("client: no broker to connect to in this process")
)

// Defaults for Options.
const (
	DefaultDialTimeout      = 5 * time.Second
	DefaultWriteTimeout     = 10 * time.Second
	DefaultMaxBuffered      = 8 << 20 // bytes
	DefaultReconnectWait    = 50 * time.Millisecond
	DefaultMaxReconnectWait = 2 * time.Second
	DefaultSubBuffer        = 1024 // messages
)

// Options configures Dial and Connect. The zero value is usable: it
// reconnects forever with backoff and buffers up to 8 MiB while
// disconnected. Connect uses only Name and Policy; the rest concern a
// connection over a socket.
type Options struct {
	// Name identifies the client in the server's logs and stats.
	Name string
	// DialTimeout bounds connecting and the handshake (default 5 s), for
	// the first connection and every reconnect attempt.
	DialTimeout time.Duration
	// WriteTimeout bounds each flush to the server (default 10 s), and how
	// long Publish waits for room in a full buffer while connected.
	WriteTimeout time.Duration
	// TLSConfig is used for tls:// addresses: the CA that signs the
	// server's certificate and the client's own certificate. Nil means
	// the system roots and no client certificate.
	TLSConfig *tls.Config
	// Token authenticates the client with a shared secret instead of its
	// peer credentials: accepted over the UNIX socket and tcp:// (loopback
	// only); refused over tls://, where the certificate identifies the
	// client. Empty means no token.
	Token string
	// ServerUID is the user a broker on a UNIX socket must run as, besides
	// root, which is always accepted: before anything is sent, the Conn
	// reads the listening process's credentials (SO_PEERCRED) and refuses
	// any other with ErrUntrustedBroker. Zero means this process's own
	// uid. Unused for other transports (TLS verifies the broker's
	// certificate instead).
	ServerUID uint32
	// Policy is the topic policy the Conn checks topics and patterns
	// against before it sends a publish, request or subscription (the
	// broker checks them again with its own). Nil means the default
	// policy for Dial, and the broker's own policy for Connect. Set it
	// when Dial reaches a broker with a policy of its own (other
	// domains, limits), so that the Conn accepts the same topics as the
	// broker. It must not be modified once the Conn uses it.
	Policy *topic.Policy

	// MaxBuffered bounds the bytes of frames waiting to be sent (default
	// 8 MiB). While the connection is down, messages published meanwhile
	// wait here and are sent after the reconnect; beyond the bound,
	// Publish returns ErrBufferFull and counts the message in
	// Stats.BufferFull.
	MaxBuffered int
	// NoReconnect makes a lost connection final: the Conn closes with the
	// error, as Err reports.
	NoReconnect bool
	// ReconnectWait is the first wait before reconnecting (default 50 ms);
	// it doubles with each failed attempt up to MaxReconnectWait (default
	// 2 s). Each wait is jittered by ±50% so that many clients of a
	// restarted broker do not reconnect in lockstep.
	ReconnectWait    time.Duration
	MaxReconnectWait time.Duration
	// OnDisconnect, if set, is called when the connection is lost, with
	// why; OnReconnect when it is back and the broker has every
	// subscription again, before anything buffered is sent. They run on the Conn's own goroutine and must return
	// quickly.
	OnDisconnect func(err error)
	OnReconnect  func()
}

func (o *Options) normalize() {
	o.DialTimeout = or(o.DialTimeout, DefaultDialTimeout)
	o.WriteTimeout = or(o.WriteTimeout, DefaultWriteTimeout)
	o.MaxBuffered = or(o.MaxBuffered, DefaultMaxBuffered)
	o.ReconnectWait = or(o.ReconnectWait, DefaultReconnectWait)
	o.MaxReconnectWait = or(o.MaxReconnectWait, DefaultMaxReconnectWait)
	if o.Policy == nil {
		o.Policy = &defaultPolicy
	}
}

// defaultPolicy is the Policy of a Conn whose Options name none: the
// zero topic.Policy, the default.
var defaultPolicy topic.Policy

func or[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

// Msg is a message received on a subscription, or the reply to a request.
// Over a socket, Payload is the client's own copy; in process it is shared
// with the other subscribers and must not be modified.
type Msg struct {
	Topic    string
	Reply    string // the requester's inbox when the message is a request; see Conn.Respond
	Payload  []byte
	Seq      uint64
	Priority eventbus.Priority
	Pattern  string // the pattern of the subscription that received it
	// Value is the decoded form of Payload when the sender was in this
	// process and provided one (see eventbus.Message.Value); nil over a
	// socket. In process, Payload is nil when Value stands in for it (as
	// envelope.Lazy does). Shared with the sender and other subscribers:
	// do not modify.
	Value any
}

// Stats are a Conn's counters.
type Stats struct {
	Connected bool `json:"connected"`
	// Published counts messages accepted by Publish.
	Published uint64 `json:"published"`
	// Buffered is the bytes waiting to be sent now.
	Buffered int `json:"buffered"`
	// BufferFull counts messages Publish refused with ErrBufferFull.
	BufferFull uint64 `json:"buffer_full"`
	// LostInFlight counts messages that were being written when the
	// connection broke: the broker may or may not have received them.
	LostInFlight uint64 `json:"lost_in_flight"`
	// Dropped counts messages that subscriptions with DropWhenFull
	// dropped because their channel was full: the broker counted them as
	// delivered. The sum of the subscriptions' Dropped.
	Dropped uint64 `json:"dropped"`
	// Disconnects and Reconnects count lost connections and restored ones.
	Disconnects uint64 `json:"disconnects"`
	Reconnects  uint64 `json:"reconnects"`
}

// Conn is a connection to a broker: over a UNIX socket, TLS, or in process.
// Over a socket it reconnects by itself when the connection is lost,
// restoring its subscriptions and sending what was published meanwhile.
// It is safe for concurrent use.
type Conn struct {
	addr string
	opts Options
	ip   *inproc // set by Connect; then the fields below are unused

	mu        sync.Mutex
	sess      *session // the live session; nil while disconnected
	welcome   wire.Welcome
	buf       *sendbuf.Buffer // frames waiting for the writer; under mu
	outMsgs   int             // publish frames in buf
	err       error           // why the Conn ended; nil while open
	asyncErrs []error         // refusals of earlier publishes, until AsyncErr takes them
	asyncMore int             // refusals beyond maxAsyncErrs
	subs      map[uint32]*Subscription
	waiters   map[uint64]chan error // ping nonce or ack id -> result
	requests  map[uint64]chan reply // request id -> its reply; guarded by reqMu
	// reqMu guards requests. It is taken after mu, never before, and
	// alone by the in-process inbox, which delivers from the broker's
	// publish path where mu must not be taken.
	reqMu     sync.Mutex
	nextSID   uint32
	inbox     *Subscription // receives replies to requests; made by the first Request
	inboxName string        // inbox topic prefix, "control.inbox.<random>."
	inboxMu   sync.Mutex    // serializes making the inbox
	writeMu   sync.Mutex    // held while writing to the session's socket

	topics    wire.Interner   // the reading goroutine's own
	inlineMsg Msg             // the reading goroutine's: what it passes to an Inline SubscribeFunc
	ctx       context.Context // cancelled when the Conn ends: stops a reconnect in progress
	cancel    context.CancelFunc

	nonce                                                    atomic.Uint64
	published, bufferFull, lost, disconnects, reconnectCount atomic.Uint64
	subDropped                                               atomic.Uint64 // DropWhenFull subscriptions' drops
	wg                                                       sync.WaitGroup
}

// maxInFlight bounds the bytes buffered while connected: a publisher ahead
// of the socket by this much waits for the writer. Small batches stay in
// the CPU's cache; the writer and the publishers still overlap.
var maxInFlight = 256 << 10

// maxInlineBytes bounds what a caller writes itself (see flushInline).
const maxInlineBytes = 16 << 10

// goAwayNonce is the ping sent after a GoAway: its pong ends the session.
// Nonces from the Conn's counter never reach it.
const goAwayNonce = nonceBit | 1<<62

// errGoneAway ends a session whose GoAway was followed by the pong to
// goAwayNonce: everything the broker had queued has arrived.
var errGoneAway = errors.New("client: the broker went away")

// goAwayGrace bounds how long a session that received GoAway keeps
// reading, waiting for the broker's last deliveries.
const goAwayGrace = 2 * time.Second

// nonceBit marks ping nonces, ack ids and request ids, so that an error
// frame's ref never mistakes one for a subscription id (a u32).
const nonceBit = 1 << 63

// Dial connects to the broker at addr: "unix:///path/to/socket" or a plain
// socket path, "tls://host:port", or "tcp://127.0.0.1:port" (loopback
// only, token auth). A broker in this process is reached with Connect
// instead. Dial fails if the first connection fails; after that, the Conn
// reconnects by itself (see Options).
func Dial(ctx context.Context, addr string, opts Options) (*Conn, error) {
	c := newConn(addr, opts)
	sess, err := dial(ctx, addr, &c.opts)
	if err != nil {
		return nil, err
	}
	c.sess, c.welcome = sess, sess.welcome
	c.wg.Go(func() { c.run(sess) })
	return c, nil
}

// Connect returns a Conn to b, a broker in this process: the same API as
// over a socket, with nothing serialized or copied on the way in but the
// payload. Its calls go straight to the broker, so there is nothing to
// reconnect and nothing buffered: of opts, only Name (the subscriber's
// name in the broker's stats) and Policy (nil: b's own) apply. It fails
// with ErrNoBroker if b is nil. The Conn is not subject to a server's
// Authorizer. Close it when done; closing b ends its subscriptions.
func Connect(b *eventbus.Broker, opts Options) (*Conn, error) {
	if b == nil {
		return nil, fmt.Errorf("%w: pass the *eventbus.Broker from eventbus.New; for a broker in another process use Dial", ErrNoBroker)
	}
	if opts.Policy == nil {
		opts.Policy = b.Policy()
	}
	c := newConn("", opts)
	c.ip = newInproc(b, opts.Name)
	return c, nil
}

// newConn returns a Conn for addr that has no session yet.
func newConn(addr string, opts Options) *Conn {
	opts.normalize()
	c := &Conn{
		addr: addr, opts: opts,
		subs: make(map[uint32]*Subscription), waiters: make(map[uint64]chan error),
		requests: make(map[uint64]chan reply),
	}
	// Keep a batch's array for the next up to twice MaxBuffered, whatever
	// the size: regrowing one of several MiB on every batch costs more
	// than the write.
	c.buf = sendbuf.New(sendbuf.Limits{MaxSpare: 2 * c.opts.MaxBuffered})
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// Identity returns who the server authenticated this client as, in the
// latest session.
func (c *Conn) Identity() string {
	if c.ip != nil {
		return "inproc"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return string(c.welcome.Identity)
}

// Policy returns the topic policy the Conn checks topics and patterns with:
// Options.Policy, or the broker's (Connect) or the default one (Dial) when
// that is nil. It must not be modified.
func (c *Conn) Policy() *topic.Policy { return c.opts.Policy }

// MaxPayload returns the largest payload the broker accepts, in bytes.
func (c *Conn) MaxPayload() int {
	if c.ip != nil {
		return c.ip.b.MaxPayload()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return int(c.welcome.MaxPayload)
}

// enqueue appends a control frame and wakes the writer. While disconnected
// it does nothing: subscriptions are restored and pings answered after the
// reconnect, and a waiter for such a frame gets ErrDisconnected.
func (c *Conn) enqueue(build func([]byte) []byte) error {
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	if c.sess == nil {
		c.mu.Unlock()
		return nil
	}
	c.buf.Queued(build(c.buf.Frames()))
	c.mu.Unlock()
	c.signal()
	return nil
}

func (c *Conn) signal() { c.buf.Signal() }

// Publish sends a message to the broker. It returns once the message is
// in the connection's buffer, so the caller may reuse payload at once;
// Flush waits until the server has handled it, and AsyncErr then reports
// whether the server refused it. While the connection is down the message
// waits in the buffer (see Options.MaxBuffered).
func (c *Conn) Publish(name string, payload []byte) error {
	return c.publish(name, "", payload, nil, 0, wire.AckNone, 0, false)
}

// PublishMsg sends m (Topic, Reply, Payload, Priority and Value; the rest
// is ignored) like Publish. In process, Value travels as is; over a socket
// only Payload does, and a Msg with a Value and no Payload is sent with
// the Value's encoding (it must implement encoding.BinaryAppender, as
// envelope.Lazy does).
func (c *Conn) PublishMsg(m *Msg) error {
	return c.publish(m.Topic, m.Reply, m.Payload, m.Value, m.Priority, wire.AckNone, 0, false)
}

// Respond publishes payload to the reply topic of request m. It fails if m
// is not a request.
func (c *Conn) Respond(m *Msg, payload []byte) error {
	if m.Reply == "" {
		return fmt.Errorf("client: respond: the message on %q is not a request (it has no reply topic)", m.Topic)
	}
	// A reply is awaited: write it from here, not via the writer goroutine.
	return c.publish(m.Reply, "", payload, nil, 0, wire.AckNone, 0, true)
}

// RespondMsg publishes reply (its Payload, Priority and Value, as
// PublishMsg does; Topic and Reply are ignored) to the reply topic of m, a request
// received on a subscription.
func (c *Conn) RespondMsg(m, reply *Msg) error {
	if m.Reply == "" {
		return fmt.Errorf("client: respond: the message on %q is not a request (it has no reply topic)", m.Topic)
	}
	return c.publish(m.Reply, "", reply.Payload, reply.Value, reply.Priority, wire.AckNone, 0, true)
}

// publish queues a publish frame. inline writes it from the calling
// goroutine when no write is in progress (for requests and replies, whose
// latency matters more than batching).
// value travels only in process (eventbus.Message.Value).
func (c *Conn) publish(name, replyTo string, payload []byte, value any, prio eventbus.Priority, ack wire.AckMode, ackID uint64, inline bool) error {
	wasEmpty, connected, err := c.queuePublish(name, replyTo, payload, value, prio, ack, ackID)
	switch {
	case err != nil:
		return err
	case inline && connected:
		c.flushInline()
	case wasEmpty && connected:
		c.signal()
	}
	return nil
}

// PublishMsgs publishes each of ms in order, as PublishMsg does, and then
// writes them in one write: from the calling goroutine when no write is in
// progress and what is buffered is at most 16 KiB, else by waking the
// connection's writer once. A caller that has several messages at once
// (the events of one read from the kernel) so saves a wakeup of the
// writer per message, and often the wakeup altogether. It returns how many
// were published; on an error, the messages before ms[n] were published,
// ms[n] failed with err, and the rest were not tried. Safe for concurrent
// use, like PublishMsg.
func (c *Conn) PublishMsgs(ms []*Msg) (n int, err error) {
	wake := false
	defer func() {
		if wake {
			c.flushInline()
		}
	}()
	for i, m := range ms {
		wasEmpty, connected, err := c.queuePublish(m.Topic, m.Reply, m.Payload, m.Value, m.Priority, wire.AckNone, 0)
		if err != nil {
			return i, err
		}
		wake = wake || wasEmpty && connected
	}
	return len(ms), nil
}

// queuePublish puts a publish frame in the buffer, waiting for room while
// connected (up to WriteTimeout), and says whether the buffer was empty
// before and the connection is up: then the writer must be woken. In
// process it delivers the message at once and returns false, false.
func (c *Conn) queuePublish(name, replyTo string, payload []byte, value any, prio eventbus.Priority, ack wire.AckMode, ackID uint64) (wasEmpty, connected bool, err error) {
	if err := c.opts.Policy.Validate(name); err != nil {
		return false, false, fmt.Errorf("client: publish: %w", err)
	}
	if prio > eventbus.PriorityCritical {
		return false, false, fmt.Errorf("client: publish: %w: %d", eventbus.ErrInvalidPriority, prio)
	}
	if c.ip != nil {
		return false, false, c.ip.publish(c, name, replyTo, payload, value, prio)
	}
	if payload == nil && value != nil {
		// Over a socket a value must be encoded (eventbus.Message.Value).
		enc, err := wire.EncodeValue(value)
		if err != nil {
			return false, false, fmt.Errorf("client: publish to %q: %w", name, err)
		}
		defer enc.Release()
		payload = enc.Bytes() // the frame copies it before publish returns
	}
	if max := c.MaxPayload(); len(payload) > max {
		return false, false, fmt.Errorf("%w: %d bytes to %q; the server accepts at most %d", eventbus.ErrPayloadTooLarge, len(payload), name, max)
	}
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	c.mu.Lock()
	for {
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			return false, false, err
		}
		limit := c.opts.MaxBuffered
		if c.sess != nil {
			limit = min(limit, maxInFlight)
		}
		if c.buf.Pending() < limit {
			break
		}
		if c.sess == nil {
			waiting := c.buf.Len()
			c.mu.Unlock()
			c.bufferFull.Add(1)
			return false, false, fmt.Errorf("%w: %d bytes are waiting for the broker to come back (MaxBuffered); message to %q not sent",
				ErrBufferFull, waiting, name)
		}
		// Connected but the writer is behind: wait for it to take a batch
		// (woken here, as PublishMsgs wakes it only at its end).
		room := c.buf.Room()
		c.mu.Unlock()
		c.signal()
		if timer == nil {
			timer = time.NewTimer(c.opts.WriteTimeout)
		}
		select {
		case <-room:
		case <-timer.C:
			c.bufferFull.Add(1)
			return false, false, fmt.Errorf("%w: the broker did not take %d buffered bytes within %v; message to %q not sent",
				ErrBufferFull, c.opts.MaxBuffered, c.opts.WriteTimeout, name)
		}
		c.mu.Lock()
	}
	wasEmpty = c.buf.Queued(wire.AppendPublishMsg(c.buf.Frames(), uint8(prio), ack, ackID, name, replyTo, payload))
	c.outMsgs++
	connected = c.sess != nil
	c.mu.Unlock()
	c.published.Add(1)
	return wasEmpty, connected, nil
}

// Flush waits until the server has handled everything sent before it. If
// the connection is down it waits for the reconnect (bounded by ctx); if
// the connection is lost while it waits, it returns ErrDisconnected.
func (c *Conn) Flush(ctx context.Context) error {
	if c.ip != nil {
		return c.Err() // in process, Publish has delivered when it returns
	}
	n := c.nonce.Add(1) | nonceBit
	ch := make(chan error, 1)
	c.mu.Lock()
	if c.err != nil {
		err := c.err
		c.mu.Unlock()
		return err
	}
	c.waiters[n] = ch
	// While disconnected the ping still goes into the buffer: the reconnect
	// keeps publish frames and pings (see keepAfterLoss).
	c.buf.Queued(wire.AppendU64(c.buf.Frames(), wire.TypePing, n))
	connected := c.sess != nil
	c.mu.Unlock()
	if connected {
		c.flushInline()
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

// run is the Conn's own goroutine: it writes batches for the live
// session, and when the session fails, reconnects.
func (c *Conn) run(sess *session) {
	for {
		err := c.serve(sess)
		if c.isDone() {
			return
		}
		c.lose(err)
		if c.opts.NoReconnect {
			c.shutdown(disconnected(err))
			return
		}
		if sess = c.reconnect(); sess == nil {
			return
		}
	}
}

func (c *Conn) isDone() bool { return c.ctx.Err() != nil }

// serve runs one session: a reader goroutine, and batched writes here,
// until the session fails or the Conn closes.
func (c *Conn) serve(sess *session) error {
	readErr := make(chan error, 1)
	c.wg.Go(func() { readErr <- c.readLoop(sess) })
	// Ping at half the server's interval so that a connection that only
	// receives is not closed as idle.
	interval := time.Duration(sess.welcome.PingIntervalMs) * time.Millisecond / 2
	if interval <= 0 {
		interval = 15 * time.Second
	}
	keepalive := time.NewTicker(interval)
	defer keepalive.Stop()
	stop := func(err error) error {
		close(sess.done) // a reader waiting for room in a subscription's channel gives up
		sess.nc.Close()
		rerr := <-readErr
		if err == nil {
			err = rerr
		}
		return err
	}
	for {
		select {
		case <-c.buf.Wake():
		case <-keepalive.C:
			c.enqueue(func(b []byte) []byte { return wire.AppendU64(b, wire.TypePing, 0) })
			continue
		case err := <-readErr:
			sess.nc.Close()
			return err
		case <-c.ctx.Done():
			return stop(nil)
		}
		c.writeMu.Lock()
		err := c.flush(sess)
		c.writeMu.Unlock()
		if err != nil {
			return stop(err)
		}
	}
}

// flushInline writes what is buffered from the calling goroutine, if no
// write is in progress: a request or a reply then reaches the socket
// without waiting for the writer goroutine to be scheduled. If a write is
// in progress, the writer picks the frames up after it.
func (c *Conn) flushInline() {
	if !c.writeMu.TryLock() {
		c.signal() // the writer is busy: it takes the frames after this write
		return
	}
	c.mu.Lock()
	sess := c.sess
	bulk := c.buf.Len() > maxInlineBytes
	c.mu.Unlock()
	if bulk { // a bulk batch is the writer's job: the caller should not wait on it
		c.writeMu.Unlock()
		c.signal()
		return
	}
	if sess != nil {
		if err := c.flush(sess); err != nil {
			sess.nc.Close() // the reader fails, and the Conn reconnects
		}
	}
	c.writeMu.Unlock()
}

// flush writes what is buffered in one write. The caller holds writeMu.
func (c *Conn) flush(sess *session) error {
	c.mu.Lock()
	// Nothing, a session that is gone, or one whose broker is going
	// away: the frames wait for the next.
	if c.buf.Len() == 0 || c.sess != sess || sess.goAway.Load() != nil {
		c.mu.Unlock()
		return nil
	}
	// Publishers append to the buffer's other array while this one is
	// written.
	batch, _ := c.buf.Take() // the client leaves no head: Unsent is the server's
	msgs := c.outMsgs
	c.outMsgs = 0
	c.mu.Unlock()
	// Each write is bounded by between half and all of WriteTimeout: the
	// deadline is pushed out only when less than half is left.
	if now := time.Now(); sess.writeArmed.Sub(now) < c.opts.WriteTimeout/2 {
		sess.writeArmed = now.Add(c.opts.WriteTimeout)
		sess.nc.SetWriteDeadline(sess.writeArmed)
	}
	n, err := sess.nc.Write(batch)
	c.mu.Lock()
	if err != nil && n == 0 {
		// Nothing left: the frames go back to the front of the buffer, and
		// lose keeps the publishes among them for the next session.
		c.buf.Requeue(batch)
		c.outMsgs += msgs
		msgs = 0
	}
	// Publishers waiting for room are woken (the batch no longer counts),
	// and the batch's array is kept for the next.
	c.buf.Done(batch)
	c.mu.Unlock()
	if err != nil {
		c.lost.Add(uint64(msgs))
		return fmt.Errorf("write: %w", err) // disconnected says the rest
	}
	return nil
}

func (c *Conn) readLoop(sess *session) error {
	c.sendBacklogs(sess.done)
	var err error
	for {
		var f wire.Frame
		if f, err = sess.r.ReadFrame(); err != nil {
			break
		}
		if err = c.handle(f, sess); err != nil {
			break
		}
	}
	closed := errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed)
	why, away := sess.goAway.Load().(string)
	switch {
	case away && err == errGoneAway:
		err = fmt.Errorf("%w: the broker is going away: %s", ErrDisconnected, why)
	case away && closed:
		err = fmt.Errorf("%w: the broker went away (%s) before confirming that it had sent everything", ErrDisconnected, why)
	case away:
		err = fmt.Errorf("%w: the broker is going away (%s), and did not confirm in %v that it had sent everything: %w", ErrDisconnected, why, goAwayGrace, err)
	case sess.closing != "" && closed:
		err = fmt.Errorf("%w: the broker closed the connection: %s", ErrDisconnected, sess.closing)
	case closed:
		err = fmt.Errorf("%w: the broker closed the connection", ErrDisconnected)
	}
	return err
}

// handle acts on a frame the server sent in a session; done is closed
// when the session is being torn down.
func (c *Conn) handle(f wire.Frame, sess *session) error {
	switch f.Type {
	case wire.TypeDeliver:
		d, err := wire.ParseDeliver(f.Flags, f.Body)
		if err != nil {
			return err
		}
		c.deliver(&d, sess.done)
	case wire.TypePong, wire.TypeAck: // nonce 0 is the keepalive's: no waiter
		n, err := wire.ParseU64(f.Type, f.Flags, f.Body)
		if err != nil {
			return err
		}
		if n == goAwayNonce && f.Type == wire.TypePong {
			return errGoneAway
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
		if e.Ref == 0 && closesConn(e.Code) {
			sess.closing = string(e.Text) // why the broker is about to close the connection
		}
		c.refused(&e)
	case wire.TypeGoAway:
		// The broker is shutting down. What it already sent still
		// arrives: keep reading until the pong to a ping sent now, which
		// follows every delivery queued before it, or for goAwayGrace.
		// Publishes stay buffered for the next broker rather than going
		// to one whose subscribers are leaving.
		e, _ := wire.ParseError(f.Type, f.Flags, f.Body)
		if sess.goAway.Load() != nil {
			return nil
		}
		sess.goAway.Store(string(e.Text))
		sess.nc.SetReadDeadline(time.Now().Add(goAwayGrace))
		c.wg.Go(func() {
			c.writeMu.Lock()
			defer c.writeMu.Unlock()
			sess.nc.SetWriteDeadline(time.Now().Add(goAwayGrace))
			sess.nc.Write(wire.AppendU64(nil, wire.TypePing, goAwayNonce))
		})
	}
	return nil
}

// deliver hands a message to its subscription, or to its request. For a
// subscription whose channel is full it waits for room (flow control: the
// Conn stops reading, so the server's pending limit and the
// subscription's overflow policy apply in the broker, where a loss is
// counted), or with DropWhenFull drops and counts the message. done is
// closed when the session ends; a message waiting for room then is kept
// for the subscription, ahead of the next.
func (c *Conn) deliver(d *wire.Deliver, done <-chan struct{}) {
	c.mu.Lock()
	s := c.subs[d.SID]
	if s == nil { // unsubscribed meanwhile
		c.mu.Unlock()
		return
	}
	if c.isInboxLocked(s) { // a reply: its topic is unique, not worth interning
		c.reply(c.inboxName, &Msg{Topic: string(d.Topic), Payload: append([]byte(nil), d.Payload...), Seq: d.Seq,
			Priority: eventbus.Priority(d.Priority), Pattern: s.pattern})
		c.mu.Unlock()
		return
	}
	m := Msg{Topic: c.topics.String(d.Topic), Payload: append([]byte(nil), d.Payload...), Seq: d.Seq,
		Priority: eventbus.Priority(d.Priority), Pattern: s.pattern}
	if d.Reply != nil {
		m.Reply = string(d.Reply)
	}
	if s.inline != nil {
		c.inlineMsg = m
		c.mu.Unlock()
		s.inline(&c.inlineMsg)
		return
	}
	// Channels are closed under mu (or, for one waiting below, after its
	// sendMu): a send never meets a closed one.
	if len(s.backlog) == 0 {
		select {
		case s.ch <- m:
			c.mu.Unlock()
			return
		default:
		}
	}
	if s.opts.DropWhenFull {
		c.mu.Unlock()
		s.dropped.Add(1)
		c.subDropped.Add(1)
		return
	}
	s.backlog = append(s.backlog, m)
	c.mu.Unlock()
	c.waitForRoom(s, done)
}

// waitForRoom moves s's backlog into its channel, waiting for room,
// until the backlog is empty, the subscription or the Conn ends, or done
// is closed (the session ends: what is left stays in the backlog, for the
// next message to push first). Only the goroutine reading the session
// calls it, so there is one sender at a time. It waits holding s.sendMu,
// taken under mu while the subscription is known to be live, and takes
// mu again only after letting sendMu go.
func (c *Conn) waitForRoom(s *Subscription, done <-chan struct{}) {
	for {
		c.mu.Lock()
		if len(s.backlog) == 0 || c.subs[s.sid] != s {
			s.backlog = nil
			c.mu.Unlock()
			return
		}
		m := s.backlog[0]
		s.sendMu.Lock()
		c.mu.Unlock()
		sent := false
		select {
		case s.ch <- m:
			sent = true
		case <-s.ended:
		case <-done:
		}
		s.sendMu.Unlock()
		if !sent {
			return
		}
		c.mu.Lock()
		if len(s.backlog) > 0 {
			s.backlog[0] = Msg{}
			s.backlog = s.backlog[1:]
		}
		c.mu.Unlock()
	}
}

// closesConn reports whether an error frame for the connection as a whole
// (ref 0) with code is the broker's last word before it closes it.
func closesConn(code wire.Code) bool {
	switch code {
	case wire.CodeProtocol, wire.CodeFrameTooLarge, wire.CodeTimeout, wire.CodeSlowConsumer, wire.CodeShutdown:
		return true
	}
	return false
}

// sendBacklogs moves into their channels, waiting for room as deliver
// does, the messages an earlier session left in subscriptions' backlogs
// (their channels were full when it ended), before the session reads
// anything new. Without it they would wait for the next message to the
// same subscription, which may never come.
func (c *Conn) sendBacklogs(done <-chan struct{}) {
	c.mu.Lock()
	var waiting []*Subscription
	for _, s := range c.sortedSubsLocked() {
		if len(s.backlog) > 0 {
			waiting = append(waiting, s)
		}
	}
	c.mu.Unlock()
	for _, s := range waiting {
		c.waitForRoom(s, done)
	}
}

// refused handles an error frame: for a waiter (its ref has nonceBit), a
// subscription (its ref is the sid), or else a publish, kept for AsyncErr.
func (c *Conn) refused(e *wire.ErrorBody) {
	err := newRefusal(e)
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case e.Ref&nonceBit != 0:
		c.reqMu.Lock()
		ch, ok := c.requests[e.Ref]
		delete(c.requests, e.Ref)
		c.reqMu.Unlock()
		if ok {
			ch <- reply{err: err}
			return
		}
		if ch, ok := c.waiters[e.Ref]; ok {
			delete(c.waiters, e.Ref)
			ch <- err
			return
		}
	case e.Ref != 0:
		if s := c.subs[uint32(e.Ref)]; s != nil {
			s.err = err
			c.endSubLocked(s)
			if c.isInboxLocked(s) { // the next Request subscribes a new inbox
				c.inbox, c.inboxName = nil, ""
			}
			return
		}
	}
	c.noteAsyncLocked(err)
}

// maxAsyncErrs bounds the refusals AsyncErr keeps; later ones are counted.
const maxAsyncErrs = 16

// noteAsyncLocked keeps a refusal of an earlier publish for AsyncErr.
func (c *Conn) noteAsyncLocked(err error) {
	if len(c.asyncErrs) < maxAsyncErrs {
		c.asyncErrs = append(c.asyncErrs, err)
		return
	}
	c.asyncMore++
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

// lose marks the session lost: waiters and requests fail with
// ErrDisconnected, and the buffer keeps only publishes and pings.
func (c *Conn) lose(why error) {
	c.disconnects.Add(1)
	failed := disconnected(why)
	c.mu.Lock()
	c.sess = nil
	for n, ch := range c.waiters {
		ch <- failed
		delete(c.waiters, n)
	}
	c.reqMu.Lock()
	for n, ch := range c.requests {
		ch <- reply{err: failed}
		delete(c.requests, n)
	}
	c.reqMu.Unlock()
	kept, n := keepAfterLoss(c.buf.Frames())
	c.buf.Replace(kept)
	c.outMsgs = n
	c.buf.WakeRoom() // publishers waiting for room now find none: tell them
	c.mu.Unlock()
	if f := c.opts.OnDisconnect; f != nil {
		f(failed)
	}
}

// keepAfterLoss filters the frames that were never written: publishes stay
// (they are sent after the reconnect); control frames go (subscriptions are
// restored from the Conn's state, and their waiters have failed).
func keepAfterLoss(out []byte) ([]byte, int) {
	kept, n := out[:0], 0
	for len(out) >= wire.HeaderSize {
		size := int(binary.BigEndian.Uint32(out)) + 4
		if wire.Type(out[4]) == wire.TypePublish {
			kept = append(kept, out[:size]...) // never overtakes: kept is behind out
			n++
		}
		out = out[size:]
	}
	return kept, n
}

// reconnect dials until it succeeds or the Conn closes, then restores the
// subscriptions ahead of what was buffered meanwhile.
func (c *Conn) reconnect() *session {
	wait := c.opts.ReconnectWait
	for {
		t := time.NewTimer(jitter(wait))
		select {
		case <-t.C:
		case <-c.ctx.Done():
			t.Stop()
			return nil
		}
		sess, err := dial(c.ctx, c.addr, &c.opts)
		if err != nil {
			wait = nextBackoff(wait, c.opts.MaxReconnectWait)
			continue
		}
		restored, err := c.restore(sess)
		if err != nil {
			sess.nc.Close()
			wait = nextBackoff(wait, c.opts.MaxReconnectWait)
			continue
		}
		c.mu.Lock()
		if c.err != nil {
			c.mu.Unlock()
			sess.nc.Close()
			return nil
		}
		// Subscriptions made or ended while restore ran.
		var frames []byte
		for _, s := range c.sortedSubsLocked() {
			if !restored[s.sid] && !s.draining.Load() {
				frames = s.appendSubscribe(frames)
			}
			delete(restored, s.sid)
		}
		for sid := range restored {
			frames = wire.AppendU32(frames, wire.TypeUnsubscribe, sid)
		}
		c.buf.Replace(append(frames, c.buf.Frames()...))
		c.sess, c.welcome = sess, sess.welcome
		c.mu.Unlock()
		c.reconnectCount.Add(1)
		c.signal()
		if f := c.opts.OnReconnect; f != nil {
			f()
		}
		return sess
	}
}

// restore subscribes again on a new session, and waits until the server
// has handled it, so that the subscriptions are in place before anything
// buffered is sent. It returns the subscription ids it restored.
func (c *Conn) restore(sess *session) (map[uint32]bool, error) {
	c.mu.Lock()
	subs := c.sortedSubsLocked()
	c.mu.Unlock()
	subs = slices.DeleteFunc(subs, func(s *Subscription) bool { return s.draining.Load() }) // ending: not again
	var frames []byte
	for _, s := range subs {
		frames = s.appendSubscribe(frames)
	}
	const nonce = nonceBit // no waiter uses it: nonces start at 1
	frames = wire.AppendU64(frames, wire.TypePing, nonce)
	sess.nc.SetDeadline(time.Now().Add(c.opts.DialTimeout))
	defer sess.nc.SetDeadline(time.Time{})
	if _, err := sess.nc.Write(frames); err != nil {
		return nil, err
	}
	for {
		f, err := sess.r.ReadFrame()
		if err != nil {
			return nil, err
		}
		if f.Type == wire.TypePong {
			if n, err := wire.ParseU64(f.Type, f.Flags, f.Body); err == nil && n == nonce {
				// Restored: those the server did not refuse (a refused
				// one has left c.subs with its error set, and needs no
				// unsubscribe).
				restored := make(map[uint32]bool, len(subs))
				c.mu.Lock()
				for _, s := range subs {
					if s.err == nil {
						restored[s.sid] = true
					}
				}
				c.mu.Unlock()
				return restored, nil
			}
		}
		if err := c.handle(f, sess); err != nil { // a refused subscription ends; deliveries flow
			return nil, err
		}
	}
}

// nextBackoff doubles wait, up to max.
func nextBackoff(wait, max time.Duration) time.Duration { return min(2*wait, max) }

// jitter returns a duration uniform in [wait/2, 3*wait/2).
func jitter(wait time.Duration) time.Duration { return wait/2 + rand.N(wait) }

// shutdown ends the Conn once: waiters fail with why, subscription
// channels close.
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
	c.reqMu.Lock()
	for n, ch := range c.requests {
		ch <- reply{err: why}
		delete(c.requests, n)
	}
	c.reqMu.Unlock()
	for _, s := range c.subs {
		c.endSubLocked(s)
	}
	c.buf.WakeRoom()
	c.mu.Unlock()
	c.cancel()
}

// AsyncErr returns, and forgets, the refusals of earlier publishes that
// have arrived from the server (call Flush first to be sure they have).
func (c *Conn) AsyncErr() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	errs := c.asyncErrs
	if c.asyncMore > 0 {
		errs = append(errs, fmt.Errorf("and %d more refusals", c.asyncMore))
	}
	c.asyncErrs, c.asyncMore = nil, 0
	return errors.Join(errs...)
}

// Err returns why the Conn ended, or nil while it is open (connected or
// reconnecting).
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Stats returns the Conn's counters.
func (c *Conn) Stats() Stats {
	c.mu.Lock()
	st := Stats{Connected: c.sess != nil || c.ip != nil, Buffered: c.buf.Pending()}
	c.mu.Unlock()
	st.Published = c.published.Load()
	st.BufferFull = c.bufferFull.Load()
	st.LostInFlight = c.lost.Load()
	st.Dropped = c.subDropped.Load()
	st.Disconnects = c.disconnects.Load()
	st.Reconnects = c.reconnectCount.Load()
	return st
}

// Close ends the subscriptions (their channels close; what is in them can
// still be read), flushes what is buffered (bounded by WriteTimeout),
// closes the connection and waits for its goroutines. It returns an error wrapping
// ErrDisconnected if buffered messages could not be sent because the
// broker was unreachable; calling it again returns nil.
func (c *Conn) Close() error {
	if c.ip != nil {
		return c.ip.close(c)
	}
	// The subscriptions end first: a reader waiting for room in a channel
	// nobody reads any more would hold up the pong Flush waits for.
	c.mu.Lock()
	for _, s := range c.subs {
		c.endSubLocked(s)
	}
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.WriteTimeout)
	flushErr := c.Flush(ctx)
	cancel()
	c.mu.Lock()
	unsent := c.outMsgs
	already := c.err != nil
	c.mu.Unlock()
	c.shutdown(ErrClosed)
	c.wg.Wait()
	if already || flushErr == nil || unsent == 0 {
		return nil
	}
	if errors.Is(flushErr, ErrDisconnected) { // it says why already
		return fmt.Errorf("%w; %d buffered messages were never sent", flushErr, unsent)
	}
	return fmt.Errorf("%w: %d buffered messages were never sent: %w", ErrDisconnected, unsent, flushErr)
}
