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
	return srv.Handle(ctx, topics.AgentCoordination, rpc.HandlerFunc(func(ctx context.Context, req *rpc.Request) (*eventbusv1.RpcResponse, error) {
		switch b := req.Call.GetBody().(type) {
		case *eventbusv1.RpcRequest_Register:
			if err := ValidateID(b.Register.GetCollectorId()); err != nil {
				return nil, rpc.InvalidArgument("invalid_collector_id", err.Error(),
					&eventbusv1.FieldViolation{Field: "register.collector_id", Description: err.Error()})
			}
			resp, err := r.Register(ctx, b.Register)
			return wrap(resp, err, func(resp *eventbusv1.RegisterResponse) *eventbusv1.RpcResponse {
				return &eventbusv1.RpcResponse{Body: &eventbusv1.RpcResponse_Register{Register: resp}}
			})
		case *eventbusv1.RpcRequest_Deregister:
			resp, err := r.Deregister(ctx, b.Deregister)
			return wrap(resp, err, func(resp *eventbusv1.DeregisterResponse) *eventbusv1.RpcResponse {
				return &eventbusv1.RpcResponse{Body: &eventbusv1.RpcResponse_Deregister{Deregister: resp}}
			})
		}
		return nil, rpc.Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_VALIDATION, "wrong_topic",
			"%s is not served on %s", opName(req.Call.GetOperation()), req.Topic)
	}))
}
