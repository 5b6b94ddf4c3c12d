package envelope

import (
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
)

// RequestOperation returns the operation whose body req carries, or
// RPC_OPERATION_UNSPECIFIED when it carries none. A valid request's
// operation field equals it.
func RequestOperation(req *eventbusv1.RpcRequest) eventbusv1.RpcOperation {
	switch req.GetBody().(type) {
	case *eventbusv1.RpcRequest_Register:
		return eventbusv1.RpcOperation_RPC_OPERATION_REGISTER
	case *eventbusv1.RpcRequest_Deregister:
		return eventbusv1.RpcOperation_RPC_OPERATION_DEREGISTER
	case *eventbusv1.RpcRequest_Start:
		return eventbusv1.RpcOperation_RPC_OPERATION_START
	case *eventbusv1.RpcRequest_Stop:
		return eventbusv1.RpcOperation_RPC_OPERATION_STOP
	case *eventbusv1.RpcRequest_Restart:
		return eventbusv1.RpcOperation_RPC_OPERATION_RESTART
	case *eventbusv1.RpcRequest_Pause:
		return eventbusv1.RpcOperation_RPC_OPERATION_PAUSE
	case *eventbusv1.RpcRequest_Resume:
		return eventbusv1.RpcOperation_RPC_OPERATION_RESUME
	case *eventbusv1.RpcRequest_HealthCheck:
		return eventbusv1.RpcOperation_RPC_OPERATION_HEALTH_CHECK
	case *eventbusv1.RpcRequest_UpdateConfig:
		return eventbusv1.RpcOperation_RPC_OPERATION_UPDATE_CONFIG
	case *eventbusv1.RpcRequest_GetCapabilities:
		return eventbusv1.RpcOperation_RPC_OPERATION_GET_CAPABILITIES
	case *eventbusv1.RpcRequest_GracefulShutdown:
		return eventbusv1.RpcOperation_RPC_OPERATION_GRACEFUL_SHUTDOWN
	case *eventbusv1.RpcRequest_ForceShutdown:
		return eventbusv1.RpcOperation_RPC_OPERATION_FORCE_SHUTDOWN
	case *eventbusv1.RpcRequest_GetSnapshot:
		return eventbusv1.RpcOperation_RPC_OPERATION_GET_SNAPSHOT
	}
	return eventbusv1.RpcOperation_RPC_OPERATION_UNSPECIFIED
}

// ResponseOperation returns the operation whose result resp carries, or
// RPC_OPERATION_UNSPECIFIED when it carries none (as a failed response
// does). When it carries one, a valid response's operation field equals
// it.
func ResponseOperation(resp *eventbusv1.RpcResponse) eventbusv1.RpcOperation {
	switch resp.GetBody().(type) {
	case *eventbusv1.RpcResponse_Register:
		return eventbusv1.RpcOperation_RPC_OPERATION_REGISTER
	case *eventbusv1.RpcResponse_Deregister:
		return eventbusv1.RpcOperation_RPC_OPERATION_DEREGISTER
	case *eventbusv1.RpcResponse_Start:
		return eventbusv1.RpcOperation_RPC_OPERATION_START
	case *eventbusv1.RpcResponse_Stop:
		return eventbusv1.RpcOperation_RPC_OPERATION_STOP
	case *eventbusv1.RpcResponse_Restart:
		return eventbusv1.RpcOperation_RPC_OPERATION_RESTART
	case *eventbusv1.RpcResponse_Pause:
		return eventbusv1.RpcOperation_RPC_OPERATION_PAUSE
	case *eventbusv1.RpcResponse_Resume:
		return eventbusv1.RpcOperation_RPC_OPERATION_RESUME
	case *eventbusv1.RpcResponse_HealthCheck:
		return eventbusv1.RpcOperation_RPC_OPERATION_HEALTH_CHECK
	case *eventbusv1.RpcResponse_UpdateConfig:
		return eventbusv1.RpcOperation_RPC_OPERATION_UPDATE_CONFIG
	case *eventbusv1.RpcResponse_GetCapabilities:
		return eventbusv1.RpcOperation_RPC_OPERATION_GET_CAPABILITIES
	case *eventbusv1.RpcResponse_GracefulShutdown:
		return eventbusv1.RpcOperation_RPC_OPERATION_GRACEFUL_SHUTDOWN
	case *eventbusv1.RpcResponse_ForceShutdown:
		return eventbusv1.RpcOperation_RPC_OPERATION_FORCE_SHUTDOWN
	case *eventbusv1.RpcResponse_GetSnapshot:
		return eventbusv1.RpcOperation_RPC_OPERATION_GET_SNAPSHOT
	}
	return eventbusv1.RpcOperation_RPC_OPERATION_UNSPECIFIED
}
