package envelope

import (
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"google.golang.org/protobuf/proto"
)

// Lazy is the in-process form of an envelope on the bus, for
// eventbus.Message.Value and client.Msg.Value with no payload: subscribers
// in the same process take M as is (FromValue), with nothing encoded or
// decoded, and a connection to another process encodes it (AppendBinary)
// only when a subscriber there needs it. Nobody may modify M once it is
// published. Lazy is pointer-shaped: storing it in an interface does not
// allocate.
type Lazy struct{ M *eventbusv1.EventBusMessage }

// AppendBinary appends M's protobuf encoding to b (encoding.BinaryAppender).
func (l Lazy) AppendBinary(b []byte) ([]byte, error) {
	return proto.MarshalOptions{}.MarshalAppend(b, l.M)
}

// FromValue returns the envelope a message's Value carries: a Lazy's, or
// an *EventBusMessage itself; false when it carries none.
func FromValue(v any) (*eventbusv1.EventBusMessage, bool) {
	switch x := v.(type) {
	case Lazy:
		return x.M, x.M != nil
	case *eventbusv1.EventBusMessage:
		return x, x != nil
	}
	return nil, false
}
