package envelope

import (
	"fmt"

	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"google.golang.org/protobuf/proto"
)

// Encoder marshals envelopes into a buffer it reuses. After the buffer has
// grown to the largest message, Encode allocates nothing, except for map
// fields (headers, correlation tags, labels...): protobuf's map encoder
// allocates for each entry. The zero value is ready to use. An Encoder is
// not safe for concurrent use.
type Encoder struct {
	buf []byte
}

// Encode marshals m and returns the bytes, which stay valid until the next
// call to Encode: hand them to something that copies (client.Conn.Publish
// does) or copy them. Do not pass them to eventbus.Broker.Publish directly:
// the in-process broker keeps the payload slice it is given.
func (e *Encoder) Encode(m *eventbusv1.EventBusMessage) ([]byte, error) {
	b, err := proto.MarshalOptions{}.MarshalAppend(e.buf[:0], m)
	if err != nil {
		return nil, fmt.Errorf("envelope: encode: %w", err)
	}
	e.buf = b
	return b, nil
}

// Decoder unmarshals envelopes into a message it reuses. Decoding still
// allocates every sub-message, string and byte slice of the message
// (protobuf copies them out of the input), but not the envelope itself.
// The zero value is ready to use. A Decoder is not safe for concurrent
// use.
type Decoder struct {
	msg eventbusv1.EventBusMessage
}

// Decode unmarshals data, which must hold one EventBusMessage, and returns
// the Decoder's message. The message is reset first and stays valid until
// the next call to Decode; use proto.Clone to keep it longer. The message
// does not refer to data, which the caller may reuse at once. Unknown
// fields (from a newer minor version) are kept, so a relay re-encodes them
// unchanged. Decode does not Validate the message.
func (d *Decoder) Decode(data []byte) (*eventbusv1.EventBusMessage, error) {
	proto.Reset(&d.msg)
	if err := (proto.UnmarshalOptions{Merge: false}).Unmarshal(data, &d.msg); err != nil {
		return nil, fmt.Errorf("envelope: decode: %w", err)
	}
	return &d.msg, nil
}
