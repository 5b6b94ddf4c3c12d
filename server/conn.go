package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/protocol/sendbuf"
	"github.com/daemoneye/daemoneye/internal/protocol/wire"
	"github.com/daemoneye/daemoneye/topic"
	"github.com/daemoneye/daemoneye/topics"
)

// conn is one client connection. The reader goroutine owns the read side,
// the subscriptions map and the topic cache; the writer goroutine flushes
// buf. Deliver (called by publishers) and the reader append to buf under mu.
//
// A publisher that publishes with an eventbus.Batch (another connection's
// reader, or this one's) does not wake the writer: the
// connection defers itself into the batch, and when the publisher is done
// (the reader has handled everything it read and is about to read again)
// it writes out from the publisher's goroutine (Flush), without blocking.
// That saves a goroutine hand-off per message on the request/reply path
// and writes a whole read batch's deliveries at once (nats-server's
// model). Whatever the inline write cannot send at once is left to the
// writer.
type conn struct {
	srv *Server
	nc  net.Conn
	raw syscall.RawConn // nc's, for writes that must not block; nil for TLS: the writer writes
	log *slog.Logger    // written by the reader during the handshake, before anyone else reads it
	pub *eventbus.Batch // the reader publishes with it; flushed before each read

	writeMu sync.Mutex       // held while writing to nc: by the writer, or by a publisher's Flush
	try     nonBlockingWrite // Flush's, under writeMu

	mu       sync.Mutex
	buf      *sendbuf.Buffer // frames waiting for the writer, and the unsent end of an inline write; under mu
	closed   bool
	done     atomic.Bool // closed, readable without mu: the reader stops at once
	abort    atomic.Bool // closed by closeNow: writes stop at once
	slow     bool        // over MaxPending where the policy is to disconnect: the writer closes
	slowGone bool        // closed as a slow consumer: what it loses counts as DropDisconnect
	reserved int         // bytes of the server's MaxPendingTotal taken for out and writing
	// headBuf is buf's head from the start of the frame that was being written
	// when an inline write stopped short; headSent bytes of it are sent.
	// Frames in it that did not go out whole are discarded with the
	// connection.
	headBuf    []byte
	headSent   int
	drops      ConnDrops            // under mu
	dropsMoved bool                 // drops are in the server's closedDrops; under mu
	mayBlock   bool                 // the identity may keep block subscriptions (set by the handshake)
	endedBoth  atomic.Int32         // the reader and the writer that have ended (ended)
	writeSince atomic.Int64         // when the write in progress began, in Unix ns; 0: none (Server.reclaim)
	sub        *eventbus.Subscriber // set once the handshake succeeds
	info       ConnStats            // set with sub
	closeCh    chan struct{}        // closed by close
	ctx        context.Context      // cancelled by close: ends a publish waiting for room
	cancel     context.CancelFunc
	// writer goroutine only
	writeArmed time.Time // the write deadline currently set

	// reader goroutine only
	subs      map[uint32]*eventbus.Subscription
	topics    wire.Interner
	identity  string           // set by the handshake
	authCache map[string]error // publish decisions by topic (Authorizer)

	// set before the goroutines start
	class connClass // how the server counts the connection
	given string    // the identity ServeConn was given

	stage int        // slot accounting (stageHandshake...), under srv.mu
	resp  *responses // set by the handshake for an identity confined to answering what it was asked; nil otherwise
}

// maxInlineFlush bounds what a publisher's Flush writes for a
// connection, in bytes; a larger batch is left to the connection's writer.
const maxInlineFlush = 1 << 10

// bufLimits bound the arrays a connection's send buffer keeps: up to
// 8 MiB for the next batch while it is busy, up to 1 MiB each once it
// has nothing more to write.
var bufLimits = sendbuf.Limits{MaxSpare: 8 << 20, MaxIdle: 1 << 20}

func newConn(s *Server, nc net.Conn) *conn {
	c := &conn{
		srv: s, nc: nc, log: s.log.With("remote", nc.RemoteAddr().String()),
		closeCh: make(chan struct{}), buf: sendbuf.New(bufLimits),
		subs: make(map[uint32]*eventbus.Subscription), authCache: map[string]error{},
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.pub = &eventbus.Batch{Context: c.ctx}
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
			c.try.fn = c.try.write
		}
	}
	return c
}

// deadlineReader keeps a deadline on reads from the socket. During the
// handshake the deadline is fixed (the whole handshake must fit in it);
// afterwards it is the idle timeout, pushed out when a read finds less
// than three quarters of it left: so a silent client is closed after
// between 3/4 and all of the idle timeout, and a busy connection does not
// pay for resetting a timer on every read.
type deadlineReader struct {
	nc      net.Conn
	batch   *eventbus.Batch // flushed before each read
	done    *atomic.Bool    // the connection is closed: read nothing more
	timeout time.Duration   // 0: leave the deadline as set
	armed   time.Time       // the read deadline currently set
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	if d.done.Load() {
		return 0, net.ErrClosed
	}
	d.batch.Flush() // everything read so far is handled: send what it delivered
	if d.timeout > 0 {
		if now := time.Now(); d.armed.Sub(now) < d.timeout*3/4 {
			d.armed = now.Add(d.timeout)
			d.nc.SetReadDeadline(d.armed)
		}
	}
	return d.nc.Read(p)
}

func (c *conn) readLoop() {
	err := c.serve()
	c.pub.Flush()
	c.close(err)
	c.topics = wire.Interner{} // the reader's caches go with it
	c.authCache = nil
	c.ended()
}

// ended is called by the reader and the writer as they end; the second
// lets go of the subscriptions, so that a cached route still holding one
// of them (until the broker sweeps it) does not keep all of them alive.
func (c *conn) ended() {
	if c.endedBoth.Add(1) == 2 {
		c.mu.Lock()
		c.subs = nil
		c.mu.Unlock()
	}
}

// serve runs the handshake and then the frame loop until an error.
func (c *conn) serve() error {
	opts := &c.srv.opts
	c.nc.SetReadDeadline(time.Now().Add(opts.HandshakeTimeout))
	dr := &deadlineReader{nc: c.nc, batch: c.pub, done: &c.done}
	var magic [len(wire.Magic)]byte
	if _, err := io.ReadFull(dr, magic[:]); err != nil {
		return c.protocolError(fmt.Errorf("handshake: %w", err))
	}
	if err := wire.CheckMagic(magic[:]); err != nil {
		c.sendError(wire.CodeProtocol, 0, wireText(err))
		return err
	}
	// One reader for the whole connection, so frames a client sends right
	// after its hello are not lost.
	r := wire.NewReader(dr, opts.Broker.MaxPayload()+4096)
	f, err := r.ReadFrame()
	if err != nil {
		return c.protocolError(fmt.Errorf("handshake: %w", err))
	}
	if f.Type != wire.TypeHello {
		return c.protocolError(fmt.Errorf("%w: handshake: expected hello, got %s", wire.ErrMalformed, f.Type))
	}
	hello, err := wire.ParseHello(f.Flags, f.Body)
	if err != nil {
		return c.protocolError(err)
	}
	v, err := wire.Negotiate(hello.Versions, []wire.Version{wire.Current})
	if err != nil {
		c.sendError(wire.CodeVersion, 0, wireText(err))
		return err
	}
	identity := c.given
	if c.class != classEmbedded {
		if identity, err = c.srv.authenticate(c.nc, &hello); err != nil {
			c.sendError(wire.CodeAuth, 0, wireText(err))
			return err
		}
	}
	if err := c.srv.admit(c); err != nil {
		if errors.Is(err, errConnLimit) {
			c.sendError(wire.CodeLimit, 0, c.srv.connLimitText())
		}
		return err
	}
	session := newSessionID()
	c.identity = identity
	c.confine()
	client := clientName(hello.ClientName)
	c.log = c.log.With("session", session, "identity", identity, "client", client)
	sub := opts.Broker.NewSinkSubscriber(fmt.Sprintf("%s/%s", identity, session), c)
	c.mayBlock = c.srv.mayBlock(identity, string(hello.ClientName))
	c.mu.Lock()
	closed := c.closed
	if !closed {
		c.sub = sub
		c.info = ConnStats{Session: session, Identity: identity, Client: client, Remote: c.nc.RemoteAddr().String()}
	}
	c.mu.Unlock()
	if closed {
		return net.ErrClosed
	}
	c.enqueue(func(b []byte) []byte {
		return wire.AppendWelcome(b, &wire.Welcome{
			Version: v, SessionID: []byte(session), Identity: []byte(identity),
			MaxPayload: uint32(opts.Broker.MaxPayload()), MaxPending: uint32(min(opts.MaxPending, math.MaxUint32)),
			PingIntervalMs: uint32(min(DefaultPingInterval, opts.IdleTimeout/2) / time.Millisecond),
		})
	})
	c.log.Debug("connected", "version", v)

	dr.timeout = opts.IdleTimeout
	c.nc.SetReadDeadline(time.Now().Add(opts.IdleTimeout))
	for {
		f, err := r.ReadFrame()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return c.protocolError(err)
		}
		if c.done.Load() { // closed meanwhile: handle nothing more
			return net.ErrClosed
		}
		if err := c.handle(f); err != nil {
			return err
		}
	}
}

// handle serves one frame after the handshake.
func (c *conn) handle(f wire.Frame) error {
	switch f.Type {
	case wire.TypePublish:
		p, err := wire.ParsePublish(f.Flags, f.Body)
		if err != nil {
			return c.protocolError(err)
		}
		m := eventbus.Message{
			Topic:    c.topics.String(p.Topic),
			Payload:  append([]byte(nil), p.Payload...), // the read buffer is reused; subscribers keep this
			Priority: eventbus.Priority(p.Priority),
		}
		if p.Reply != nil {
			m.Reply = string(p.Reply) // inboxes are mostly unique per request: not interned
		}
		if err := c.allowPublish(m.Topic, m.Reply); err != nil {
			c.refuse(p.AckID, err, true)
			return nil
		}
		err = c.srv.opts.Broker.Publish(c.pub, m)
		c.publishResult(&p, err)
	case wire.TypeSubscribe:
		sreq, err := wire.ParseSubscribe(f.Flags, f.Body)
		if err != nil {
			return c.protocolError(err)
		}
		c.subscribe(&sreq)
	case wire.TypeUnsubscribe:
		sid, err := wire.ParseU32(f.Type, f.Flags, f.Body)
		if err != nil {
			return c.protocolError(err)
		}
		s, ok := c.subs[sid]
		if !ok {
			c.sendError(wire.CodeUnknownSID, uint64(sid), fmt.Sprintf("no subscription %d on this connection", sid))
			return nil
		}
		c.mu.Lock()
		delete(c.subs, sid)
		c.mu.Unlock()
		s.Unsubscribe()
	case wire.TypePing:
		nonce, err := wire.ParseU64(f.Type, f.Flags, f.Body)
		if err != nil {
			return c.protocolError(err)
		}
		c.enqueue(func(b []byte) []byte { return wire.AppendU64(b, wire.TypePong, nonce) })
	case wire.TypePong, wire.TypeAck:
		// Nothing to do beyond checking the body: any frame resets the
		// idle deadline.
		if _, err := wire.ParseU64(f.Type, f.Flags, f.Body); err != nil {
			return c.protocolError(err)
		}
	default:
		return c.protocolError(fmt.Errorf("%w: a client may not send %s frames", wire.ErrMalformed, f.Type))
	}
	return nil
}

// publishResult answers a publish: an ack when one was asked for, an
// error frame when the message was refused outright. Drops at individual
// subscribers are counted in stats and not reported per message.
func (c *conn) publishResult(p *wire.Publish, err error) {
	if err == nil || errors.Is(err, eventbus.ErrQueueFull) || errors.Is(err, eventbus.ErrSlowConsumer) {
		if p.Ack && !p.ErrorsOnly {
			c.enqueue(func(b []byte) []byte { return wire.AppendU64(b, wire.TypeAck, p.AckID) })
		}
		return
	}
	c.sendError(codeFor(err), p.AckID, wireText(err))
}

// codeFor maps an error from the broker to the wire's error code.
func codeFor(err error) wire.Code {
	switch {
	case errors.Is(err, topic.ErrInvalidTopic), errors.Is(err, topic.ErrInvalidPattern):
		return wire.CodeInvalidTopic
	case errors.Is(err, topic.ErrDuplicate):
		return wire.CodeDuplicateSID
	case errors.Is(err, eventbus.ErrPayloadTooLarge):
		return wire.CodeTooLarge
	case errors.Is(err, eventbus.ErrInvalidOptions), errors.Is(err, eventbus.ErrInvalidPriority):
		return wire.CodeProtocol
	case errors.Is(err, eventbus.ErrClosed):
		return wire.CodeShutdown
	case errors.Is(err, eventbus.ErrNoResponders):
		return wire.CodeNoResponders
	case errors.Is(err, eventbus.ErrTooManySubscriptions):
		return wire.CodeLimit
	}
	return wire.CodeInternal
}

func (c *conn) subscribe(r *wire.Subscribe) {
	if _, dup := c.subs[r.SID]; dup {
		c.sendError(wire.CodeDuplicateSID, uint64(r.SID), fmt.Sprintf("subscription id %d is already in use on this connection", r.SID))
		return
	}
	if len(c.subs) >= c.srv.opts.MaxSubscriptions {
		c.sendError(wire.CodeLimit, uint64(r.SID), fmt.Sprintf("this connection has the server's limit of %d subscriptions; unsubscribe some or raise MaxSubscriptions", c.srv.opts.MaxSubscriptions))
		return
	}
	if err := c.allowSubscribe(string(r.Pattern)); err != nil {
		c.refuse(uint64(r.SID), err, false)
		return
	}
	opts := eventbus.SubscribeOptions{
		Tag: uint64(r.SID), MaxMessages: int(r.MaxMessages), MaxBytes: int64(min(r.MaxBytes, math.MaxInt64)),
		Overflow: eventbus.Overflow(r.Overflow), QueueGroup: string(r.QueueGroup),
	}
	opts.Overflow, opts.BlockTimeout = c.srv.overflowFor(c.mayBlock, opts.Overflow, time.Duration(r.BlockTimeoutMs)*time.Millisecond)
	s, err := c.subscriber().Subscribe(string(r.Pattern), opts)
	if err != nil {
		c.sendError(codeFor(err), uint64(r.SID), wireText(err))
		return
	}
	c.mu.Lock()
	closed := c.closed
	if !closed {
		c.subs[r.SID] = s // under mu for the writer, which reads it when it discards deliveries
	}
	c.mu.Unlock()
	if closed { // the connection closed while subscribing
		s.Unsubscribe()
	}
}

// Deliver implements eventbus.Sink: it appends a deliver frame for the
// client, unless that would take the connection past MaxPending; then the
// subscription's overflow policy applies.
func (c *conn) Deliver(ctx context.Context, s *eventbus.Subscription, m eventbus.Message) error {
	return c.deliver(ctx, s, &m, true)
}

// TryDeliver implements eventbus.TryDeliverer: Deliver without applying the
// overflow policy, for probing a queue group's members.
func (c *conn) TryDeliver(ctx context.Context, s *eventbus.Subscription, m eventbus.Message) error {
	return c.deliver(ctx, s, &m, false)
}

// frameSize is the size of the deliver frame for m with payload.
func frameSize(m *eventbus.Message, payload []byte) int {
	return wire.HeaderSize + 4 + 8 + 2 + len(m.Topic) + 2 + len(m.Reply) + len(payload)
}

// encodeValue returns the encoding of the Value that stands in for m's
// Payload (eventbus.Message.Value), in a pooled buffer the caller
// releases. Errors wrap eventbus.ErrPayloadTooLarge: the message cannot
// be sent.
func (c *conn) encodeValue(m *eventbus.Message) (*wire.ValueBuf, error) {
	enc, err := wire.EncodeValue(m.Value)
	if err != nil {
		return nil, fmt.Errorf("%w: the message to %q has no payload: %w", eventbus.ErrPayloadTooLarge, m.Topic, err)
	}
	if max := c.srv.opts.Broker.MaxPayload(); len(enc.Bytes()) > max {
		n := len(enc.Bytes())
		enc.Release()
		return nil, fmt.Errorf("%w: %d bytes encoded for %q; the limit is %d", eventbus.ErrPayloadTooLarge, n, m.Topic, max)
	}
	return enc, nil
}

func (c *conn) deliver(ctx context.Context, s *eventbus.Subscription, m *eventbus.Message, policy bool) error {
	// A publisher with a Batch flushes us when its batch is done; for
	// anyone else we wake our writer.
	batch, _ := ctx.(*eventbus.Batch)
	payload := m.Payload
	if payload == nil && m.Value != nil {
		enc, err := c.encodeValue(m)
		if err != nil {
			return err
		}
		defer enc.Release() // the frame copies it
		payload = enc.Bytes()
	}
	size := frameSize(m, payload)
	if size > c.srv.opts.MaxPending {
		return errFrameOverPending // could never fit: not worth waiting for
	}
	c.mu.Lock()
	if c.closed {
		gone := c.slowGone
		c.mu.Unlock()
		if gone {
			return errSlowConsumer // counted by the broker: the connection was dropped for being slow
		}
		return eventbus.ErrClosed
	}
	if c.slow { // doomed: the writer is closing it
		if policy {
			c.drops.SlowConsumer++
		}
		c.mu.Unlock()
		if policy {
			return errSlowConsumer
		}
		return errConnFull
	}
	if need := c.buf.Pending() + size; need > c.srv.opts.MaxPending {
		_, _, overflow, _ := s.Limits()
		disconnect := policy && overflow == eventbus.OverflowDisconnect
		if disconnect {
			c.drops.SlowConsumer++
			if !c.slow {
				// The writer closes us (Deliver runs under the broker's
				// locks); it is likely stuck in a write to the client that
				// does not read: end that write now. (The writer then
				// gives the client its error frame, briefly.)
				c.slow, c.slowGone = true, true
				c.nc.SetWriteDeadline(time.Now())
			}
		} else if policy && overflow != eventbus.OverflowBlock {
			c.drops.Full++ // a block subscription's publisher waits instead (Room)
		}
		c.mu.Unlock()
		if disconnect {
			c.signal()
			return errSlowConsumer
		}
		return errConnFull
	} else if need > c.reserved && !c.reserveLocked(need, false) {
		if policy {
			c.drops.Full++
		}
		c.mu.Unlock()
		c.srv.budgetSpent()
		return errBudgetFull
	}
	if c.resp != nil && m.Reply != "" && strings.HasPrefix(m.Reply, topics.InboxPrefix) {
		c.resp.add(m.Reply) // a confined connection may answer this request: before it can read it
	}
	first := c.buf.Queued(wire.AppendDeliverMsg(c.buf.Frames(), uint32(s.Tag()), m.Seq, uint8(m.Priority), m.Topic, m.Reply, payload))
	c.mu.Unlock()
	switch {
	case !first: // whoever made the buffer non-empty flushes it
	case batch != nil && c.raw != nil:
		batch.Defer(c) // the publisher's goroutine: we run on it
	default:
		c.signal()
	}
	return nil
}

// Flush implements eventbus.Flusher: it writes out from the calling
// goroutine (a publisher whose Batch deferred us) without blocking. If no
// write is in progress and the batch is small, it writes what the socket
// takes now and leaves the rest (and anything it cannot write now) to the
// writer.
func (c *conn) Flush() {
	if !c.writeMu.TryLock() {
		c.signal() // the writer is busy: it takes out after this write
		return
	}
	c.mu.Lock()
	if c.closed || c.slow || c.buf.HasHead() || c.buf.Len() == 0 || c.buf.Len() > maxInlineFlush || c.abort.Load() {
		wake := c.buf.Len() > 0 || c.buf.HasHead() || c.slow
		c.mu.Unlock()
		c.writeMu.Unlock()
		if wake {
			c.signal()
		}
		return
	}
	batch, _ := c.buf.Take()
	c.mu.Unlock()
	n := c.tryWrite(batch)
	c.mu.Lock()
	rest := n < len(batch)
	if rest {
		c.srv.partialInline.Add(1)
		start := frameStart(batch, n)
		c.headBuf, c.headSent = batch[start:], n-start // its array is not reused
		c.buf.Unsent(batch[n:])
	} else {
		c.buf.Done(batch)
		c.releaseLocked()
	}
	c.mu.Unlock()
	c.writeMu.Unlock()
	if rest {
		c.signal()
	}
}

// tryWrite writes as much of b as the socket takes without waiting and
// returns how much that was. Errors are left for the writer to meet. The
// caller holds writeMu.
func (c *conn) tryWrite(b []byte) int {
	c.try.b, c.try.n = b, 0
	c.raw.Write(c.try.fn)
	n := c.try.n
	c.try.b = nil
	return n
}

// nonBlockingWrite is tryWrite's state, made once per connection so that
// a write does not allocate a closure. Guarded by writeMu.
type nonBlockingWrite struct {
	b  []byte
	n  int
	fn func(fd uintptr) bool
}

func (w *nonBlockingWrite) write(fd uintptr) bool {
	for w.n < len(w.b) {
		m, err := syscall.Write(int(fd), w.b[w.n:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil || m <= 0 {
			break
		}
		w.n += m
	}
	return true // never wait for the socket
}

// Room implements eventbus.RoomWaiter: a publisher to a subscription whose
// policy is block waits here while the connection is over MaxPending.
func (c *conn) Room(_ *eventbus.Subscription, m eventbus.Message) <-chan struct{} {
	payload := m.Payload
	if payload == nil && m.Value != nil {
		enc, err := c.encodeValue(&m)
		if err != nil {
			return nil // Deliver will refuse it
		}
		defer enc.Release()
		payload = enc.Bytes()
	}
	size := frameSize(&m, payload) // the measure Deliver uses, or a waiter could spin
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed || c.buf.Pending()+size <= c.srv.opts.MaxPending {
		return nil
	}
	return c.buf.Room()
}

// Stalled implements eventbus.StallReporter: a publisher waited MaxStall
// (or a shorter BlockTimeout) for room here in vain. The connection is
// closed as a slow consumer at once, so that no publisher waits for it
// again; what it had buffered is discarded and counted.
func (c *conn) Stalled(*eventbus.Subscription) {
	c.mu.Lock()
	c.drops.SlowConsumer++ // the message the publisher gave up on
	c.mu.Unlock()
	c.closeSlow(errSlowConsumer)
}

// closeSlow closes the connection as a slow consumer, without waiting for
// a write in progress.
func (c *conn) closeSlow(why error) {
	c.mu.Lock()
	first := !c.closed
	if first {
		c.slowGone = true
	}
	info := c.info
	c.mu.Unlock()
	if first {
		c.srv.slowConsumer(info.Identity, info.Client)
		c.log.Warn("disconnected a slow consumer: its outbound buffer stayed full", "max_pending", c.srv.opts.MaxPending, "max_stall", c.srv.opts.MaxStall)
	}
	c.closeNow(why)
}

// Built once: a full connection refuses every message until it drains,
// and building an error per refused message would allocate on the hot path.
var (
	errConnFull         = fmt.Errorf("%w: the connection's outbound buffer is full (MaxPending)", eventbus.ErrQueueFull)
	errFrameOverPending = fmt.Errorf("%w: the message is larger than the connection's whole outbound buffer (MaxPending)", eventbus.ErrPayloadTooLarge)
	errSlowConsumer     = fmt.Errorf("%w: the connection's outbound buffer is full (MaxPending); disconnecting", eventbus.ErrSlowConsumer)
	errBudgetFull       = fmt.Errorf("%w: %w: the server's buffers for all connections are full (MaxPendingTotal)", eventbus.ErrQueueFull, eventbus.ErrBudgetExhausted)
)

// subscriber returns the connection's broker subscriber.
func (c *conn) subscriber() *eventbus.Subscriber {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sub
}

// enqueue appends a frame built by build and wakes the writer.
// Control frames (pongs, acks, errors) count against MaxPending too: a
// client that keeps pinging without reading is disconnected, not buffered
// for without end.
//
// enqueue is never called under the broker's locks (Deliver does not use
// it), so it may close the connection itself.
func (c *conn) enqueue(build func([]byte) []byte) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	if c.buf.Pending() > c.srv.opts.MaxPending+controlHeadroom {
		c.mu.Unlock()
		c.closeSlow(errNotReading) // a slow consumer of its own frames
		return
	}
	c.buf.Queued(build(c.buf.Frames()))
	if need := c.buf.Pending(); need > c.reserved {
		c.reserveLocked(need, true) // control frames are not refused for the budget
	}
	c.mu.Unlock()
	c.signal()
}

var errNotReading = errors.New("the client does not read: its outbound buffer reached MaxPending and the room kept for control frames")

// controlHeadroom is what control frames (pongs, acks, errors) may add
// beyond MaxPending, in bytes: deliveries fill the buffer up to MaxPending
// under a drop policy, and a client that still pings or acks now and then
// while it catches up is not a slow consumer. One that keeps pinging
// without reading fills it and is.
const controlHeadroom = 64 << 10

func (c *conn) signal() { c.buf.Signal() }

// wireText is err's text for an error frame: without the Go package
// that its sentinel starts with ("server: forbidden: ..." goes as
// "forbidden: ..."), since the client says who refused (client.ErrRefused
// reads "client: refused by the server"), and the code says which
// sentinel it was.
func wireText(err error) string {
	text := err.Error()
	for _, prefix := range [...]string{"server: ", "eventbus: ", "topic: ", "wire: "} {
		if rest, ok := strings.CutPrefix(text, prefix); ok {
			return rest
		}
	}
	return text
}

func (c *conn) sendError(code wire.Code, ref uint64, text string) {
	c.enqueue(func(b []byte) []byte {
		return wire.AppendError(b, wire.TypeError, &wire.ErrorBody{Code: code, Ref: ref, Text: []byte(text)})
	})
}

// protocolError tells the client why it is being disconnected.
func (c *conn) protocolError(err error) error {
	code := wire.CodeProtocol
	switch {
	case errors.Is(err, wire.ErrFrameTooLarge):
		code = wire.CodeFrameTooLarge
	case isTimeout(err):
		code = wire.CodeTimeout
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed):
		return err // nobody to tell
	}
	c.sendError(code, 0, wireText(err))
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func (c *conn) goAway(text string) {
	c.enqueue(func(b []byte) []byte {
		return wire.AppendError(b, wire.TypeGoAway, &wire.ErrorBody{Code: wire.CodeShutdown, Text: []byte(text)})
	})
}

// writeLoop flushes out in batches: one write per batch, however many
// frames accumulated since the last one.
func (c *conn) writeLoop() {
	defer c.srv.forget(c) // the writer ends last: the slot is free only now
	failed := false
	for {
		select {
		case <-c.buf.Wake():
		case <-c.closeCh:
			if !failed { // the last error frame, if any, briefly
				c.flushWithin(finalFlushTimeout)
			}
			c.nc.Close()
			c.discardPending()
			return
		}
		if c.closeIfSlow() || c.done.Load() {
			continue // closed: the last flush is bounded by finalFlushTimeout
		}
		if err := c.flushWithin(c.srv.opts.WriteTimeout); err != nil {
			// A slow consumer's write is cut short on purpose: it still
			// gets the rest of the cut frame and its error frame, briefly.
			if !c.closeIfSlow() {
				failed = true
				c.close(fmt.Errorf("write: %w", err))
			}
		}
	}
}

// writeChunk is the most the writer writes at once: after each chunk the
// batch's written part stops counting against MaxPending and publishers
// waiting for room are woken, so that a client that reads, however far
// behind, makes room every writeChunk bytes rather than once per batch
// (a batch can be MaxPending long), and is not taken for a slow consumer.
const writeChunk = 256 << 10

// writeChunks writes b in chunks of writeChunk and returns how much was
// written. The caller holds writeMu; writing is len(b).
func (c *conn) writeChunks(b []byte) (int, error) {
	sent := 0
	defer c.writeSince.Store(0)
	for {
		end := min(len(b), sent+writeChunk)
		c.writeSince.Store(time.Now().UnixNano()) // per chunk, for Server.reclaim
		n, err := c.nc.Write(b[sent:end])
		sent += n
		if err != nil || end == len(b) {
			return sent, err
		}
		c.mu.Lock()
		c.buf.Written(len(b) - sent)
		c.mu.Unlock()
	}
}

// closeIfSlow closes the connection if Deliver found it a slow consumer
// under the disconnect policy, and reports whether it did.
func (c *conn) closeIfSlow() bool {
	c.mu.Lock()
	slow := c.slow && !c.closed
	info := c.info
	var out []byte
	if slow { // what waits behind the cut write is not sent: the error frame is
		out = c.buf.Frames()
		c.buf.Replace(nil)
	}
	c.mu.Unlock()
	if !slow {
		return false
	}
	c.discard(out, 0)
	c.writeArmed = time.Time{} // Deliver pulled the deadline in: the next write sets its own
	c.srv.slowConsumer(info.Identity, info.Client)
	c.log.Warn("disconnected a slow consumer: its outbound buffer is full and a subscription's policy is disconnect", "max_pending", c.srv.opts.MaxPending)
	c.sendError(wire.CodeSlowConsumer, 0, "your outbound buffer reached the server's MaxPending limit and a subscription's overflow policy is disconnect")
	c.close(errSlowConsumer)
	return true
}

// finalFlushTimeout bounds the last flush of a closing connection, so that
// Close and a forced Shutdown do not wait a whole WriteTimeout per client.
const finalFlushTimeout = 200 * time.Millisecond

func (c *conn) flushWithin(timeout time.Duration) error {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	for {
		c.mu.Lock()
		batch, head := c.buf.Take() // what an inline write left goes first
		var headBuf []byte
		headSent := 0
		if head {
			headBuf, headSent = c.headBuf, c.headSent
			c.headBuf, c.headSent = nil, 0
		} else if batch == nil {
			// Idle: an idle connection keeps small buffers only, so that
			// many of them after a burst do not hold megabytes each.
			c.buf.Idle()
			c.mu.Unlock()
			return nil
		}
		c.mu.Unlock()
		// Each write is bounded by between half and all of timeout: the
		// deadline is pushed out only when less than half is left, not per
		// batch.
		if now := time.Now(); timeout != c.srv.opts.WriteTimeout || c.writeArmed.Sub(now) < timeout/2 {
			c.writeArmed = now.Add(timeout)
			c.nc.SetWriteDeadline(c.writeArmed)
		}
		c.mu.Lock()
		slow := c.slow
		c.mu.Unlock()
		if c.abort.Load() || slow && timeout == c.srv.opts.WriteTimeout { // not the brief last flush
			// closeNow, or Deliver finding a slow consumer, may have pulled
			// the deadline in just before we pushed it out again: pull it
			// in once more.
			c.nc.SetWriteDeadline(time.Now())
		}
		n, err := c.writeChunks(batch)
		var rest []byte // the unsent end of a frame cut short, for a slow consumer's last flush
		if err != nil { // what did not go out whole is lost with the connection
			buf, sent := batch, n
			if head {
				buf, sent = headBuf, headSent+n
			}
			start := frameStart(buf, sent)
			c.mu.Lock()
			slow := c.slow
			c.mu.Unlock()
			if slow && start < sent { // Deliver cut this write short: finish the frame, then the error frame
				end := start + 4 + int(binary.BigEndian.Uint32(buf[start:]))
				rest, headBuf, headSent = buf[sent:end], buf[start:end], sent-start
				c.discard(buf[end:], 0)
			} else {
				c.discard(buf[start:], sent-start)
			}
		}
		c.mu.Lock()
		if head || rest != nil { // the end of an array that is not reused
			c.buf.Written(0)
		} else {
			c.buf.Done(batch) // keeps its array for the next batch
		}
		if rest != nil {
			c.buf.Unsent(rest)
			c.headBuf, c.headSent = headBuf, headSent
			head = true
		}
		c.releaseLocked()
		c.mu.Unlock()
		if err != nil || !head {
			return err
		}
		// out waited behind the head: write it too.
	}
}

// closeNow ends the connection without waiting for a write in progress:
// the writer's deadline is pulled to now, so a client that does not read
// cannot hold it for WriteTimeout. Nothing pending is sent.
func (c *conn) closeNow(why error) {
	c.abort.Store(true)
	c.close(why)
	c.nc.SetWriteDeadline(time.Now())
}

// close ends the connection: its subscriptions go, the writer flushes what
// is pending (an error frame) and closes the socket.
func (c *conn) close(why error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	c.done.Store(true)
	c.cancel()
	c.buf.WakeRoom()
	sub := c.sub
	c.mu.Unlock()
	if sub != nil {
		sub.Close()
	}
	if why != nil && !errors.Is(why, io.EOF) {
		c.log.Debug("connection closed", "reason", why)
	}
	close(c.closeCh)
	// Unblock the reader if it is waiting on the socket.
	c.nc.SetReadDeadline(time.Now())
}

// pendingChunk is the unit in which a connection takes bytes from the
// server's MaxPendingTotal: a connection touches the shared counter once
// per chunk of buffered frames and once per written batch, not per message.
const pendingChunk = 64 << 10

// reserveLocked takes from the server's budget enough for need bytes
// pending, in whole chunks. Unless force, it takes nothing and returns
// false if that would pass MaxPendingTotal. The caller holds mu.
func (c *conn) reserveLocked(need int, force bool) bool {
	add := int64(roundUp(need-c.reserved, pendingChunk))
	if c.srv.pendingTotal.Add(add) > int64(c.srv.opts.MaxPendingTotal) && !force {
		c.srv.pendingTotal.Add(-add)
		return false
	}
	c.reserved += int(add)
	return true
}

// releaseLocked gives back to the server's budget what the connection
// holds beyond its pending bytes, rounded up to a chunk: an idle
// connection holds none. The caller holds mu.
func (c *conn) releaseLocked() {
	if keep := roundUp(c.buf.Pending(), pendingChunk); c.reserved > keep {
		c.srv.pendingTotal.Add(-int64(c.reserved - keep))
		c.reserved = keep
	}
}

func roundUp(n, unit int) int { return (n + unit - 1) / unit * unit }

// frameStart returns the offset in b, a run of whole frames, of the frame
// that byte n belongs to (len(b) if n is at the end).
func frameStart(b []byte, n int) int {
	off := 0
	for off+4 <= len(b) {
		end := off + 4 + int(binary.BigEndian.Uint32(b[off:]))
		if end > n || end > len(b) {
			return off
		}
		off = end
	}
	return off
}

// discardPending discards what is still buffered when the writer ends: the
// socket is closed and nothing more will be written. It frees the buffers
// and gives their bytes back to the server's budget.
func (c *conn) discardPending() {
	c.mu.Lock()
	headBuf, headSent := c.headBuf, c.headSent
	_, out := c.buf.Reset()
	c.headBuf, c.headSent = nil, 0
	c.releaseLocked()
	c.mu.Unlock()
	c.discard(headBuf, headSent)
	c.discard(out, 0)
	// The server's totals take over the connection's drops.
	c.srv.dropsMu.Lock()
	c.mu.Lock()
	c.srv.closedDrops.add(c.drops)
	c.dropsMoved = true
	c.mu.Unlock()
	c.srv.dropsMu.Unlock()
	c.ended()
}

// discard counts the deliver frames in buf, a run of whole frames of which
// the first sent bytes were written, that did not go out whole: the
// broker took them as delivered, and they are lost with the connection.
// They are counted as dropped (DropDisconnect for a slow consumer, else
// DropClosed) against their subscriptions and topics instead, and in the
// connection's Discarded. A subscription the client had unsubscribed is
// no longer known by its id: its frames count only in Discarded. Only the
// writer calls discard, when a write failed or the connection ended.
func (c *conn) discard(buf []byte, sent int) {
	type key struct {
		sid   uint32
		topic string
	}
	var counts map[key]uint64
	for off := 0; off+wire.HeaderSize <= len(buf); {
		end := off + 4 + int(binary.BigEndian.Uint32(buf[off:]))
		if end > len(buf) || end < off+wire.HeaderSize {
			break
		}
		if wire.Type(buf[off+4]) == wire.TypeDeliver && end > sent {
			if d, err := wire.ParseDeliver(buf[off+5], buf[off+wire.HeaderSize:end]); err == nil {
				if counts == nil {
					counts = make(map[key]uint64)
				}
				counts[key{d.SID, string(d.Topic)}]++
			}
		}
		off = end
	}
	if len(counts) == 0 {
		return
	}
	type lost struct {
		s     *eventbus.Subscription
		topic string
		n     uint64
	}
	var subs []lost
	c.mu.Lock()
	why := eventbus.DropClosed
	if c.slowGone {
		why = eventbus.DropDisconnect
	}
	for k, n := range counts {
		c.drops.Discarded += n
		if s := c.subs[k.sid]; s != nil {
			subs = append(subs, lost{s, k.topic, n})
		}
	}
	c.mu.Unlock()
	for _, l := range subs {
		l.s.SinkDiscarded(l.topic, why, l.n)
	}
}
