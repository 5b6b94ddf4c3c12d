package envelope

import "math/rand/v2"

const hexDigits = "0123456789abcdef"

// putHex64 writes v as 16 lower-case hex digits, most significant first.
func putHex64(b []byte, v uint64) {
	_ = b[15]
	for i := 15; i >= 0; i-- {
		b[i] = hexDigits[v&0x0f]
		v >>= 4
	}
}

// NewID returns a random (version 4) UUID in canonical lower-case form,
// such as "0b5e0c3a-9d1f-4c57-8e2a-6f3b1d2c4e5f". New uses it for message
// ids, NewRoot and Child for correlation ids; RPC request ids may use it
// too.
func NewID() string {
	hi := rand.Uint64()&^0xf000 | 0x4000     // version 4
	lo := rand.Uint64()&^(0xc<<60) | 0x8<<60 // variant 10xx
	var h [32]byte
	putHex64(h[:16], hi)
	putHex64(h[16:], lo)
	var b [36]byte
	copy(b[0:8], h[0:8])
	b[8] = '-'
	copy(b[9:13], h[8:12])
	b[13] = '-'
	copy(b[14:18], h[12:16])
	b[18] = '-'
	copy(b[19:23], h[16:20])
	b[23] = '-'
	copy(b[24:36], h[20:32])
	return string(b[:])
}

// NewTraceID returns a random W3C trace id: 16 bytes, not all zero, as 32
// lower-case hex digits.
func NewTraceID() string {
	for {
		hi, lo := rand.Uint64(), rand.Uint64()
		if hi|lo == 0 {
			continue
		}
		var b [32]byte
		putHex64(b[:16], hi)
		putHex64(b[16:], lo)
		return string(b[:])
	}
}

// NewSpanID returns a random W3C span id: 8 bytes, not all zero, as 16
// lower-case hex digits.
func NewSpanID() string {
	for {
		v := rand.Uint64()
		if v == 0 {
			continue
		}
		var b [16]byte
		putHex64(b[:], v)
		return string(b[:])
	}
}
