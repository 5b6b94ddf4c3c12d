package rpc

import (
	"context"
	"sync"
	"time"

	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
)

type correlationKey struct{}

// WithCorrelation returns a context carrying c: calls made with it are
// steps of c's workflow (their requests carry envelope.Child(c)). A
// Server gives each handler a context carrying the request's correlation.
func WithCorrelation(ctx context.Context, c *eventbusv1.CorrelationMetadata) context.Context {
	if c == nil {
		return ctx
	}
	return context.WithValue(ctx, correlationKey{}, c)
}

// CorrelationFrom returns the correlation ctx carries, or nil.
func CorrelationFrom(ctx context.Context) *eventbusv1.CorrelationMetadata {
	c, _ := ctx.Value(correlationKey{}).(*eventbusv1.CorrelationMetadata)
	return c
}

// handlerContext is the context a handler runs with: its parent's values
// and cancellation, and the request's deadline. It is built for the many
// handlers that never wait on it: nothing is armed until Done is first
// called (then a timer for the deadline and a hook on the parent), and Err
// reads the clock only when asked. context.WithDeadline would start a
// timer and register with the Server's context for every request, and
// every handler would contend for that registration.
type handlerContext struct {
	parent   context.Context
	deadline time.Time // zero: none
	req      *Request  // RequestFrom's answer

	mu         sync.Mutex
	done       chan struct{} // made by the first Done
	err        error
	timer      *time.Timer
	stopParent func() bool
}

func newHandlerContext(parent context.Context, deadline time.Time, req *Request) *handlerContext {
	return &handlerContext{parent: parent, deadline: deadline, req: req}
}

func (c *handlerContext) Deadline() (time.Time, bool) {
	if d, ok := c.parent.Deadline(); ok && (c.deadline.IsZero() || d.Before(c.deadline)) {
		return d, true
	}
	return c.deadline, !c.deadline.IsZero()
}

// Value answers RequestFrom without a context.WithValue per request.
func (c *handlerContext) Value(key any) any {
	if _, ok := key.(requestKey); ok && c.req != nil {
		return c.req
	}
	return c.parent.Value(key)
}

func (c *handlerContext) Done() <-chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done != nil {
		return c.done
	}
	c.done = make(chan struct{})
	if c.checkLocked() != nil {
		close(c.done)
		return c.done
	}
	if !c.deadline.IsZero() {
		c.timer = time.AfterFunc(time.Until(c.deadline), func() { c.cancel(context.DeadlineExceeded) })
	}
	c.stopParent = context.AfterFunc(c.parent, func() { c.cancel(c.parent.Err()) })
	return c.done
}

func (c *handlerContext) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.checkLocked()
}

// checkLocked ends the context if its parent ended or its deadline
// passed, and returns its error.
func (c *handlerContext) checkLocked() error {
	if c.err == nil {
		if err := c.parent.Err(); err != nil {
			c.endLocked(err)
		} else if !c.deadline.IsZero() && !time.Now().Before(c.deadline) {
			c.endLocked(context.DeadlineExceeded)
		}
	}
	return c.err
}

func (c *handlerContext) cancel(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.endLocked(err)
}

func (c *handlerContext) endLocked(err error) {
	if c.err != nil {
		return
	}
	c.err = err
	if c.done != nil {
		close(c.done)
	}
	if c.timer != nil {
		c.timer.Stop()
	}
	if c.stopParent != nil {
		c.stopParent()
	}
}

// release ends the context when its handler has returned, as a
// CancelFunc would.
func (c *handlerContext) release() { c.cancel(context.Canceled) }

func (c *handlerContext) String() string { return "rpc.handlerContext" }
