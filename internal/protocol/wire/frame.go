package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
)

// HeaderSize is the size of a frame header in bytes.
const HeaderSize = 12

// DefaultMaxBody is the largest frame body a Reader accepts by default:
// a 1 MiB payload plus room for the topic and the other fields.
const DefaultMaxBody = 1<<20 + 4096

// Type identifies what a frame carries.
type Type uint8

// Frame types. The numbering is part of the protocol: never renumber.
const (
	TypeHello       Type = 1  // client -> server: versions, capabilities, credentials
	TypeWelcome     Type = 2  // server -> client: chosen version, session, limits
	TypePublish     Type = 3  // client -> server
	TypeSubscribe   Type = 4  // client -> server
	TypeUnsubscribe Type = 5  // client -> server
	TypeDeliver     Type = 6  // server -> client
	TypeAck         Type = 7  // either way: acknowledges a numbered frame
	TypePing        Type = 8  // either way
	TypePong        Type = 9  // either way: answers a ping with its nonce
	TypeError       Type = 10 // either way: code and text
	TypeGoAway      Type = 11 // server -> client: drain, then reconnect elsewhere or later

	maxType = TypeGoAway
)

var typeNames = [...]string{"", "hello", "welcome", "publish", "subscribe", "unsubscribe",
	"deliver", "ack", "ping", "pong", "error", "goaway"}

// String returns the frame type's name.
func (t Type) String() string {
	if t >= 1 && t <= maxType {
		return typeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint8(t))
}

// Frame errors. A Reader returns them wrapped with detail; each means the
// peer broke the protocol and the connection should be closed after an
// error frame.
var (
	ErrFrameTooLarge = errors.New("wire: frame too large")
	ErrBadChecksum   = errors.New("wire: checksum mismatch")
	ErrUnknownType   = errors.New("wire: unknown frame type")
	ErrMalformed     = errors.New("wire: malformed frame")
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Frame header layout (all integers big-endian):
//
//	0  4  length   bytes after this field: 8 + len(body)
//	4  1  type
//	5  1  flags    meaning depends on the type
//	6  2  reserved must be zero
//	8  4  crc32c   Castagnoli, over bytes 4..8 and the body

// AppendFrame appends a frame of type t with the given flags and body to
// dst and returns the extended slice. It does not allocate when dst has
// room.
func AppendFrame(dst []byte, t Type, flags uint8, body []byte) []byte {
	start := len(dst)
	dst = appendHeader(dst, t, flags, len(body))
	dst = append(dst, body...)
	return sealFrame(dst, start)
}

// appendHeader appends a header whose crc is filled in by sealFrame.
func appendHeader(dst []byte, t Type, flags uint8, bodyLen int) []byte {
	return append(dst,
		byte((8+bodyLen)>>24), byte((8+bodyLen)>>16), byte((8+bodyLen)>>8), byte(8+bodyLen),
		byte(t), flags, 0, 0,
		0, 0, 0, 0)
}

// sealFrame fixes the length and checksum of the frame that starts at
// dst[start:] and runs to the end of dst.
func sealFrame(dst []byte, start int) []byte {
	f := dst[start:]
	binary.BigEndian.PutUint32(f[0:4], uint32(len(f)-4))
	crc := crc32.Update(0, castagnoli, f[4:8])
	crc = crc32.Update(crc, castagnoli, f[HeaderSize:])
	binary.BigEndian.PutUint32(f[8:12], crc)
	return dst
}

// Frame is one decoded frame. Body aliases the Reader's buffer and is valid
// only until the next call to ReadFrame.
type Frame struct {
	Type  Type
	Flags uint8
	Body  []byte
}

// Reader reads frames from a stream into a buffer it reuses, so reading
// does not allocate once the buffer has grown to the largest frame seen.
// A frame's length is checked against the limit before anything is
// allocated for it. A Reader is not safe for concurrent use.
type Reader struct {
	r       io.Reader
	maxBody int
	buf     []byte
	start   int // first unconsumed byte in buf
	end     int // end of valid data in buf
}

// maxReadBuf is the size a Reader's buffer grows to while the stream keeps
// it full, in bytes (it starts at 4 KiB; a larger frame grows it further).
const maxReadBuf = 64 << 10

// NewReader returns a Reader of r that accepts bodies up to maxBody bytes
// (0 means DefaultMaxBody).
func NewReader(r io.Reader, maxBody int) *Reader {
	if maxBody <= 0 {
		maxBody = DefaultMaxBody
	}
	return &Reader{r: r, maxBody: maxBody, buf: make([]byte, 4096)}
}

// SetMaxBody changes the largest body the Reader accepts (0 means
// DefaultMaxBody), for example to the limit a peer announced.
func (r *Reader) SetMaxBody(n int) {
	if n <= 0 {
		n = DefaultMaxBody
	}
	r.maxBody = n
}

// ReadFrame returns the next frame. At a clean end of stream between
// frames it returns io.EOF; a stream that ends inside a frame gives
// io.ErrUnexpectedEOF. Protocol violations return an error wrapping
// ErrFrameTooLarge, ErrBadChecksum, ErrUnknownType or ErrMalformed.
func (r *Reader) ReadFrame() (Frame, error) {
	if err := r.fill(HeaderSize, true); err != nil {
		return Frame{}, err
	}
	h := r.buf[r.start : r.start+HeaderSize]
	n := int(binary.BigEndian.Uint32(h[0:4]))
	switch {
	case n < 8:
		return Frame{}, fmt.Errorf("%w: length %d is shorter than the header", ErrMalformed, n)
	case n-8 > r.maxBody:
		return Frame{}, fmt.Errorf("%w: %d-byte body, limit %d", ErrFrameTooLarge, n-8, r.maxBody)
	case h[6] != 0 || h[7] != 0:
		return Frame{}, fmt.Errorf("%w: reserved header bytes are not zero", ErrMalformed)
	}
	t := Type(h[4])
	if t < 1 || t > maxType {
		return Frame{}, fmt.Errorf("%w: %d", ErrUnknownType, h[4])
	}
	total := 4 + n
	if err := r.fill(total, false); err != nil {
		return Frame{}, err
	}
	f := r.buf[r.start : r.start+total]
	crc := crc32.Update(0, castagnoli, f[4:8])
	crc = crc32.Update(crc, castagnoli, f[HeaderSize:])
	if want := binary.BigEndian.Uint32(f[8:12]); crc != want {
		return Frame{}, fmt.Errorf("%w: %s frame of %d bytes", ErrBadChecksum, t, total)
	}
	r.start += total
	return Frame{Type: t, Flags: f[5], Body: f[HeaderSize:total:total]}, nil
}

// fill makes sure n bytes are buffered from r.start, reading as much as
// the stream offers in one call where it can.
func (r *Reader) fill(n int, atBoundary bool) error {
	if r.end-r.start >= n {
		return nil
	}
	if r.start > 0 { // move the partial frame to the front
		copy(r.buf, r.buf[r.start:r.end])
		r.end -= r.start
		r.start = 0
	}
	if n > len(r.buf) {
		nb := make([]byte, max(n, 2*len(r.buf)))
		copy(nb, r.buf[:r.end])
		r.buf = nb
	}
	for r.end < n {
		m, err := r.r.Read(r.buf[r.end:])
		r.end += m
		if r.end == len(r.buf) && len(r.buf) < maxReadBuf {
			// The stream had more than the buffer holds: read more per
			// call from now on (one syscall per 4 KiB costs more than
			// the frames in it).
			nb := make([]byte, 2*len(r.buf))
			copy(nb, r.buf[:r.end])
			r.buf = nb
		}
		if r.end >= n {
			return nil
		}
		if err != nil {
			if err == io.EOF {
				if atBoundary && r.end == 0 {
					return io.EOF
				}
				return io.ErrUnexpectedEOF
			}
			return err
		}
	}
	return nil
}
