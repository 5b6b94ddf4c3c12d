package collector

import (
	"context"

	"github.com/daemoneye/daemoneye/envelope"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/rpc"
)

// Client calls collectors' control operations (and the agent's
// registration) with typed requests and results. Errors are those of
// rpc.Client.Call. Operations that are safe to repeat are sent as
// idempotent, so they are retried; RESTART is not, nor is UPDATE_CONFIG
// unless it only validates or names an expected_version. A Client is safe
// for concurrent use.
type Client struct {
	rpc Caller
}

// Caller sends one RPC to a topic, as rpc.Client.Call does; a caller may
// route it (the CLI sends a collector's calls through the agent).
type Caller interface {
	Call(ctx context.Context, topic string, req *eventbusv1.RpcRequest) (*eventbusv1.RpcResponse, error)
}

// NewClient returns a Client that calls through c.
func NewClient(c *rpc.Client) *Client { return &Client{rpc: c} }

// NewClientVia returns a Client that calls through c, which must be safe
// for concurrent use if the Client is used concurrently.
func NewClientVia(c Caller) *Client { return &Client{rpc: c} }

// call sends a request with body to collector id and returns the response.
func (c *Client) call(ctx context.Context, id string, idempotent bool, req *eventbusv1.RpcRequest) (*eventbusv1.RpcResponse, error) {
	req.TargetId = id
	req.Idempotent = idempotent
	req.Operation = 0 // from the body
	op := envelope.RequestOperation(req)
	return c.rpc.Call(ctx, Topic(op, id), req)
}

// Health asks collector id for a health report.
func (c *Client) Health(ctx context.Context, id string, req *eventbusv1.HealthCheckRequest) (*eventbusv1.HealthCheckResponse, error) {
	r, err := c.call(ctx, id, true, &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_HealthCheck{HealthCheck: req}})
	return r.GetHealthCheck(), err
}

// Capabilities asks collector id what it can do.
func (c *Client) Capabilities(ctx context.Context, id string, req *eventbusv1.GetCapabilitiesRequest) (*eventbusv1.Capabilities, error) {
	r, err := c.call(ctx, id, true, &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_GetCapabilities{GetCapabilities: req}})
	return r.GetGetCapabilities(), err
}

// Start asks collector id to start collecting.
func (c *Client) Start(ctx context.Context, id string, req *eventbusv1.LifecycleRequest) (*eventbusv1.LifecycleResponse, error) {
	r, err := c.call(ctx, id, true, &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_Start{Start: req}})
	return r.GetStart(), err
}

// Stop asks collector id to stop collecting (its process stays up).
func (c *Client) Stop(ctx context.Context, id string, req *eventbusv1.LifecycleRequest) (*eventbusv1.LifecycleResponse, error) {
	r, err := c.call(ctx, id, true, &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_Stop{Stop: req}})
	return r.GetStop(), err
}

// Restart asks collector id to stop and start again. Not retried.
func (c *Client) Restart(ctx context.Context, id string, req *eventbusv1.LifecycleRequest) (*eventbusv1.LifecycleResponse, error) {
	r, err := c.call(ctx, id, false, &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_Restart{Restart: req}})
	return r.GetRestart(), err
}

// Pause asks collector id to suspend collection, keeping its state.
func (c *Client) Pause(ctx context.Context, id string, req *eventbusv1.LifecycleRequest) (*eventbusv1.LifecycleResponse, error) {
	r, err := c.call(ctx, id, true, &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_Pause{Pause: req}})
	return r.GetPause(), err
}

// Resume asks collector id to resume after a pause.
func (c *Client) Resume(ctx context.Context, id string, req *eventbusv1.LifecycleRequest) (*eventbusv1.LifecycleResponse, error) {
	r, err := c.call(ctx, id, true, &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_Resume{Resume: req}})
	return r.GetResume(), err
}

// UpdateConfig asks collector id to validate, apply or roll back a
// configuration. A validate-only request with no config returns the
// configuration in force (ConfigUpdateResult.current_config).
func (c *Client) UpdateConfig(ctx context.Context, id string, req *eventbusv1.ConfigUpdateRequest) (*eventbusv1.ConfigUpdateResult, error) {
	idempotent := req.GetValidateOnly() || req.GetExpectedVersion() != ""
	r, err := c.call(ctx, id, idempotent, &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_UpdateConfig{UpdateConfig: req}})
	return r.GetUpdateConfig(), err
}

// GracefulShutdown asks collector id to drain and exit.
func (c *Client) GracefulShutdown(ctx context.Context, id string, req *eventbusv1.ShutdownRequest) (*eventbusv1.ShutdownResponse, error) {
	r, err := c.call(ctx, id, true, &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_GracefulShutdown{GracefulShutdown: req}})
	return r.GetGracefulShutdown(), err
}

// ForceShutdown asks collector id to exit now, dropping what it queued.
func (c *Client) ForceShutdown(ctx context.Context, id string, req *eventbusv1.ShutdownRequest) (*eventbusv1.ShutdownResponse, error) {
	r, err := c.call(ctx, id, true, &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_ForceShutdown{ForceShutdown: req}})
	return r.GetForceShutdown(), err
}

// Snapshot asks collector id (procmond) for the current processes, one
// page at a time.
func (c *Client) Snapshot(ctx context.Context, id string, req *eventbusv1.SnapshotRequest) (*eventbusv1.ProcessSnapshot, error) {
	r, err := c.call(ctx, id, true, &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_GetSnapshot{GetSnapshot: req}})
	return r.GetGetSnapshot(), err
}

// Register announces a collector to the agent.
func (c *Client) Register(ctx context.Context, req *eventbusv1.RegisterRequest) (*eventbusv1.RegisterResponse, error) {
	r, err := c.call(ctx, req.GetCollectorId(), true, &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_Register{Register: req}})
	return r.GetRegister(), err
}

// Deregister takes a collector off the agent's list.
func (c *Client) Deregister(ctx context.Context, req *eventbusv1.DeregisterRequest) (*eventbusv1.DeregisterResponse, error) {
	r, err := c.call(ctx, req.GetCollectorId(), true, &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_Deregister{Deregister: req}})
	return r.GetDeregister(), err
}
