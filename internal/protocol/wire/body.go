package wire

import (
	"encoding/binary"
	"fmt"
)

// Flag bits of publish and deliver frames.
const (
	FlagPriorityMask uint8 = 0x07 // bits 0-2: priority, 0 (normal) to 4 (critical)
	FlagReply        uint8 = 0x08 // the body carries a reply topic
	FlagAckRequested uint8 = 0x10 // publish only: the body carries an ack id; answer with Ack
	FlagErrorsOnly   uint8 = 0x20 // publish only, with FlagAckRequested: answer only a refusal, never an Ack
	publishFlags           = FlagPriorityMask | FlagReply | FlagAckRequested | FlagErrorsOnly
	deliverFlags           = FlagPriorityMask | FlagReply
)

// MaxPriority is the highest priority value a frame may carry.
const MaxPriority = 4

// Publish is the body of a publish frame. Byte fields alias the frame.
type Publish struct {
	Priority uint8
	AckID    uint64 // meaningful when Ack is set
	Ack      bool
	// ErrorsOnly (with Ack) asks the server to answer only a refusal:
	// a request needs no Ack, since its reply confirms it.
	ErrorsOnly bool
	Topic      []byte
	Reply      []byte // nil when absent
	Payload    []byte
}

// AppendPublish appends a publish frame to dst.
func AppendPublish(dst []byte, p *Publish) []byte {
	ack := AckNone
	switch {
	case p.Ack && p.ErrorsOnly:
		ack = AckErrors
	case p.Ack:
		ack = AckAll
	}
	return appendPublish(dst, p.Priority, ack, p.AckID, p.Topic, p.Reply, p.Reply != nil, p.Payload)
}

// AckMode says what a publisher wants to hear back about a publish.
type AckMode uint8

// The ack modes.
const (
	AckNone   AckMode = iota // nothing (a refusal is still sent, with ref 0)
	AckAll                   // an Ack, or an error frame, naming the ack id
	AckErrors                // only an error frame naming the ack id
)

// AppendPublishMsg appends a publish frame, taking the topic and reply
// topic as strings so that they need no conversion (and no allocation).
// An empty reply means none; ackID is sent unless ack is AckNone.
func AppendPublishMsg(dst []byte, priority uint8, ack AckMode, ackID uint64, topic, reply string, payload []byte) []byte {
	return appendPublish(dst, priority, ack, ackID, topic, reply, reply != "", payload)
}

func appendPublish[T string | []byte](dst []byte, priority uint8, ack AckMode, ackID uint64, topic, reply T, hasReply bool, payload []byte) []byte {
	flags := priority & FlagPriorityMask
	if hasReply {
		flags |= FlagReply
	}
	switch ack {
	case AckAll:
		flags |= FlagAckRequested
	case AckErrors:
		flags |= FlagAckRequested | FlagErrorsOnly
	}
	start := len(dst)
	dst = appendHeader(dst, TypePublish, flags, 0)
	if ack != AckNone {
		dst = binary.BigEndian.AppendUint64(dst, ackID)
	}
	dst = appendBytes16(dst, topic)
	if hasReply {
		dst = appendBytes16(dst, reply)
	}
	dst = append(dst, payload...)
	return sealFrame(dst, start)
}

// ParsePublish decodes the body of a publish frame with the given flags.
func ParsePublish(flags uint8, body []byte) (Publish, error) {
	if err := checkFlags("publish", flags, publishFlags); err != nil {
		return Publish{}, err
	}
	p := Publish{Priority: flags & FlagPriorityMask, Ack: flags&FlagAckRequested != 0, ErrorsOnly: flags&FlagErrorsOnly != 0}
	if p.ErrorsOnly && !p.Ack {
		return Publish{}, fmt.Errorf("%w: publish: the errors-only flag needs the ack flag", ErrMalformed)
	}
	if p.Priority > MaxPriority {
		return Publish{}, fmt.Errorf("%w: publish: priority %d, the highest is %d", ErrMalformed, p.Priority, MaxPriority)
	}
	c := cursor{b: body}
	if p.Ack {
		p.AckID = c.u64()
	}
	p.Topic = c.bytes16()
	if flags&FlagReply != 0 {
		p.Reply = c.bytes16()
	}
	p.Payload = c.rest()
	return p, c.done("publish")
}

// Deliver is the body of a deliver frame: a message for the client's
// subscription SID (whose pattern is the one that matched). Byte fields
// alias the frame.
type Deliver struct {
	SID      uint32
	Seq      uint64
	Priority uint8
	Topic    []byte
	Reply    []byte // nil when absent
	Payload  []byte
}

// AppendDeliver appends a deliver frame to dst.
func AppendDeliver(dst []byte, d *Deliver) []byte {
	return appendDeliver(dst, d.SID, d.Seq, d.Priority, d.Topic, d.Reply, d.Reply != nil, d.Payload)
}

// AppendDeliverMsg appends a deliver frame, taking the topic and reply
// topic as strings so that the broker's strings need no conversion (and no
// allocation). An empty reply means none.
func AppendDeliverMsg(dst []byte, sid uint32, seq uint64, priority uint8, topic, reply string, payload []byte) []byte {
	return appendDeliver(dst, sid, seq, priority, topic, reply, reply != "", payload)
}

func appendDeliver[T string | []byte](dst []byte, sid uint32, seq uint64, priority uint8, topic, reply T, hasReply bool, payload []byte) []byte {
	flags := priority & FlagPriorityMask
	if hasReply {
		flags |= FlagReply
	}
	start := len(dst)
	dst = appendHeader(dst, TypeDeliver, flags, 0)
	dst = binary.BigEndian.AppendUint32(dst, sid)
	dst = binary.BigEndian.AppendUint64(dst, seq)
	dst = appendBytes16(dst, topic)
	if hasReply {
		dst = appendBytes16(dst, reply)
	}
	dst = append(dst, payload...)
	return sealFrame(dst, start)
}

// ParseDeliver decodes the body of a deliver frame with the given flags.
func ParseDeliver(flags uint8, body []byte) (Deliver, error) {
	if err := checkFlags("deliver", flags, deliverFlags); err != nil {
		return Deliver{}, err
	}
	d := Deliver{Priority: flags & FlagPriorityMask}
	if d.Priority > MaxPriority {
		return Deliver{}, fmt.Errorf("%w: deliver: priority %d, the highest is %d", ErrMalformed, d.Priority, MaxPriority)
	}
	c := cursor{b: body}
	d.SID = c.u32()
	d.Seq = c.u64()
	d.Topic = c.bytes16()
	if flags&FlagReply != 0 {
		d.Reply = c.bytes16()
	}
	d.Payload = c.rest()
	return d, c.done("deliver")
}

// Subscribe is the body of a subscribe frame: the options of the
// in-process broker's subscriptions, with the client's subscription id.
// Zero limits mean the server's defaults.
type Subscribe struct {
	SID            uint32
	Overflow       uint8 // 0 block, 1 drop-oldest, 2 drop-newest, 3 disconnect
	MaxMessages    uint32
	MaxBytes       uint64
	BlockTimeoutMs uint32
	Pattern        []byte
	QueueGroup     []byte // empty: every subscriber gets every message
}

// AppendSubscribe appends a subscribe frame to dst.
func AppendSubscribe(dst []byte, s *Subscribe) []byte {
	start := len(dst)
	dst = appendHeader(dst, TypeSubscribe, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, s.SID)
	dst = append(dst, s.Overflow)
	dst = binary.BigEndian.AppendUint32(dst, s.MaxMessages)
	dst = binary.BigEndian.AppendUint64(dst, s.MaxBytes)
	dst = binary.BigEndian.AppendUint32(dst, s.BlockTimeoutMs)
	dst = appendBytes16(dst, s.Pattern)
	dst = appendBytes16(dst, s.QueueGroup)
	return sealFrame(dst, start)
}

// ParseSubscribe decodes the body of a subscribe frame.
func ParseSubscribe(flags uint8, body []byte) (Subscribe, error) {
	if err := checkFlags("subscribe", flags, 0); err != nil {
		return Subscribe{}, err
	}
	c := cursor{b: body}
	s := Subscribe{
		SID: c.u32(), Overflow: c.u8(), MaxMessages: c.u32(), MaxBytes: c.u64(),
		BlockTimeoutMs: c.u32(), Pattern: c.bytes16(), QueueGroup: c.bytes16(),
	}
	if err := c.done("subscribe"); err != nil {
		return Subscribe{}, err
	}
	if s.Overflow > 3 {
		return Subscribe{}, fmt.Errorf("%w: subscribe: overflow policy %d, the highest is 3", ErrMalformed, s.Overflow)
	}
	return s, nil
}

// AppendU32 appends a frame of type t whose body is one 32-bit value
// (unsubscribe: the subscription id).
func AppendU32(dst []byte, t Type, v uint32) []byte {
	start := len(dst)
	dst = appendHeader(dst, t, 0, 0)
	dst = binary.BigEndian.AppendUint32(dst, v)
	return sealFrame(dst, start)
}

// AppendU64 appends a frame of type t whose body is one 64-bit value (ack:
// the ack id; ping and pong: the nonce).
func AppendU64(dst []byte, t Type, v uint64) []byte {
	start := len(dst)
	dst = appendHeader(dst, t, 0, 0)
	dst = binary.BigEndian.AppendUint64(dst, v)
	return sealFrame(dst, start)
}

// ParseU32 decodes a body that is one 32-bit value.
func ParseU32(t Type, flags uint8, body []byte) (uint32, error) {
	c := cursor{b: body}
	v := c.u32()
	if err := checkFlags(t.String(), flags, 0); err != nil {
		return 0, err
	}
	return v, c.done(t.String())
}

// ParseU64 decodes a body that is one 64-bit value.
func ParseU64(t Type, flags uint8, body []byte) (uint64, error) {
	c := cursor{b: body}
	v := c.u64()
	if err := checkFlags(t.String(), flags, 0); err != nil {
		return 0, err
	}
	return v, c.done(t.String())
}

// Code is a stable error code carried by error and goaway frames.
type Code uint16

// Error codes. The numbering is part of the protocol: never renumber.
const (
	CodeProtocol      Code = 1  // malformed frame, bad checksum, unknown type
	CodeFrameTooLarge Code = 2  // a frame over the negotiated limit
	CodeVersion       Code = 3  // no common protocol version
	CodeAuth          Code = 4  // authentication failed
	CodeForbidden     Code = 5  // identity may not publish or subscribe there
	CodeInvalidTopic  Code = 6  // topic or pattern breaks the grammar
	CodeTooLarge      Code = 7  // payload over the limit
	CodeSlowConsumer  Code = 8  // subscription or connection could not keep up
	CodeQueueFull     Code = 9  // message dropped for a full subscriber queue
	CodeUnknownSID    Code = 10 // unsubscribe of a subscription that does not exist
	CodeDuplicateSID  Code = 11 // subscribe with an id already in use
	CodeTimeout       Code = 12 // handshake or idle timeout
	CodeShutdown      Code = 13 // the server is shutting down
	CodeLimit         Code = 14 // a connection or subscription limit was reached
	CodeInternal      Code = 15 // a server fault; the client may retry
	CodeUnsupported   Code = 16 // a feature the peer does not support (yet)
	CodeNoResponders  Code = 17 // a request (publish with a reply topic) that nobody subscribes to
)

// ErrorBody is the body of an error or goaway frame: a code, the id the
// error concerns (a subscription id, an ack id, or 0), and text for a
// person.
type ErrorBody struct {
	Code Code
	Ref  uint64
	Text []byte
}

// AppendError appends an error (or, with t = TypeGoAway, a goaway) frame.
func AppendError(dst []byte, t Type, e *ErrorBody) []byte {
	start := len(dst)
	dst = appendHeader(dst, t, 0, 0)
	dst = binary.BigEndian.AppendUint16(dst, uint16(e.Code))
	dst = binary.BigEndian.AppendUint64(dst, e.Ref)
	dst = append(dst, e.Text...)
	return sealFrame(dst, start)
}

// ParseError decodes the body of an error or goaway frame.
func ParseError(t Type, flags uint8, body []byte) (ErrorBody, error) {
	if err := checkFlags(t.String(), flags, 0); err != nil {
		return ErrorBody{}, err
	}
	c := cursor{b: body}
	e := ErrorBody{Code: Code(c.u16()), Ref: c.u64(), Text: c.rest()}
	return e, c.done(t.String())
}

// checkFlags refuses flag bits outside allowed.
func checkFlags(what string, flags, allowed uint8) error {
	if flags&^allowed != 0 {
		return fmt.Errorf("%w: %s: unknown flags %#x", ErrMalformed, what, flags&^allowed)
	}
	return nil
}

func appendBytes16[T string | []byte](dst []byte, b T) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(b)))
	return append(dst, b...)
}

// cursor reads big-endian fields from a body. After the first short read
// every read returns zero values and done reports the error.
type cursor struct {
	b     []byte
	short bool
}

func (c *cursor) take(n int) []byte {
	if c.short || len(c.b) < n {
		c.short = true
		return nil
	}
	v := c.b[:n:n]
	c.b = c.b[n:]
	return v
}

func (c *cursor) u8() uint8 {
	if v := c.take(1); v != nil {
		return v[0]
	}
	return 0
}

func (c *cursor) u16() uint16 {
	if v := c.take(2); v != nil {
		return binary.BigEndian.Uint16(v)
	}
	return 0
}

func (c *cursor) u32() uint32 {
	if v := c.take(4); v != nil {
		return binary.BigEndian.Uint32(v)
	}
	return 0
}

func (c *cursor) u64() uint64 {
	if v := c.take(8); v != nil {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// bytes16 reads a 16-bit length and that many bytes. An empty field
// decodes as an empty, non-nil slice.
func (c *cursor) bytes16() []byte {
	n := int(c.u16())
	if c.short {
		return nil
	}
	if n == 0 {
		return c.b[:0:0]
	}
	return c.take(n)
}

func (c *cursor) rest() []byte {
	if c.short {
		return nil
	}
	v := c.b
	c.b = c.b[len(c.b):]
	return v
}

// done reports a body that was too short, or too long for a body without
// a trailing rest field.
func (c *cursor) done(what string) error {
	switch {
	case c.short:
		return fmt.Errorf("%w: %s: body is truncated", ErrMalformed, what)
	case len(c.b) != 0:
		return fmt.Errorf("%w: %s: %d unexpected trailing bytes", ErrMalformed, what, len(c.b))
	}
	return nil
}
