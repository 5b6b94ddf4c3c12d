package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/protocol/transport"
	"github.com/daemoneye/daemoneye/internal/protocol/wire"
	"github.com/daemoneye/daemoneye/topics"
)

// Defaults for Options.
const (
	DefaultMaxConns         = 64
	DefaultMaxPreAuth       = 32
	DefaultHandshakeTimeout = 2 * time.Second
	DefaultIdleTimeout      = 2 * time.Minute
	DefaultWriteTimeout     = 10 * time.Second
	DefaultMaxPending       = 4 << 20 // bytes buffered for one connection
	DefaultPingInterval     = 30 * time.Second
	DefaultMaxSubscriptions = 4096
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("server: closed")

// Options configures a Server. Broker is required; every other zero value
// means its default.
type Options struct {
	Broker *eventbus.Broker
	// Logger receives connection-level diagnostics; nil discards them.
	Logger *slog.Logger
	// MaxConns bounds concurrent authenticated connections (default 64).
	// A connection counts against it from its welcome on; one over the
	// limit gets an error frame (code limit) and is closed. The local
	// operator (see MaxPreAuth) may exceed it by OperatorReserve, so that
	// other identities cannot lock it out.
	MaxConns int
	// MaxPreAuth bounds the connections that have not authenticated yet
	// (default 32, at most MaxConns): accepted, but before their welcome.
	// A connection over it is refused at once with an error frame (code
	// limit) and does not reach the handshake. The local operator, a
	// UNIX socket peer that is root or the server's own user (known from
	// SO_PEERCRED at accept, before it sends a byte), is not counted: no
	// number of silent TCP, TLS or other users' UNIX connections can keep
	// it out. The operator's own connections are bounded only by
	// HandshakeTimeout and the process's file limit: a process running as
	// root or as the server's user can stop the server anyway.
	// Connections handed over with ServeConn are not counted either.
	MaxPreAuth int
	// HandshakeTimeout bounds the time from accept to a complete hello,
	// TLS handshake included (default 2 s), so that a silent client holds
	// a MaxPreAuth slot only briefly.
	HandshakeTimeout time.Duration
	// IdleTimeout closes a connection that sends nothing for this long
	// (default 2 min). Clients ping at half the interval in the welcome.
	IdleTimeout time.Duration
	// WriteTimeout bounds each flush to a connection (default 10 s); a
	// client that does not read within it is disconnected.
	WriteTimeout time.Duration
	// MaxPending bounds the bytes buffered for one connection, counting
	// the batch being written (default 4 MiB). Beyond it, each
	// subscription's overflow policy decides: block makes the publisher
	// wait for the writer, at most MaxStall, so a publishing client's
	// reader stalls briefly and backpressure reaches it; if no room
	// appears in that time the connection is closed as a slow consumer.
	// drop-newest and drop-oldest drop the new message (frames already in
	// the buffer cannot be taken back); disconnect closes the connection
	// as a slow consumer. Every drop is counted in the broker's stats and
	// the connection's ConnStats.Dropped. A client whose control frames
	// (pongs, acks, errors) would pass the bound is not reading and is
	// closed. Per-subscription MaxMessages and MaxBytes do not apply over
	// the socket: this bound is per connection.
	MaxPending int
	// MaxPendingTotal bounds the bytes buffered for all connections
	// together (default 128 MiB), taken in 64 KiB chunks. A delivery that
	// would pass it is dropped for that connection and counted as Full,
	// whatever the subscription's policy: waiting for one client's room
	// cannot free another's.
	MaxPendingTotal int
	// MaxStall bounds how long a publisher waits for room at one
	// connection under the block policy (default 50 ms); a client's
	// BlockTimeout can only shorten it. When a wait ends without room the
	// connection is closed as a slow consumer, so no publisher waits for it
	// again: a client that stops reading holds others back at most about
	// MaxStall, once; if it reconnects (same identity and client name)
	// within SlowConsumerCooloff, its block subscriptions are made
	// disconnect, so it cannot stall anyone again meanwhile.
	MaxStall time.Duration
	// MayBlock, if set, admits identities beyond the local operator (root
	// and the server's own user) to the block policy. A block
	// subscription of any other identity is made disconnect: a client that
	// cannot keep up loses its connection rather than stalling publishers.
	// It is called once per connection, after the handshake.
	MayBlock func(identity string) bool
	// MaxSubscriptions bounds the subscriptions of one connection (default
	// 4096); more are refused with CodeLimit.
	MaxSubscriptions int
	// NoStatsService stops the server from answering stats requests on
	// topics.BrokerStats (as daemoneye-cli stats sends them).
	NoStatsService bool
	// Auth says who may connect and how they prove it; the zero value
	// admits root and the server's own user over a UNIX socket.
	Auth Auth
	// Authorizer, if set, decides what each connected identity may
	// publish and subscribe to; refusals are answered with code forbidden
	// and counted in Stats. Nil: every identity Auth admits may do
	// everything. In-process clients of the broker are not subject to it.
	// A *ACL with no Policy is used with the broker's (see ACL.Policy).
	Authorizer Authorizer
}

// Server serves the wire protocol on listeners, connecting each client to
// the broker. It is safe for concurrent use.
type Server struct {
	opts  Options
	log   *slog.Logger
	guard *authGuard // throttles and logs failed authentication per source

	mu          sync.Mutex
	listeners   map[net.Listener]struct{}
	conns       map[*conn]struct{}
	closed      bool
	preAuth     int // connections of classOther before their welcome: bounded by MaxPreAuth
	handshaking int // every connection before its welcome (stats)
	authed      int // connections after their welcome, except ServeConn's: bounded by MaxConns (+ OperatorReserve)

	refusedPreAuth, refusedConns atomic.Uint64 // connections refused at the MaxPreAuth and MaxConns limits

	wg    sync.WaitGroup         // every connection goroutine
	stats *eventbus.Subscription // answers topics.BrokerStats; nil if disabled

	deniedPublishes, deniedSubscribes atomic.Uint64
	slowConsumers                     atomic.Uint64 // connections closed as slow consumers
	reclaimArmed                      atomic.Bool   // a reclaim is pending (budgetSpent)
	pendingTotal                      atomic.Int64  // bytes of MaxPendingTotal the connections hold
	dropsMu                           sync.Mutex    // held while closed connections' drops move into closedDrops
	slowMu                            sync.Mutex
	reclaimTimer                      *time.Timer           // under slowMu: closes stuck writers while MaxPendingTotal is spent
	reclaimOff                        bool                  // under slowMu: the server is closing
	slowRecent                        map[slowKey]time.Time // clients closed as slow consumers, and when; under slowMu
	closedDrops                       ConnDrops             // of connections that have ended; under dropsMu
	partialInline                     atomic.Uint64         // inline writes the socket took only part of (tests)
}

// New returns a server for opts.Broker.
func New(opts Options) (*Server, error) {
	if opts.Broker == nil {
		return nil, errors.New("server: Options.Broker is required")
	}
	if opts.MaxConns < 0 || opts.MaxPreAuth < 0 || opts.MaxPending < 0 || opts.MaxSubscriptions < 0 || opts.MaxPendingTotal < 0 || opts.MaxStall < 0 {
		return nil, errors.New("server: MaxConns, MaxPreAuth, MaxPending, MaxPendingTotal, MaxStall and MaxSubscriptions must not be negative")
	}
	if err := opts.Auth.Validate(); err != nil {
		return nil, err
	}
	if acl, ok := opts.Authorizer.(*ACL); ok && acl != nil {
		// The grants are patterns of the broker's topics: match them
		// with its policy, on a copy, so the caller's ACL is not modified.
		own := *acl
		if own.Policy == nil {
			own.Policy = opts.Broker.Policy()
		}
		if err := own.Validate(); err != nil {
			return nil, err
		}
		opts.Authorizer = &own
	}
	opts.MaxSubscriptions = or(opts.MaxSubscriptions, DefaultMaxSubscriptions)
	opts.MaxConns = or(opts.MaxConns, DefaultMaxConns)
	opts.MaxPreAuth = min(or(opts.MaxPreAuth, DefaultMaxPreAuth), opts.MaxConns)
	opts.MaxPending = or(opts.MaxPending, DefaultMaxPending)
	opts.MaxPendingTotal = or(opts.MaxPendingTotal, max(DefaultMaxPendingTotal, opts.MaxPending))
	opts.MaxStall = or(opts.MaxStall, DefaultMaxStall)
	opts.HandshakeTimeout = or(opts.HandshakeTimeout, DefaultHandshakeTimeout)
	opts.IdleTimeout = or(opts.IdleTimeout, DefaultIdleTimeout)
	opts.WriteTimeout = or(opts.WriteTimeout, DefaultWriteTimeout)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Server{
		opts: opts, log: log, guard: newAuthGuard(log),
		listeners: make(map[net.Listener]struct{}), conns: make(map[*conn]struct{}),
	}
	if !opts.NoStatsService {
		var err error
		if s.stats, err = s.serveStats(); err != nil {
			return nil, fmt.Errorf("server: answer stats requests on %s: %w", topics.BrokerStats, err)
		}
	}
	return s, nil
}

func or[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

// Serve accepts connections on l until Shutdown or Close, and returns
// ErrServerClosed then. Any other accept error is returned at once,
// except temporary ones, which are retried with backoff.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		nc, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			if retryableAccept(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.log.Warn("accept failed; retrying", "err", err, "backoff", backoff)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("server: accept: %w", err)
		}
		backoff = 0
		s.start(nc)
	}
}

// retryableAccept reports accept errors that pass: timeouts, running out
// of file descriptors or memory, a connection aborted before accept.
func retryableAccept(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// OperatorReserve is how many connections of the local operator (root or
// the server's own user over a UNIX socket) are admitted beyond MaxConns,
// so that other identities filling MaxConns cannot lock it out.
const OperatorReserve = 8

// start admits nc as a connection before its handshake and runs its
// goroutines, or refuses it at the MaxPreAuth or MaxConns limit. It never
// waits for the peer: a refusal is written by a goroutine of its own.
// It starts goroutines under s.mu, so that they are counted before
// Close, which sets closed under s.mu, waits for them.
func (s *Server) start(nc net.Conn) {
	class := classify(nc) // a getsockopt, before s.mu
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		nc.Close()
		return
	}
	if class == classOther {
		switch {
		case s.authed >= s.opts.MaxConns:
			s.refuse(nc, &s.refusedConns, s.connLimitText())
			return
		case s.preAuth >= s.opts.MaxPreAuth:
			s.refuse(nc, &s.refusedPreAuth, fmt.Sprintf(
				"the server already has %d connections that have not authenticated yet (its MaxPreAuth limit): try again in a moment", s.opts.MaxPreAuth))
			return
		}
		s.preAuth++
	}
	c := newConn(s, nc)
	c.class = class
	s.launch(c)
}

// launch registers c as handshaking and starts its goroutines; under s.mu.
func (s *Server) launch(c *conn) {
	c.stage = stageHandshake
	s.handshaking++
	s.conns[c] = struct{}{}
	s.wg.Go(c.readLoop)
	s.wg.Go(c.writeLoop)
}

func (s *Server) connLimitText() string {
	return fmt.Sprintf("the server's limit of %d connections is reached: try later, or raise the broker's max connections", s.opts.MaxConns)
}

// admit moves c, authenticated, from the handshake to a MaxConns slot, or
// returns an error saying why it may not have one.
func (s *Server) admit(c *conn) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.stage != stageHandshake {
		return net.ErrClosed // forgotten meanwhile
	}
	limit := s.opts.MaxConns
	if c.class == classOperator {
		limit += OperatorReserve
	}
	if c.class != classEmbedded && s.authed >= limit {
		s.refusedConns.Add(1)
		return fmt.Errorf("%w: %s", errConnLimit, s.connLimitText())
	}
	s.leaveHandshake(c)
	c.stage = stageAdmitted
	if c.class != classEmbedded {
		s.authed++
	}
	return nil
}

var errConnLimit = errors.New("connection limit")

// leaveHandshake releases what c held before its welcome; under s.mu.
func (s *Server) leaveHandshake(c *conn) {
	s.handshaking--
	if c.class == classOther {
		s.preAuth--
	}
}

// forget releases a finished connection's slot.
func (s *Server) forget(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
	switch c.stage {
	case stageHandshake:
		s.leaveHandshake(c)
	case stageAdmitted:
		if c.class != classEmbedded {
			s.authed--
		}
	}
	c.stage = stageGone
}

// refuseTimeout bounds the writing of a refusal, in which a TLS
// connection's handshake takes part, so that a flood of refused
// connections holds few descriptors and goroutines.
const refuseTimeout = 500 * time.Millisecond

// refuse counts a refusal and writes one error frame to nc from a
// goroutine of its own, within refuseTimeout, then closes it. Under s.mu.
func (s *Server) refuse(nc net.Conn, counter *atomic.Uint64, text string) {
	counter.Add(1)
	timeout := min(s.opts.HandshakeTimeout, s.opts.WriteTimeout, refuseTimeout)
	s.wg.Go(func() {
		nc.SetWriteDeadline(time.Now().Add(timeout))
		nc.Write(wire.AppendError(nil, wire.TypeError, &wire.ErrorBody{Code: wire.CodeLimit, Text: []byte(text)}))
		nc.Close()
	})
}

// connClass says how a connection is counted before and after its
// handshake.
type connClass uint8

const (
	classOther    connClass = iota // counted against MaxPreAuth, then MaxConns
	classOperator                  // root or the server's user over a UNIX socket: MaxConns + OperatorReserve only
	classEmbedded                  // handed over with ServeConn: not counted
)

// classify tells the local operator, a UNIX socket peer that is root or
// the server's own user, from everyone else. The peer credentials are the
// kernel's, from connect time: the peer need not have sent anything.
func classify(nc net.Conn) connClass {
	uc, ok := nc.(*net.UnixConn)
	if !ok {
		return classOther
	}
	cred, err := transport.PeerCredOf(uc)
	if err != nil {
		return classOther
	}
	if cred.UID == 0 || cred.UID == uint32(os.Getuid()) {
		return classOperator
	}
	return classOther
}

// Connection stages, for the slot accounting; under Server.mu.
const (
	stageNew       = iota // not yet launched
	stageHandshake        // counted in handshaking (and preAuth for classOther)
	stageAdmitted         // welcomed: counted in authed (unless classEmbedded)
	stageGone             // forgotten
)

// Shutdown stops accepting, asks every client to go away, and waits until
// they have disconnected or ctx ends; then it closes the rest. It returns
// ctx's error if it had to force connections closed.
func (s *Server) Shutdown(ctx context.Context) error {
	conns := s.stopAccepting()
	for _, c := range conns {
		c.goAway("the server is shutting down")
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for len(s.liveConns()) > 0 {
		select {
		case <-tick.C:
		case <-ctx.Done():
			for _, c := range s.liveConns() {
				c.closeNow(errors.New("shutdown deadline"))
			}
			s.wg.Wait()
			return fmt.Errorf("server: shutdown: %w", ctx.Err())
		}
	}
	s.wg.Wait()
	return nil
}

// Close closes all listeners and connections at once and waits for their
// goroutines.
func (s *Server) Close() error {
	for _, c := range s.stopAccepting() {
		c.closeNow(ErrServerClosed)
	}
	s.wg.Wait()
	return nil
}

func (s *Server) stopAccepting() []*conn {
	s.stopReclaim()
	if s.stats != nil {
		s.stats.Unsubscribe()
	}
	s.guard.stop()
	s.mu.Lock()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	return s.liveConns()
}

func (s *Server) liveConns() []*conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

func newSessionID() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
