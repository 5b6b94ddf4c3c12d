package collector

import (
	"context"

	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/rpc"
	"github.com/daemoneye/daemoneye/topics"
)

// ServeRegistry answers REGISTER and DEREGISTER on
// control.agent.coordination with r. The agent runs it.
func ServeRegistry(ctx context.Context, srv *rpc.Server, r Registry) error {
	mux := rpc.NewMux("the agent's registry")
	rpc.Handle(mux, Register, func(ctx context.Context, req *eventbusv1.RegisterRequest) (*eventbusv1.RegisterResponse, error) {
		if err := ValidateID(req.GetCollectorId()); err != nil {
			return nil, rpc.InvalidArgument("invalid_collector_id", err.Error(),
				&eventbusv1.FieldViolation{Field: "register.collector_id", Description: err.Error()})
		}
		return r.Register(ctx, req)
	})
	rpc.Handle(mux, Deregister, r.Deregister)
	return srv.Handle(ctx, topics.AgentCoordination, mux)
}
