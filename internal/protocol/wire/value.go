package wire

import (
	"encoding"
	"errors"
	"fmt"
	"sync"
)

// ErrNotEncodable is returned by EncodeValue for a value that does not
// implement encoding.BinaryAppender: a message that carries such a value
// and no payload cannot leave its process.
var ErrNotEncodable = errors.New("wire: the value cannot be encoded (it does not implement encoding.BinaryAppender)")

// MaxPooledValue is the largest buffer, in bytes of capacity, that
// ValueBuf.Release returns to the pool: a larger one (an unusually large
// value) is left to the garbage collector, so that the pool does not keep
// such buffers alive for every goroutine that once encoded one.
const MaxPooledValue = 64 << 10

// ValueBuf holds the encoding of a value (eventbus.Message.Value and
// client.Msg.Value) in a buffer taken from a pool. Its bytes are valid
// until Release, which the holder calls once, when it is done with them
// (after copying them into a frame). A ValueBuf belongs to one goroutine.
type ValueBuf struct{ b []byte }

// Bytes returns the encoding. It aliases the pooled buffer: do not keep it
// past Release.
func (v *ValueBuf) Bytes() []byte { return v.b }

// Release returns the buffer to the pool unless it grew beyond
// MaxPooledValue. The ValueBuf must not be used afterwards.
func (v *ValueBuf) Release() {
	if cap(v.b) > MaxPooledValue {
		return
	}
	v.b = v.b[:0]
	putValueBuf(v)
}

var valueBufs = sync.Pool{New: func() any { return &ValueBuf{b: make([]byte, 0, 1024)} }}

// putValueBuf returns v to the pool; a test watches it.
var putValueBuf = func(v *ValueBuf) { valueBufs.Put(v) }

// EncodeValue encodes value, which must implement encoding.BinaryAppender
// (as envelope.Lazy does), into a pooled buffer. Once the pool is warm it
// allocates nothing beyond what the value's own encoder does. On success
// the caller owns the ValueBuf and must Release it; on error there is
// nothing to release. Errors wrap ErrNotEncodable, or the encoder's error.
// Safe for concurrent use.
func EncodeValue(value any) (*ValueBuf, error) {
	enc, ok := value.(encoding.BinaryAppender)
	if !ok {
		return nil, fmt.Errorf("%w: %T", ErrNotEncodable, value)
	}
	v := valueBufs.Get().(*ValueBuf)
	p, err := enc.AppendBinary(v.b[:0])
	if err != nil {
		v.Release()
		return nil, fmt.Errorf("wire: encode a %T: %w", value, err)
	}
	v.b = p
	return v, nil
}
