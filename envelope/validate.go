package envelope

import (
	"errors"
	"fmt"

	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/topic"
)

// ErrInvalidMessage is wrapped by the errors of Validate.
var ErrInvalidMessage = errors.New("envelope: invalid message")

// defaultPolicy is the zero topic.Policy: the default.
var defaultPolicy topic.Policy

// Validate checks what receivers rely on in an envelope:
//
//   - metadata is set, with a message id, a valid topic (topic.Validate:
//     the default policy; ValidateWith takes the broker's),
//     a priority from unspecified to critical, a message type that matches
//     the payload, and, if a version is set, major version VersionMajor;
//   - a payload is set;
//   - a correlation, if set, has a correlation id and a root id, and its
//     trace and span ids, where set, are valid W3C ids;
//   - an RPC request has a request id, an operation and the body of that
//     operation;
//   - an RPC response has a request id, an operation and a status; a
//     success carries the body of its operation and no error, any other
//     status an error and no body.
//
// Errors wrap ErrInvalidMessage. Validate allocates only for an error.
func Validate(m *eventbusv1.EventBusMessage) error { return ValidateWith(m, nil) }

// ValidateWith is Validate with the metadata's topic checked under policy
// p (nil: the default policy), for a broker with a topic policy of its own
// (see client.Conn.Policy). It allocates only for an error.
func ValidateWith(m *eventbusv1.EventBusMessage, p *topic.Policy) error {
	if p == nil {
		p = &defaultPolicy
	}
	if m == nil {
		return invalid("nil message")
	}
	md := m.GetMetadata()
	switch {
	case md == nil:
		return invalid("no metadata")
	case md.GetMessageId() == "":
		return invalid("no message id")
	case md.GetPriority() > eventbusv1.Priority_PRIORITY_CRITICAL || md.GetPriority() < 0:
		return invalid("priority %d is out of range", md.GetPriority())
	case md.Version != nil && md.Version.GetMajor() != VersionMajor:
		return invalid("major version %d: this package speaks %d", md.Version.GetMajor(), VersionMajor)
	}
	if err := p.Validate(md.GetTopic()); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidMessage, err)
	}
	want := MessageTypeOf(m)
	if want == eventbusv1.MessageType_MESSAGE_TYPE_UNSPECIFIED {
		return invalid("no payload")
	}
	if md.GetMessageType() != want {
		return invalid("message type %v does not match the payload (%v)", md.GetMessageType(), want)
	}
	if c := m.GetCorrelation(); c != nil {
		switch {
		case c.GetCorrelationId() == "":
			return invalid("correlation without a correlation id")
		case c.GetRootCorrelationId() == "":
			return invalid("correlation without a root correlation id")
		case c.TraceId != nil && !validID(*c.TraceId, 32):
			return invalid("trace id %q is not 32 lower-case hex digits, not all zero", *c.TraceId)
		case c.SpanId != nil && !validID(*c.SpanId, 16):
			return invalid("span id %q is not 16 lower-case hex digits, not all zero", *c.SpanId)
		}
	}
	switch p := m.GetPayload().(type) {
	case *eventbusv1.EventBusMessage_RpcRequest:
		return validateRequest(p.RpcRequest.GetRequest())
	case *eventbusv1.EventBusMessage_RpcResponse:
		return validateResponse(p.RpcResponse.GetResponse())
	}
	return nil
}

func validateRequest(r *eventbusv1.RpcRequest) error {
	op := r.GetOperation()
	switch {
	case r == nil:
		return invalid("RPC request payload without a request")
	case r.GetRequestId() == "":
		return invalid("RPC request without a request id")
	case r.GetMethod() != "" && op != eventbusv1.RpcOperation_RPC_OPERATION_UNSPECIFIED:
		return invalid("RPC request %s names both method %q and operation %v", r.GetRequestId(), r.GetMethod(), op)
	case r.GetMethod() != "" && RequestOperation(r) != op:
		return invalid("RPC request %s: method %q with the body of %v", r.GetRequestId(), r.GetMethod(), RequestOperation(r))
	case r.GetMethod() != "":
		return nil
	case op == eventbusv1.RpcOperation_RPC_OPERATION_UNSPECIFIED:
		return invalid("RPC request %s with neither an operation nor a method", r.GetRequestId())
	case RequestOperation(r) != op:
		return invalid("RPC request %s: operation %v with the body of %v", r.GetRequestId(), op, RequestOperation(r))
	}
	return nil
}

func validateResponse(r *eventbusv1.RpcResponse) error {
	op, status := r.GetOperation(), r.GetStatus()
	switch {
	case r == nil:
		return invalid("RPC response payload without a response")
	case r.GetRequestId() == "":
		return invalid("RPC response without a request id")
	case op == eventbusv1.RpcOperation_RPC_OPERATION_UNSPECIFIED && r.GetMethod() == "":
		return invalid("RPC response to %s with neither an operation nor a method", r.GetRequestId())
	case status == eventbusv1.RpcStatus_RPC_STATUS_UNSPECIFIED:
		return invalid("RPC response to %s without a status", r.GetRequestId())
	case status == eventbusv1.RpcStatus_RPC_STATUS_SUCCESS && r.GetError() != nil:
		return invalid("RPC response to %s: success with an error", r.GetRequestId())
	case status == eventbusv1.RpcStatus_RPC_STATUS_SUCCESS && ResponseOperation(r) != op:
		return invalid("RPC response to %s: operation %v with the body of %v", r.GetRequestId(), op, ResponseOperation(r))
	case status != eventbusv1.RpcStatus_RPC_STATUS_SUCCESS && r.GetError() == nil:
		return invalid("RPC response to %s: status %v without an error", r.GetRequestId(), status)
	case status != eventbusv1.RpcStatus_RPC_STATUS_SUCCESS && r.GetBody() != nil:
		return invalid("RPC response to %s: status %v with a result body", r.GetRequestId(), status)
	}
	return nil
}

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidMessage}, args...)...)
}
