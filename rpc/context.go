package rpc

import (
	"context"

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
