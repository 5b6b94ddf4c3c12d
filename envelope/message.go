package envelope

import (
	"time"

	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The schema version this package speaks (see docs/schemas.md). The major
// version is that of the protobuf package, daemoneye.eventbus.v1.
const (
	VersionMajor = 1
	VersionMinor = 2
	VersionPatch = 0
	// Version is the human-readable form of the three numbers.
	Version = "1.2.0"
)

// CurrentVersion returns a new MessageVersion for VersionMajor,
// VersionMinor and VersionPatch.
func CurrentVersion() *eventbusv1.MessageVersion {
	return &eventbusv1.MessageVersion{
		Major:           VersionMajor,
		Minor:           VersionMinor,
		Patch:           VersionPatch,
		ProtocolVersion: Version,
	}
}

// Payload lists the types an EventBusMessage can carry, one per case of
// its payload oneof.
type Payload interface {
	*eventbusv1.CollectionEvent |
		*eventbusv1.RpcRequestPayload |
		*eventbusv1.RpcResponsePayload |
		*eventbusv1.ControlMessage |
		*eventbusv1.Heartbeat |
		*eventbusv1.Alert
}

// New returns a message for topic carrying payload. Its metadata has a new
// message id (NewID), the topic, the message type of the payload, the
// timestamp at and the current schema version; the caller sets the rest
// (source id, priority, TTL, correlation, ...) on the result. A zero at
// means now; pass the time you already hold to keep the clock off a hot
// path. A nil payload is replaced by an empty one. New does not validate
// the topic: see Validate.
func New[P Payload](topic string, at time.Time, payload P) *eventbusv1.EventBusMessage {
	if at.IsZero() {
		at = time.Now()
	}
	m := &eventbusv1.EventBusMessage{
		Metadata: &eventbusv1.MessageMetadata{
			MessageId: NewID(),
			Topic:     topic,
			Timestamp: timestamppb.New(at),
			Version:   CurrentVersion(),
		},
	}
	SetPayload(m, payload)
	return m
}

// SetPayload sets m's payload and the matching message type in its
// metadata (creating the metadata if m has none). A nil payload is replaced
// by an empty one.
func SetPayload[P Payload](m *eventbusv1.EventBusMessage, payload P) {
	var t eventbusv1.MessageType
	switch p := any(payload).(type) {
	case *eventbusv1.CollectionEvent:
		if p == nil {
			p = &eventbusv1.CollectionEvent{}
		}
		m.Payload, t = &eventbusv1.EventBusMessage_CollectionEvent{CollectionEvent: p}, eventbusv1.MessageType_MESSAGE_TYPE_COLLECTION_EVENT
	case *eventbusv1.RpcRequestPayload:
		if p == nil {
			p = &eventbusv1.RpcRequestPayload{}
		}
		m.Payload, t = &eventbusv1.EventBusMessage_RpcRequest{RpcRequest: p}, eventbusv1.MessageType_MESSAGE_TYPE_RPC_REQUEST
	case *eventbusv1.RpcResponsePayload:
		if p == nil {
			p = &eventbusv1.RpcResponsePayload{}
		}
		m.Payload, t = &eventbusv1.EventBusMessage_RpcResponse{RpcResponse: p}, eventbusv1.MessageType_MESSAGE_TYPE_RPC_RESPONSE
	case *eventbusv1.ControlMessage:
		if p == nil {
			p = &eventbusv1.ControlMessage{}
		}
		m.Payload, t = &eventbusv1.EventBusMessage_ControlMessage{ControlMessage: p}, eventbusv1.MessageType_MESSAGE_TYPE_CONTROL_MESSAGE
	case *eventbusv1.Heartbeat:
		if p == nil {
			p = &eventbusv1.Heartbeat{}
		}
		m.Payload, t = &eventbusv1.EventBusMessage_Heartbeat{Heartbeat: p}, eventbusv1.MessageType_MESSAGE_TYPE_HEARTBEAT
	case *eventbusv1.Alert:
		if p == nil {
			p = &eventbusv1.Alert{}
		}
		m.Payload, t = &eventbusv1.EventBusMessage_Alert{Alert: p}, eventbusv1.MessageType_MESSAGE_TYPE_ALERT
	}
	if m.Metadata == nil {
		m.Metadata = &eventbusv1.MessageMetadata{}
	}
	m.Metadata.MessageType = t
}

// MessageTypeOf returns the message type that matches m's payload, or
// MESSAGE_TYPE_UNSPECIFIED when it has none.
func MessageTypeOf(m *eventbusv1.EventBusMessage) eventbusv1.MessageType {
	switch m.GetPayload().(type) {
	case *eventbusv1.EventBusMessage_CollectionEvent:
		return eventbusv1.MessageType_MESSAGE_TYPE_COLLECTION_EVENT
	case *eventbusv1.EventBusMessage_RpcRequest:
		return eventbusv1.MessageType_MESSAGE_TYPE_RPC_REQUEST
	case *eventbusv1.EventBusMessage_RpcResponse:
		return eventbusv1.MessageType_MESSAGE_TYPE_RPC_RESPONSE
	case *eventbusv1.EventBusMessage_ControlMessage:
		return eventbusv1.MessageType_MESSAGE_TYPE_CONTROL_MESSAGE
	case *eventbusv1.EventBusMessage_Heartbeat:
		return eventbusv1.MessageType_MESSAGE_TYPE_HEARTBEAT
	case *eventbusv1.EventBusMessage_Alert:
		return eventbusv1.MessageType_MESSAGE_TYPE_ALERT
	}
	return eventbusv1.MessageType_MESSAGE_TYPE_UNSPECIFIED
}
