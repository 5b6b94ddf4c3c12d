package rpc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/envelope"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Defaults of ClientOptions.
const (
	DefaultTimeout         = 5 * time.Second
	DefaultMaxAttempts     = 3
	DefaultBackoff         = 25 * time.Millisecond
	DefaultMaxBackoff      = time.Second
	DefaultBreakerFailures = 5
	DefaultBreakerCooldown = 2 * time.Second
)

// ClientOptions configures a Client. The zero value is usable.
type ClientOptions struct {
	// ID is the caller's id in requests (client id, source id). Default:
	// the connection's identity.
	ID string
	// Timeout bounds a call whose context has no deadline. Default 5 s.
	Timeout time.Duration
	// AttemptTimeout bounds each attempt of an idempotent call, so that a
	// request lost with a service instance that died is retried (on
	// another instance of its queue group) before the call's deadline.
	// Zero: an attempt may take all the time the call has left.
	AttemptTimeout time.Duration
	// MaxAttempts is how many times an idempotent call is tried in all
	// (default 3; 1 turns retries off). Calls not marked idempotent are
	// tried once.
	MaxAttempts int
	// Backoff is the wait before the first retry (default 25 ms); it
	// doubles for each further retry up to MaxBackoff (default 1 s), with
	// ±50% jitter. A service's retry_after hint takes precedence.
	Backoff, MaxBackoff time.Duration
	// BreakerFailures is how many calls in a row to one topic must fail
	// for lack of a service (no responders, timeouts, unavailable) before
	// its circuit opens and calls to it fail at once with ErrCircuitOpen
	// (default 5; negative turns the breaker off). After BreakerCooldown
	// (default 2 s) one call is let through; its success closes the
	// circuit.
	BreakerFailures int
	// BreakerCooldown: see BreakerFailures.
	BreakerCooldown time.Duration
	// Logger receives a debug line per retry. Default: silent.
	Logger *slog.Logger
}

// Client makes RPC calls over a Conn: it wraps each request in an
// envelope with the call's deadline and correlation, publishes it as a
// broker request, and decodes the response. It retries idempotent calls
// and keeps a circuit breaker per topic. A Client is safe for concurrent
// use.
type Client struct {
	conn     *client.Conn
	opts     ClientOptions
	log      *slog.Logger
	breakers breakers
}

// NewClient returns a Client that calls over conn.
func NewClient(conn *client.Conn, opts ClientOptions) *Client {
	if opts.ID == "" {
		opts.ID = conn.Identity()
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxAttempts <= 0 {
		opts.MaxAttempts = DefaultMaxAttempts
	}
	if opts.Backoff <= 0 {
		opts.Backoff = DefaultBackoff
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = DefaultMaxBackoff
	}
	if opts.BreakerFailures == 0 {
		opts.BreakerFailures = DefaultBreakerFailures
	}
	if opts.BreakerCooldown <= 0 {
		opts.BreakerCooldown = DefaultBreakerCooldown
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Client{conn: conn, opts: opts, log: log}
	c.breakers.init(opts.BreakerFailures, opts.BreakerCooldown)
	return c
}

// Call sends req to the service on topic and returns its response, whose
// status is SUCCESS. Call fills in req's request id (when empty), its
// operation (from the body, when unspecified), client id, deadline and
// attempt. Call takes req over: in process the service reads the very
// object (nothing is serialized for it), possibly after Call has returned
// with a timeout, so do not modify req afterwards. Likewise the response
// may be shared with the service: read it, do not modify it. The deadline
// is ctx's, or ClientOptions.Timeout from now.
//
// A failed call returns an error that matches the package's sentinels: an
// *Error when the service answered with a failure (errors.As gives the
// code, category and details), ErrNoResponders when no service subscribes
// to topic, ErrTimeout when no answer came in time, ErrCircuitOpen when
// recent calls to topic failed. Calls with req.Idempotent set are retried
// with backoff after failures that may pass (no responders, a lost
// attempt, a retryable error), up to ClientOptions.MaxAttempts, keeping
// the request id so that the service can tell a retry.
func (c *Client) Call(ctx context.Context, topic string, req *eventbusv1.RpcRequest) (*eventbusv1.RpcResponse, error) {
	if req.GetRequestId() == "" {
		req.RequestId = envelope.NewID()
	}
	if req.GetOperation() == eventbusv1.RpcOperation_RPC_OPERATION_UNSPECIFIED {
		req.Operation = envelope.RequestOperation(req)
	}
	req.ClientId = c.opts.ID
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.Timeout)
		defer cancel()
	}
	attempts := 1
	if req.GetIdempotent() {
		attempts = c.opts.MaxAttempts
	}
	corr := CorrelationFrom(ctx)
	if corr != nil {
		corr = envelope.Child(corr)
	} else {
		corr = envelope.NewRoot()
	}
	var err error
	for attempt := 1; ; attempt++ {
		var resp *eventbusv1.RpcResponse
		var after time.Duration
		resp, after, err = c.attempt(ctx, topic, req, corr, uint32(attempt))
		if err == nil {
			return resp, nil
		}
		if attempt >= attempts || ctx.Err() != nil || after < 0 {
			break
		}
		if after == 0 {
			after = backoff(c.opts.Backoff, c.opts.MaxBackoff, attempt)
		}
		c.log.Debug("rpc: retrying", "topic", topic, "request_id", req.RequestId, "attempt", attempt+1, "after", after, "err", err)
		t := time.NewTimer(after)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("%s on %s: %w", callName(req), topic, err)
}

// attempt makes one try. after says whether the error may pass: -1 no,
// 0 yes after the backoff, >0 yes after that long.
func (c *Client) attempt(ctx context.Context, topic string, req *eventbusv1.RpcRequest, corr *eventbusv1.CorrelationMetadata, n uint32) (*eventbusv1.RpcResponse, time.Duration, error) {
	b, err := c.breakers.allow(topic)
	if err != nil {
		return nil, -1, err
	}
	actx := ctx
	if c.opts.AttemptTimeout > 0 && req.GetIdempotent() {
		var cancel context.CancelFunc
		actx, cancel = context.WithTimeout(ctx, c.opts.AttemptTimeout)
		defer cancel()
	}
	deadline, _ := actx.Deadline()
	now := time.Now()
	if n > 1 {
		// In process the service shares the request (Msg.Value): a handler
		// of an earlier attempt may still be reading it.
		req = proto.Clone(req).(*eventbusv1.RpcRequest)
	}
	req.Attempt = n
	req.Deadline = timestamppb.New(deadline)
	msg := envelope.New(topic, now, &eventbusv1.RpcRequestPayload{Request: req})
	msg.Metadata.SourceId = c.opts.ID
	msg.Metadata.TargetId = req.GetTargetId()
	msg.Correlation = corr
	// No payload: the Conn encodes the envelope only if it leaves the
	// process (envelope.Lazy).
	reply, err := c.conn.RequestMsg(actx, &client.Msg{Topic: topic, Value: envelope.Lazy{M: msg}})
	if err != nil {
		switch {
		case errors.Is(err, context.DeadlineExceeded):
			c.breakers.done(topic, b, false)
			return nil, 0, fmt.Errorf("%w: no response within %v (attempt %d): %w", ErrTimeout, deadline.Sub(now).Round(time.Millisecond), n, err)
		case errors.Is(err, context.Canceled):
			c.breakers.done(topic, b, true)
			return nil, -1, fmt.Errorf("%w: %w", ErrCancelled, err)
		case errors.Is(err, client.ErrNoResponders), errors.Is(err, client.ErrDisconnected):
			c.breakers.done(topic, b, false)
			return nil, 0, err
		}
		c.breakers.done(topic, b, true)
		return nil, -1, err
	}
	resp, err := decodeResponse(reply, req)
	if err != nil {
		c.breakers.done(topic, b, true)
		return nil, -1, err
	}
	if resp.GetStatus() == eventbusv1.RpcStatus_RPC_STATUS_SUCCESS {
		c.breakers.done(topic, b, true)
		return resp, -1, nil
	}
	e := &Error{Status: resp.GetStatus(), Detail: resp.GetError()}
	if e.Detail == nil {
		e.Detail = &eventbusv1.RpcError{Code: CodeInternal, Category: eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_INTERNAL, Message: "the service reported a failure without details"}
	}
	retry, after := e.retryable()
	// A service that answers is there: only its saying it cannot serve
	// counts against the circuit.
	c.breakers.done(topic, b, !errors.Is(e, ErrUnavailable) && !errors.Is(e, ErrResourceExhausted))
	if !retry {
		return nil, -1, e
	}
	return nil, after, e
}

// decodeResponse decodes (unless it came decoded, in process) and checks
// the reply to req.
func decodeResponse(reply *client.Msg, req *eventbusv1.RpcRequest) (*eventbusv1.RpcResponse, error) {
	m, ok := envelope.FromValue(reply.Value)
	if !ok {
		m = new(eventbusv1.EventBusMessage)
		if err := proto.Unmarshal(reply.Payload, m); err != nil {
			return nil, fmt.Errorf("%w: not a protobuf EventBusMessage: %v", ErrBadResponse, err)
		}
	}
	if v := m.GetMetadata().GetVersion(); v != nil && v.GetMajor() != envelope.VersionMajor {
		return nil, fmt.Errorf("%w: the service answered in schema version %d.%d; this client speaks %d.x: %w",
			ErrBadResponse, v.GetMajor(), v.GetMinor(), envelope.VersionMajor, ErrUnsupported)
	}
	resp := m.GetRpcResponse().GetResponse()
	if resp == nil {
		return nil, fmt.Errorf("%w: the reply is a %v, not an RPC response", ErrBadResponse, envelope.MessageTypeOf(m))
	}
	if resp.GetRequestId() != req.GetRequestId() {
		return nil, fmt.Errorf("%w: it answers request %q, not %q", ErrBadResponse, resp.GetRequestId(), req.GetRequestId())
	}
	if resp.GetStatus() == eventbusv1.RpcStatus_RPC_STATUS_SUCCESS {
		if op := envelope.ResponseOperation(resp); op != eventbusv1.RpcOperation_RPC_OPERATION_UNSPECIFIED && op != req.GetOperation() {
			return nil, fmt.Errorf("%w: the result is for %s, the request was %s", ErrBadResponse, opName(op), callName(req))
		}
		if m := resp.GetMethod(); m != "" && m != req.GetMethod() {
			return nil, fmt.Errorf("%w: the result is for method %s, the request was %s", ErrBadResponse, m, callName(req))
		}
	}
	return resp, nil
}

// backoff is the wait before retry number n (1: the first), doubling from
// base up to limit, with ±50% jitter.
func backoff(base, limit time.Duration, n int) time.Duration {
	d := base
	for i := 1; i < n && d < limit; i++ {
		d *= 2
	}
	d = min(d, limit)
	return d/2 + rand.N(d)
}

// callName is what req calls, for errors: its method, or its operation's
// name.
func callName(req *eventbusv1.RpcRequest) string {
	if m := req.GetMethod(); m != "" {
		return m
	}
	return opName(req.GetOperation())
}

// opName is an operation's name as in the body field: health_check.
func opName(op eventbusv1.RpcOperation) string {
	return strings.ToLower(strings.TrimPrefix(op.String(), "RPC_OPERATION_"))
}
