package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/envelope"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Request is one RPC as a handler sees it. In process it shares its
// messages with the caller: read them, do not modify them.
type Request struct {
	// Topic is the topic the request was published to.
	Topic string
	// Envelope is the whole message: metadata (sender, version) and
	// correlation.
	Envelope *eventbusv1.EventBusMessage
	// Call is the request itself: operation, body, deadline, attempt.
	Call *eventbusv1.RpcRequest
}

// Handler serves requests. ServeRPC returns the response body (its body
// field set for the operation; the Server fills in the request id, the
// operation, the status and the completion time), which it must not
// modify afterwards (in process the caller receives the very object), or
// an error: an *Error
// to say exactly what the caller sees, or any error, reported as
// category INTERNAL. ctx ends when the request's deadline passes or the
// Server closes; it carries the request's correlation (CorrelationFrom),
// so calls made with it continue the workflow. ServeRPC may be called
// concurrently, up to ServerOptions.MaxConcurrent at once.
type Handler interface {
	ServeRPC(ctx context.Context, req *Request) (*eventbusv1.RpcResponse, error)
}

// An InlineHandler is a Handler that knows which requests it answers
// quickly and without blocking (no waiting on I/O, on locks held for long,
// or on calls over the Server's own connection). The Server runs those on
// the goroutine that reads its connection, so a request reaches its
// handler and its answer goes out with no hand-off between goroutines: on
// a 2-core machine that saves tens of microseconds per call (see
// BENCHMARKS.md). While such a handler runs, nothing else arrives on the
// connection. Other requests run on the Server's worker goroutines.
type InlineHandler interface {
	Handler
	// Inline reports whether ServeRPC answers req quickly without
	// blocking. It is called on the connection's reading goroutine and
	// must itself be quick.
	Inline(req *Request) bool
}

// InlineFunc adapts a function that answers every request quickly and
// without blocking to an InlineHandler.
type InlineFunc func(ctx context.Context, req *Request) (*eventbusv1.RpcResponse, error)

// ServeRPC calls f.
func (f InlineFunc) ServeRPC(ctx context.Context, req *Request) (*eventbusv1.RpcResponse, error) {
	return f(ctx, req)
}

// Inline reports true: f answers every request inline.
func (InlineFunc) Inline(*Request) bool { return true }

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, req *Request) (*eventbusv1.RpcResponse, error)

// ServeRPC calls f.
func (f HandlerFunc) ServeRPC(ctx context.Context, req *Request) (*eventbusv1.RpcResponse, error) {
	return f(ctx, req)
}

// ServerOptions configures a Server. The zero value is usable.
type ServerOptions struct {
	// ID names this instance in responses (source id, routing instance
	// id). Default: the connection's identity.
	ID string
	// QueueGroup makes instances that use the same group share requests:
	// each request goes to one of them, round robin, skipping those whose
	// connection is full. Empty: every subscribed Server gets every
	// request (and the caller takes the first answer).
	QueueGroup string
	// MaxConcurrent bounds the handlers running at once. A request beyond
	// it is answered at once with UNAVAILABLE (code "overloaded",
	// retryable), so an idempotent caller retries, possibly on another
	// instance, instead of timing out. Default 64.
	MaxConcurrent int
	// Logger receives reports of replies that could not be sent and of
	// requests that could not be decoded, at debug and warn levels.
	// Default: silent.
	Logger *slog.Logger
}

// ServerStats counts what a Server did. Every request received is counted
// in exactly one of Handled, Failed, Rejected, Expired and Malformed.
type ServerStats struct {
	Received  uint64 // requests that reached the Server
	Handled   uint64 // answered with SUCCESS
	Failed    uint64 // answered with an error from the handler
	Rejected  uint64 // refused: overloaded, shutting down, or other major version
	Expired   uint64 // their deadline had passed on arrival
	Malformed uint64 // undecodable, invalid, or without a reply topic
	// ReplyFailed counts responses that could not be published (the
	// connection closed, the payload was too large); their callers time
	// out.
	ReplyFailed uint64
}

// Server answers RPC requests on a Conn: it subscribes to the patterns
// given to Handle, decodes each request on the goroutine that reads the
// connection, runs its handler there (an InlineHandler's quick requests)
// or on a worker goroutine, with the request's deadline, and publishes
// the response to the caller's reply topic. Shutdown stops it gracefully,
// Close at once. A Server is safe for concurrent use.
type Server struct {
	conn    *client.Conn
	opts    ServerOptions
	ctx     context.Context // handlers' base context, cancelled by Close
	cancel  context.CancelFunc
	log     *slog.Logger
	running atomic.Int32 // handlers running, at most MaxConcurrent

	mu     sync.Mutex
	closed bool
	subs   []*client.Subscription
	wg     sync.WaitGroup // requests being served; Add from zero only under mu while !closed (see enter)

	work    chan job       // to an idle worker; unbuffered
	quit    chan struct{}  // closed by stop: idle workers return
	workers sync.WaitGroup // the workers; waited for after wg

	received, handled, failed, rejected, expired, malformed, replyFailed atomic.Uint64
}

// NewServer returns a Server that answers on conn. It starts nothing until
// Handle.
func NewServer(conn *client.Conn, opts ServerOptions) *Server {
	if opts.ID == "" {
		opts.ID = conn.Identity()
	}
	if opts.MaxConcurrent <= 0 {
		opts.MaxConcurrent = 64
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Server{conn: conn, opts: opts, ctx: ctx, cancel: cancel, log: log, work: make(chan job), quit: make(chan struct{})}
}

// ID returns the instance id the Server answers as.
func (s *Server) ID() string { return s.opts.ID }

// Handle subscribes to pattern (a topic or a pattern with + and #, under
// control.) and serves its requests with h. It returns once the broker has
// accepted the subscription, so a request published after it returns
// reaches h.
func (s *Server) Handle(ctx context.Context, pattern string, h Handler) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.mu.Unlock()
	sub, err := s.conn.SubscribeFunc(ctx, pattern, client.SubscribeOptions{QueueGroup: s.opts.QueueGroup, Inline: true},
		func(m *client.Msg) { s.receive(m, h) })
	if err != nil {
		return fmt.Errorf("rpc: serve %q: %w", pattern, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		sub.Unsubscribe()
		return ErrServerClosed
	}
	s.subs = append(s.subs, sub)
	return nil
}

// enter counts a request in the WaitGroup that Shutdown and Close wait
// for, unless the Server is closed.
func (s *Server) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.wg.Add(1)
	return true
}

// Stats returns the Server's counters.
func (s *Server) Stats() ServerStats {
	return ServerStats{
		Received: s.received.Load(), Handled: s.handled.Load(), Failed: s.failed.Load(),
		Rejected: s.rejected.Load(), Expired: s.expired.Load(), Malformed: s.malformed.Load(),
		ReplyFailed: s.replyFailed.Load(),
	}
}

// Shutdown stops taking requests gracefully. It drains the Server's
// subscriptions (Subscription.Drain): the broker sends new requests to
// other instances of the queue group, or fails them with no responders,
// while the requests already on their way are still received and
// handled. Then it waits for the running handlers. If ctx ends first, it
// ends the subscriptions at once (requests not yet received are lost:
// their callers time out, or retry elsewhere if idempotent), cancels the
// handlers' contexts, waits for them to return, and returns ctx's error.
// It does not close the Conn.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	for _, sub := range subs {
		sub.Drain(ctx) // on ctx's end it unsubscribes, and the wait below reports ctx's error
	}
	s.stop()
	done := make(chan struct{})
	go func() { s.wg.Wait(); s.workers.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.cancel()
		<-done
		return fmt.Errorf("rpc: shutdown: handlers still running were cancelled: %w", ctx.Err())
	}
}

// Close stops taking requests at once (requests on their way are lost),
// cancels the running handlers' contexts and waits for them to return.
//
// The Server owns its goroutines: Close or Shutdown it to release them.
// Closing its Conn alone does not.
func (s *Server) Close() error {
	s.stop()
	s.cancel()
	s.wg.Wait()
	s.workers.Wait()
	return nil
}

func (s *Server) stop() {
	s.mu.Lock()
	if !s.closed {
		close(s.quit)
	}
	s.closed = true
	subs := s.subs
	s.subs = nil
	s.mu.Unlock()
	for _, sub := range subs {
		sub.Unsubscribe()
	}
}

// receive handles one request from a subscription, on the goroutine that
// reads the connection (Inline): it decodes and checks the request, and
// runs the handler there if it is an InlineHandler's quick request, or
// else on a worker. A request it cannot run is answered at once. m is
// reused after receive returns.
func (s *Server) receive(m *client.Msg, h Handler) {
	s.received.Add(1)
	at := time.Now()
	if m.Reply == "" {
		s.malformed.Add(1)
		s.log.Debug("rpc: dropped a message with no reply topic", "topic", m.Topic)
		return
	}
	req := &Request{Topic: m.Topic, Envelope: new(eventbusv1.EventBusMessage)}
	reply := m.Reply
	if env, ok := envelope.FromValue(m.Value); ok {
		req.Envelope = env // in process: the caller's own, nothing to decode
	} else if err := proto.Unmarshal(m.Payload, req.Envelope); err != nil {
		s.malformed.Add(1)
		s.answer(req, reply, at, at, Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_VALIDATION, CodeInvalidRequest,
			"the request is not a protobuf EventBusMessage: %v", err), nil)
		return
	}
	// Best effort for the answers below: echo the request id if there is one.
	req.Call = req.Envelope.GetRpcRequest().GetRequest()
	if v := req.Envelope.GetMetadata().GetVersion(); v != nil && v.GetMajor() != envelope.VersionMajor {
		s.rejected.Add(1)
		s.answer(req, reply, at, at, Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNSUPPORTED, CodeVersionUnsupported,
			"the request uses schema version %d.%d; this service speaks %d.x (up to %s): use a client built for major version %d",
			v.GetMajor(), v.GetMinor(), envelope.VersionMajor, envelope.Version, envelope.VersionMajor), nil)
		return
	}
	if err := envelope.ValidateWith(req.Envelope, s.conn.Policy()); err != nil || req.Call == nil {
		if err == nil {
			err = fmt.Errorf("the payload is a %v, not an RPC request", envelope.MessageTypeOf(req.Envelope))
		}
		s.malformed.Add(1)
		s.answer(req, reply, at, at, Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_VALIDATION, CodeInvalidRequest, "%v", err), nil)
		return
	}
	deadline := time.Time{}
	if d := req.Call.GetDeadline(); d != nil {
		deadline = d.AsTime()
		if !at.Before(deadline) {
			s.expired.Add(1)
			s.answer(req, reply, at, at, Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_TIMEOUT, CodeDeadlineExceeded,
				"the request's deadline had passed when it arrived (%v late)", at.Sub(deadline).Round(time.Microsecond)), nil)
			return
		}
	}
	if !s.enter() { // closed: a request that still arrives is refused, retryably
		s.rejected.Add(1)
		s.answer(req, reply, at, at, Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNAVAILABLE, CodeShuttingDown,
			"the service is shutting down; retry on another instance"), nil)
		return
	}
	defer s.wg.Done()
	if s.running.Add(1) > int32(s.opts.MaxConcurrent) {
		s.running.Add(-1)
		s.rejected.Add(1)
		s.answer(req, reply, at, at, Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNAVAILABLE, CodeOverloaded,
			"%d requests are running already (MaxConcurrent); retry, or add instances to the queue group", s.opts.MaxConcurrent), nil)
		return
	}
	if s.ctx.Err() != nil {
		s.running.Add(-1)
		s.rejected.Add(1)
		s.answer(req, reply, at, at, Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNAVAILABLE, CodeShuttingDown,
			"the service is shutting down; retry on another instance"), nil)
		return
	}
	if ih, ok := h.(InlineHandler); ok && ih.Inline(req) {
		s.run(req, reply, at, deadline, h)
		s.running.Add(-1)
		return
	}
	s.wg.Add(1) // the count enter took is still held: not an Add from zero
	j := job{req: req, reply: reply, received: at, deadline: deadline, h: h}
	select {
	case s.work <- j: // an idle worker took it
	default:
		s.workers.Go(func() { s.worker(j) })
	}
}

// job is a request for a worker: its handler may block.
type job struct {
	req                *Request
	reply              string
	received, deadline time.Time
	h                  Handler
}

// worker runs j and then the jobs handed to it, until the Server stops.
// Workers stay, so a request costs a hand-off to an idle one rather than
// a new goroutine whose stack grows again; there are about as many as
// handlers ran at once (MaxConcurrent, give or take one that is finishing).
func (s *Server) worker(j job) {
	for {
		s.run(j.req, j.reply, j.received, j.deadline, j.h)
		s.running.Add(-1)
		s.wg.Done()
		select {
		case j = <-s.work:
		case <-s.quit:
			return
		}
	}
}

func (s *Server) run(req *Request, reply string, received, deadline time.Time, h Handler) {
	ctx := newHandlerContext(WithCorrelation(s.ctx, req.Envelope.GetCorrelation()), deadline, req)
	defer ctx.release()
	start := time.Now()
	resp, err := h.ServeRPC(ctx, req)
	if err != nil {
		s.failed.Add(1)
		s.answer(req, reply, received, start, toError(err), nil)
		return
	}
	s.handled.Add(1)
	s.answer(req, reply, received, start, nil, resp)
}

// answer publishes the response to a request: resp on success, or e.
func (s *Server) answer(req *Request, reply string, received, started time.Time, e *Error, resp *eventbusv1.RpcResponse) {
	now := time.Now()
	if resp == nil {
		resp = &eventbusv1.RpcResponse{}
	}
	resp.RequestId = req.Call.GetRequestId()
	resp.Operation = req.Call.GetOperation()
	resp.Method = req.Call.GetMethod()
	resp.CompletedAt = timestamppb.New(now)
	if e != nil {
		resp.Status, resp.Error, resp.Body = e.Status, e.Detail, nil
	} else {
		resp.Status, resp.Error = eventbusv1.RpcStatus_RPC_STATUS_SUCCESS, nil
	}
	msg := envelope.New(reply, now, &eventbusv1.RpcResponsePayload{
		Response:           resp,
		PerformanceMetrics: &eventbusv1.RpcPerformanceMetrics{ProcessingTime: durationpb.New(now.Sub(started))},
	})
	msg.Metadata.SourceId = s.opts.ID
	msg.Metadata.TargetId = req.Call.GetClientId()
	if c := req.Envelope.GetCorrelation(); c != nil {
		msg.Correlation = envelope.Child(c)
	} else {
		msg.Correlation = envelope.NewRoot()
	}
	err := s.conn.RespondMsg(&client.Msg{Topic: req.Topic, Reply: reply}, &client.Msg{Value: envelope.Lazy{M: msg}})
	if err != nil {
		s.replyFailed.Add(1)
		if !errors.Is(err, client.ErrClosed) {
			s.log.Warn("rpc: could not send a response", "topic", req.Topic, "request_id", resp.RequestId, "err", err)
		}
	}
}
