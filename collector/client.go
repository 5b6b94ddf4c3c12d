package collector

import (
	"context"

	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/rpc"
	"google.golang.org/protobuf/proto"
)

// Client calls collectors' control operations (and the agent's
// registration) with typed requests and results: rpc.Call with the
// operation's Method on its topic, so errors are those of rpc.Call.
// Operations that are safe to repeat are sent as idempotent, so they are
// retried; RESTART is not, nor is UPDATE_CONFIG unless it only validates
// or names an expected_version. A Client is safe for concurrent use.
type Client struct {
	rpc rpc.Caller
}

// Caller sends one RPC to a topic, as rpc.Client.Call does; a caller may
// route it (the CLI sends a collector's calls through the agent).
type Caller = rpc.Caller

// NewClient returns a Client that calls through c.
func NewClient(c *rpc.Client) *Client { return &Client{rpc: c} }

// NewClientVia returns a Client that calls through c, which must be safe
// for concurrent use if the Client is used concurrently.
func NewClientVia(c Caller) *Client { return &Client{rpc: c} }

// call calls method m of collector id on the operation's topic.
func call[Req, Resp proto.Message](ctx context.Context, c *Client, id string, m rpc.Method[Req, Resp], req Req, opts ...rpc.CallOption) (Resp, error) {
	return rpc.Call(ctx, c.rpc, topicOf(m.Name, id), m, req, append(opts, rpc.WithTarget(id))...)
}

// topicOf is the topic of the operation named name for collector id.
func topicOf(name, id string) string { return Topic(opOf[name], id) }

// opOf maps an operation's name (its body field's, "health_check") to
// its enum value.
var opOf = func() map[string]eventbusv1.RpcOperation {
	m := map[string]eventbusv1.RpcOperation{}
	for op := range eventbusv1.RpcOperation_name {
		m[opName(eventbusv1.RpcOperation(op))] = eventbusv1.RpcOperation(op)
	}
	return m
}()

// Health asks collector id for a health report.
func (c *Client) Health(ctx context.Context, id string, req *eventbusv1.HealthCheckRequest) (*eventbusv1.HealthCheckResponse, error) {
	return call(ctx, c, id, HealthCheck, req)
}

// Capabilities asks collector id what it can do.
func (c *Client) Capabilities(ctx context.Context, id string, req *eventbusv1.GetCapabilitiesRequest) (*eventbusv1.Capabilities, error) {
	return call(ctx, c, id, GetCapabilities, req)
}

// Start asks collector id to start collecting.
func (c *Client) Start(ctx context.Context, id string, req *eventbusv1.LifecycleRequest) (*eventbusv1.LifecycleResponse, error) {
	return call(ctx, c, id, Start, req)
}

// Stop asks collector id to stop collecting (its process stays up).
func (c *Client) Stop(ctx context.Context, id string, req *eventbusv1.LifecycleRequest) (*eventbusv1.LifecycleResponse, error) {
	return call(ctx, c, id, Stop, req)
}

// Restart asks collector id to stop and start again. Not retried.
func (c *Client) Restart(ctx context.Context, id string, req *eventbusv1.LifecycleRequest) (*eventbusv1.LifecycleResponse, error) {
	return call(ctx, c, id, Restart, req)
}

// Pause asks collector id to suspend collection, keeping its state.
func (c *Client) Pause(ctx context.Context, id string, req *eventbusv1.LifecycleRequest) (*eventbusv1.LifecycleResponse, error) {
	return call(ctx, c, id, Pause, req)
}

// Resume asks collector id to resume after a pause.
func (c *Client) Resume(ctx context.Context, id string, req *eventbusv1.LifecycleRequest) (*eventbusv1.LifecycleResponse, error) {
	return call(ctx, c, id, Resume, req)
}

// UpdateConfig asks collector id to validate, apply or roll back a
// configuration. A validate-only request with no config returns the
// configuration in force (ConfigUpdateResult.current_config).
func (c *Client) UpdateConfig(ctx context.Context, id string, req *eventbusv1.ConfigUpdateRequest) (*eventbusv1.ConfigUpdateResult, error) {
	idempotent := req.GetValidateOnly() || req.GetExpectedVersion() != ""
	return call(ctx, c, id, UpdateConfig, req, rpc.WithIdempotent(idempotent))
}

// GracefulShutdown asks collector id to drain and exit.
func (c *Client) GracefulShutdown(ctx context.Context, id string, req *eventbusv1.ShutdownRequest) (*eventbusv1.ShutdownResponse, error) {
	return call(ctx, c, id, GracefulShutdown, req)
}

// ForceShutdown asks collector id to exit now, dropping what it queued.
func (c *Client) ForceShutdown(ctx context.Context, id string, req *eventbusv1.ShutdownRequest) (*eventbusv1.ShutdownResponse, error) {
	return call(ctx, c, id, ForceShutdown, req)
}

// Snapshot asks collector id (procmond) for the current processes, one
// page at a time.
func (c *Client) Snapshot(ctx context.Context, id string, req *eventbusv1.SnapshotRequest) (*eventbusv1.ProcessSnapshot, error) {
	return call(ctx, c, id, GetSnapshot, req)
}

// Register announces a collector to the agent.
func (c *Client) Register(ctx context.Context, req *eventbusv1.RegisterRequest) (*eventbusv1.RegisterResponse, error) {
	return call(ctx, c, req.GetCollectorId(), Register, req)
}

// Deregister takes a collector off the agent's list.
func (c *Client) Deregister(ctx context.Context, req *eventbusv1.DeregisterRequest) (*eventbusv1.DeregisterResponse, error) {
	return call(ctx, c, req.GetCollectorId(), Deregister, req)
}
