package collector

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/daemoneye/daemoneye/envelope"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/rpc"
	"github.com/daemoneye/daemoneye/topic"
	"github.com/daemoneye/daemoneye/topics"
)

// Collector is what every collector implements: a health report and a
// description of itself. The optional interfaces below add operations; the
// Handler discovers them by type assertion and answers the others with
// ErrUnsupported.
//
// Health and Capabilities are answered on the goroutine that reads the
// collector's connection (rpc.InlineHandler), the fastest path for the
// agent's frequent health checks: they must return quickly and must not
// block (read state kept by the collector; do not scan or wait for I/O).
type Collector interface {
	// Health reports the collector's health, overall and per component
	// (those named in req, or all).
	Health(ctx context.Context, req *eventbusv1.HealthCheckRequest) (*eventbusv1.HealthCheckResponse, error)
	// Capabilities describes the collector. The Handler fills in
	// supported_operations from the interfaces the collector implements,
	// and the schema versions.
	Capabilities(ctx context.Context, req *eventbusv1.GetCapabilitiesRequest) (*eventbusv1.Capabilities, error)
}

// Lifecycle is implemented by collectors whose collection can be started,
// stopped, restarted, paused and resumed while the process runs.
type Lifecycle interface {
	Start(ctx context.Context, req *eventbusv1.LifecycleRequest) (*eventbusv1.LifecycleResponse, error)
	Stop(ctx context.Context, req *eventbusv1.LifecycleRequest) (*eventbusv1.LifecycleResponse, error)
	Restart(ctx context.Context, req *eventbusv1.LifecycleRequest) (*eventbusv1.LifecycleResponse, error)
	Pause(ctx context.Context, req *eventbusv1.LifecycleRequest) (*eventbusv1.LifecycleResponse, error)
	Resume(ctx context.Context, req *eventbusv1.LifecycleRequest) (*eventbusv1.LifecycleResponse, error)
}

// Configurable is implemented by collectors whose configuration can change
// at run time: validate only, apply, or roll back (see Config, which does
// the bookkeeping).
type Configurable interface {
	UpdateConfig(ctx context.Context, req *eventbusv1.ConfigUpdateRequest) (*eventbusv1.ConfigUpdateResult, error)
}

// Shutdowner is implemented by collectors that exit on request. They
// answer first and exit after: the response is sent before the collector's
// connection closes only if the collector waits for the Server's Shutdown.
type Shutdowner interface {
	GracefulShutdown(ctx context.Context, req *eventbusv1.ShutdownRequest) (*eventbusv1.ShutdownResponse, error)
	ForceShutdown(ctx context.Context, req *eventbusv1.ShutdownRequest) (*eventbusv1.ShutdownResponse, error)
}

// Snapshotter is implemented by collectors that list the current state on
// request (procmond: the processes).
type Snapshotter interface {
	Snapshot(ctx context.Context, req *eventbusv1.SnapshotRequest) (*eventbusv1.ProcessSnapshot, error)
}

// Registry is implemented by the agent: collectors register with it and
// deregister.
type Registry interface {
	Register(ctx context.Context, req *eventbusv1.RegisterRequest) (*eventbusv1.RegisterResponse, error)
	Deregister(ctx context.Context, req *eventbusv1.DeregisterRequest) (*eventbusv1.DeregisterResponse, error)
}

// The topic stem of each operation: lifecycle, config, health and
// capabilities under control.collector.<stem>.<id>; snapshots under
// control.agent.tasks.<id>; registration on control.agent.coordination.
var stems = map[eventbusv1.RpcOperation]string{
	eventbusv1.RpcOperation_RPC_OPERATION_START:             topics.CollectorLifecycle,
	eventbusv1.RpcOperation_RPC_OPERATION_STOP:              topics.CollectorLifecycle,
	eventbusv1.RpcOperation_RPC_OPERATION_RESTART:           topics.CollectorLifecycle,
	eventbusv1.RpcOperation_RPC_OPERATION_PAUSE:             topics.CollectorLifecycle,
	eventbusv1.RpcOperation_RPC_OPERATION_RESUME:            topics.CollectorLifecycle,
	eventbusv1.RpcOperation_RPC_OPERATION_GRACEFUL_SHUTDOWN: topics.CollectorLifecycle,
	eventbusv1.RpcOperation_RPC_OPERATION_FORCE_SHUTDOWN:    topics.CollectorLifecycle,
	eventbusv1.RpcOperation_RPC_OPERATION_UPDATE_CONFIG:     topics.CollectorConfig,
	eventbusv1.RpcOperation_RPC_OPERATION_HEALTH_CHECK:      topics.CollectorHealth,
	eventbusv1.RpcOperation_RPC_OPERATION_GET_CAPABILITIES:  topics.CollectorCapabilities,
	eventbusv1.RpcOperation_RPC_OPERATION_GET_SNAPSHOT:      topics.AgentTasks,
}

// Topic returns the topic on which collector id serves op, such as
// control.collector.health.procmond for HEALTH_CHECK, or the agent's
// control.agent.coordination for REGISTER and DEREGISTER. It returns ""
// for RPC_OPERATION_UNSPECIFIED and unknown operations.
func Topic(op eventbusv1.RpcOperation, id string) string {
	switch op {
	case eventbusv1.RpcOperation_RPC_OPERATION_REGISTER, eventbusv1.RpcOperation_RPC_OPERATION_DEREGISTER:
		return topics.AgentCoordination
	}
	if stem, ok := stems[op]; ok {
		return stem + "." + id
	}
	return ""
}

// ValidateID checks that id can name a collector: a single topic segment
// (a-z, 0-9, '_', '-'), because the collector's topics end with it.
func ValidateID(id string) error {
	if id == "" || strings.ContainsAny(id, ".+#") {
		return fmt.Errorf("collector: id %q: %w", id, ErrInvalidID)
	}
	if err := topic.Validate(topics.CollectorHealth + "." + id); err != nil {
		return fmt.Errorf("collector: id %q: %w: %w", id, ErrInvalidID, err)
	}
	return nil
}

// Operations returns the operations c serves, in enum order.
func Operations(c Collector) []eventbusv1.RpcOperation {
	ops := []eventbusv1.RpcOperation{eventbusv1.RpcOperation_RPC_OPERATION_HEALTH_CHECK, eventbusv1.RpcOperation_RPC_OPERATION_GET_CAPABILITIES}
	if _, ok := c.(Lifecycle); ok {
		ops = append(ops, eventbusv1.RpcOperation_RPC_OPERATION_START, eventbusv1.RpcOperation_RPC_OPERATION_STOP,
			eventbusv1.RpcOperation_RPC_OPERATION_RESTART, eventbusv1.RpcOperation_RPC_OPERATION_PAUSE, eventbusv1.RpcOperation_RPC_OPERATION_RESUME)
	}
	if _, ok := c.(Configurable); ok {
		ops = append(ops, eventbusv1.RpcOperation_RPC_OPERATION_UPDATE_CONFIG)
	}
	if _, ok := c.(Shutdowner); ok {
		ops = append(ops, eventbusv1.RpcOperation_RPC_OPERATION_GRACEFUL_SHUTDOWN, eventbusv1.RpcOperation_RPC_OPERATION_FORCE_SHUTDOWN)
	}
	if _, ok := c.(Snapshotter); ok {
		ops = append(ops, eventbusv1.RpcOperation_RPC_OPERATION_GET_SNAPSHOT)
	}
	slices.Sort(ops)
	return ops
}

// Serve answers collector id's control operations on srv: it subscribes
// to control.collector.+.<id> and control.agent.tasks.<id> with
// Handler(id, c). Run one Server per collector; give several instances of
// one collector the same ServerOptions.QueueGroup to share the load.
func Serve(ctx context.Context, srv *rpc.Server, id string, c Collector) error {
	if err := ValidateID(id); err != nil {
		return err
	}
	h := Handler(id, c)
	if err := srv.Handle(ctx, topics.CollectorServices(id), h); err != nil {
		return err
	}
	return srv.Handle(ctx, topics.AgentTasks+"."+id, h)
}

// Handler returns the rpc.Handler that dispatches collector id's requests
// to c by operation. A request on a topic that is not the operation's
// (START on the health topic) is refused, so that authorization by topic
// cannot be sidestepped; an operation c does not implement is answered
// with category UNSUPPORTED.
//
// The handler is an rpc.InlineHandler: health checks and capabilities
// (and requests refused for their topic) are answered inline; the other
// operations, which may take time, on the Server's workers.
func Handler(id string, c Collector) rpc.Handler {
	return handler{id: id, c: c}
}

type handler struct {
	id string
	c  Collector
}

func (h handler) ServeRPC(ctx context.Context, r *rpc.Request) (*eventbusv1.RpcResponse, error) {
	op := r.Call.GetOperation()
	if want := Topic(op, h.id); r.Topic != want {
		return nil, rpc.Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_VALIDATION, "wrong_topic",
			"%s is served on %s, not on %s", opName(op), want, r.Topic)
	}
	return dispatch(ctx, h.id, h.c, r.Call)
}

// Inline reports whether r is answered inline: health checks and
// capability queries (by the body, which is what dispatch goes by), and
// anything refused for its topic.
func (h handler) Inline(r *rpc.Request) bool {
	if r.Topic != Topic(r.Call.GetOperation(), h.id) {
		return true
	}
	switch r.Call.GetBody().(type) {
	case *eventbusv1.RpcRequest_HealthCheck, *eventbusv1.RpcRequest_GetCapabilities:
		return true
	}
	return false
}

func dispatch(ctx context.Context, id string, c Collector, req *eventbusv1.RpcRequest) (*eventbusv1.RpcResponse, error) {
	lc, _ := c.(Lifecycle)
	cf, _ := c.(Configurable)
	sd, _ := c.(Shutdowner)
	sn, _ := c.(Snapshotter)
	unsupported := func() (*eventbusv1.RpcResponse, error) {
		return nil, rpc.Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNSUPPORTED, rpc.CodeUnsupported,
			"collector %s does not support %s", id, opName(req.GetOperation()))
	}
	switch b := req.GetBody().(type) {
	case *eventbusv1.RpcRequest_HealthCheck:
		r, err := c.Health(ctx, b.HealthCheck)
		return wrap(r, err, func(r *eventbusv1.HealthCheckResponse) *eventbusv1.RpcResponse {
			return &eventbusv1.RpcResponse{Body: &eventbusv1.RpcResponse_HealthCheck{HealthCheck: r}}
		})
	case *eventbusv1.RpcRequest_GetCapabilities:
		r, err := c.Capabilities(ctx, b.GetCapabilities)
		if r != nil {
			r.SupportedOperations = Operations(c)
			r.Version = envelope.CurrentVersion()
			if b.GetCapabilities.GetIncludeVersions() {
				r.SupportedVersions = supportedVersions()
			}
		}
		return wrap(r, err, func(r *eventbusv1.Capabilities) *eventbusv1.RpcResponse {
			return &eventbusv1.RpcResponse{Body: &eventbusv1.RpcResponse_GetCapabilities{GetCapabilities: r}}
		})
	case *eventbusv1.RpcRequest_Start, *eventbusv1.RpcRequest_Stop, *eventbusv1.RpcRequest_Restart, *eventbusv1.RpcRequest_Pause, *eventbusv1.RpcRequest_Resume:
		if lc == nil {
			return unsupported()
		}
		return lifecycle(ctx, lc, req)
	case *eventbusv1.RpcRequest_UpdateConfig:
		if cf == nil {
			return unsupported()
		}
		r, err := cf.UpdateConfig(ctx, b.UpdateConfig)
		return wrap(r, err, func(r *eventbusv1.ConfigUpdateResult) *eventbusv1.RpcResponse {
			return &eventbusv1.RpcResponse{Body: &eventbusv1.RpcResponse_UpdateConfig{UpdateConfig: r}}
		})
	case *eventbusv1.RpcRequest_GracefulShutdown:
		if sd == nil {
			return unsupported()
		}
		r, err := sd.GracefulShutdown(ctx, b.GracefulShutdown)
		return wrap(r, err, func(r *eventbusv1.ShutdownResponse) *eventbusv1.RpcResponse {
			return &eventbusv1.RpcResponse{Body: &eventbusv1.RpcResponse_GracefulShutdown{GracefulShutdown: r}}
		})
	case *eventbusv1.RpcRequest_ForceShutdown:
		if sd == nil {
			return unsupported()
		}
		r, err := sd.ForceShutdown(ctx, b.ForceShutdown)
		return wrap(r, err, func(r *eventbusv1.ShutdownResponse) *eventbusv1.RpcResponse {
			return &eventbusv1.RpcResponse{Body: &eventbusv1.RpcResponse_ForceShutdown{ForceShutdown: r}}
		})
	case *eventbusv1.RpcRequest_GetSnapshot:
		if sn == nil {
			return unsupported()
		}
		r, err := sn.Snapshot(ctx, b.GetSnapshot)
		return wrap(r, err, func(r *eventbusv1.ProcessSnapshot) *eventbusv1.RpcResponse {
			return &eventbusv1.RpcResponse{Body: &eventbusv1.RpcResponse_GetSnapshot{GetSnapshot: r}}
		})
	}
	return unsupported()
}

func lifecycle(ctx context.Context, lc Lifecycle, req *eventbusv1.RpcRequest) (*eventbusv1.RpcResponse, error) {
	var r *eventbusv1.LifecycleResponse
	var err error
	var body func(*eventbusv1.LifecycleResponse) *eventbusv1.RpcResponse
	switch b := req.GetBody().(type) {
	case *eventbusv1.RpcRequest_Start:
		r, err = lc.Start(ctx, b.Start)
		body = func(r *eventbusv1.LifecycleResponse) *eventbusv1.RpcResponse {
			return &eventbusv1.RpcResponse{Body: &eventbusv1.RpcResponse_Start{Start: r}}
		}
	case *eventbusv1.RpcRequest_Stop:
		r, err = lc.Stop(ctx, b.Stop)
		body = func(r *eventbusv1.LifecycleResponse) *eventbusv1.RpcResponse {
			return &eventbusv1.RpcResponse{Body: &eventbusv1.RpcResponse_Stop{Stop: r}}
		}
	case *eventbusv1.RpcRequest_Restart:
		r, err = lc.Restart(ctx, b.Restart)
		body = func(r *eventbusv1.LifecycleResponse) *eventbusv1.RpcResponse {
			return &eventbusv1.RpcResponse{Body: &eventbusv1.RpcResponse_Restart{Restart: r}}
		}
	case *eventbusv1.RpcRequest_Pause:
		r, err = lc.Pause(ctx, b.Pause)
		body = func(r *eventbusv1.LifecycleResponse) *eventbusv1.RpcResponse {
			return &eventbusv1.RpcResponse{Body: &eventbusv1.RpcResponse_Pause{Pause: r}}
		}
	default:
		r, err = lc.Resume(ctx, req.GetResume())
		body = func(r *eventbusv1.LifecycleResponse) *eventbusv1.RpcResponse {
			return &eventbusv1.RpcResponse{Body: &eventbusv1.RpcResponse_Resume{Resume: r}}
		}
	}
	return wrap(r, err, body)
}

// wrap puts a result into its response body; a nil result with no error
// becomes an empty one.
func wrap[T any, P interface {
	*T
}](r P, err error, body func(P) *eventbusv1.RpcResponse) (*eventbusv1.RpcResponse, error) {
	if err != nil {
		return nil, err
	}
	if r == nil {
		r = new(T)
	}
	return body(r), nil
}

// supportedVersions lists the schema versions this build speaks: every
// minor of the current major up to the current one.
func supportedVersions() []*eventbusv1.MessageVersion {
	vs := make([]*eventbusv1.MessageVersion, 0, envelope.VersionMinor+1)
	for minor := uint32(0); minor <= envelope.VersionMinor; minor++ {
		vs = append(vs, &eventbusv1.MessageVersion{Major: envelope.VersionMajor, Minor: minor, ProtocolVersion: fmt.Sprintf("%d.%d.0", envelope.VersionMajor, minor)})
	}
	return vs
}

// opName is an operation's name as in the body field: health_check.
func opName(op eventbusv1.RpcOperation) string {
	return strings.ToLower(strings.TrimPrefix(op.String(), "RPC_OPERATION_"))
}
