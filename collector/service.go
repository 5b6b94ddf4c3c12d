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

// The collector operations as rpc Methods: the seeds' RpcRequest and
// RpcResponse body fields and RpcOperation values are their wire schema.
// Client calls them, Handler serves them; a caller with an rpc.Client may
// call them with rpc.Call as well, on Topic(op, id). Idempotent methods are
// retried: all but RESTART (and UPDATE_CONFIG, which Client marks
// idempotent when it only validates or names an expected_version).
var (
	HealthCheck      = rpc.Method[*eventbusv1.HealthCheckRequest, *eventbusv1.HealthCheckResponse]{Name: "health_check", Idempotent: true}
	GetCapabilities  = rpc.Method[*eventbusv1.GetCapabilitiesRequest, *eventbusv1.Capabilities]{Name: "get_capabilities", Idempotent: true}
	Start            = rpc.Method[*eventbusv1.LifecycleRequest, *eventbusv1.LifecycleResponse]{Name: "start", Idempotent: true}
	Stop             = rpc.Method[*eventbusv1.LifecycleRequest, *eventbusv1.LifecycleResponse]{Name: "stop", Idempotent: true}
	Restart          = rpc.Method[*eventbusv1.LifecycleRequest, *eventbusv1.LifecycleResponse]{Name: "restart"}
	Pause            = rpc.Method[*eventbusv1.LifecycleRequest, *eventbusv1.LifecycleResponse]{Name: "pause", Idempotent: true}
	Resume           = rpc.Method[*eventbusv1.LifecycleRequest, *eventbusv1.LifecycleResponse]{Name: "resume", Idempotent: true}
	UpdateConfig     = rpc.Method[*eventbusv1.ConfigUpdateRequest, *eventbusv1.ConfigUpdateResult]{Name: "update_config"}
	GracefulShutdown = rpc.Method[*eventbusv1.ShutdownRequest, *eventbusv1.ShutdownResponse]{Name: "graceful_shutdown", Idempotent: true}
	ForceShutdown    = rpc.Method[*eventbusv1.ShutdownRequest, *eventbusv1.ShutdownResponse]{Name: "force_shutdown", Idempotent: true}
	GetSnapshot      = rpc.Method[*eventbusv1.SnapshotRequest, *eventbusv1.ProcessSnapshot]{Name: "get_snapshot", Idempotent: true}
	Register         = rpc.Method[*eventbusv1.RegisterRequest, *eventbusv1.RegisterResponse]{Name: "register", Idempotent: true}
	Deregister       = rpc.Method[*eventbusv1.DeregisterRequest, *eventbusv1.DeregisterResponse]{Name: "deregister", Idempotent: true}
)

// Handler returns the rpc.Handler that serves collector id's operations
// with c: an rpc.Mux with the methods c implements, behind a check that a
// request came on its operation's topic. A request on a topic that is not
// its operation's (START on the health topic) is refused, so that
// authorization by topic cannot be sidestepped; an operation c does not
// implement is answered with category UNSUPPORTED.
//
// The handler is an rpc.InlineHandler: health checks and capabilities
// (and requests refused for their topic) are answered inline; the other
// operations, which may take time, on the Server's workers.
func Handler(id string, c Collector) rpc.Handler {
	mux := rpc.NewMux("collector " + id)
	rpc.Handle(mux, HealthCheck, c.Health, rpc.Inline())
	rpc.Handle(mux, GetCapabilities, func(ctx context.Context, req *eventbusv1.GetCapabilitiesRequest) (*eventbusv1.Capabilities, error) {
		r, err := c.Capabilities(ctx, req)
		if err != nil {
			return nil, err
		}
		if r == nil {
			r = new(eventbusv1.Capabilities)
		}
		r.SupportedOperations = Operations(c)
		r.Version = envelope.CurrentVersion()
		if req.GetIncludeVersions() {
			r.SupportedVersions = supportedVersions()
		}
		return r, nil
	}, rpc.Inline())
	if lc, ok := c.(Lifecycle); ok {
		rpc.Handle(mux, Start, lc.Start)
		rpc.Handle(mux, Stop, lc.Stop)
		rpc.Handle(mux, Restart, lc.Restart)
		rpc.Handle(mux, Pause, lc.Pause)
		rpc.Handle(mux, Resume, lc.Resume)
	}
	if cf, ok := c.(Configurable); ok {
		rpc.Handle(mux, UpdateConfig, cf.UpdateConfig)
	}
	if sd, ok := c.(Shutdowner); ok {
		rpc.Handle(mux, GracefulShutdown, sd.GracefulShutdown)
		rpc.Handle(mux, ForceShutdown, sd.ForceShutdown)
	}
	if sn, ok := c.(Snapshotter); ok {
		rpc.Handle(mux, GetSnapshot, sn.Snapshot)
	}
	return handler{id: id, mux: mux}
}

type handler struct {
	id  string
	mux *rpc.Mux
}

// onTopic checks that r came on the topic of the operation it carries
// (its body, which is what the Mux runs).
func (h handler) onTopic(r *rpc.Request) error {
	op := envelope.RequestOperation(r.Call)
	if want := Topic(op, h.id); r.Topic != want {
		if op == eventbusv1.RpcOperation_RPC_OPERATION_UNSPECIFIED {
			return rpc.Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNSUPPORTED, rpc.CodeUnsupported,
				"collector %s serves the collector operations only, not method %q", h.id, r.Call.GetMethod())
		}
		return rpc.Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_VALIDATION, "wrong_topic",
			"%s is served on %s, not on %s", opName(op), want, r.Topic)
	}
	return nil
}

func (h handler) ServeRPC(ctx context.Context, r *rpc.Request) (*eventbusv1.RpcResponse, error) {
	if err := h.onTopic(r); err != nil {
		return nil, err
	}
	return h.mux.ServeRPC(ctx, r)
}

// Inline reports whether r is answered inline: health checks and
// capability queries, and anything refused for its topic.
func (h handler) Inline(r *rpc.Request) bool {
	return r.Topic != Topic(envelope.RequestOperation(r.Call), h.id) || h.mux.Inline(r)
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
