package envelope

import (
	"errors"
	"fmt"

	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
)

// ErrInvalidTraceparent is wrapped by the errors of ParseTraceparent.
var ErrInvalidTraceparent = errors.New("envelope: invalid traceparent")

// traceparentLen is the length of a version 00 traceparent:
// "00-" + 32 + "-" + 16 + "-" + 2.
const traceparentLen = 55

// Traceparent returns c's trace context as a W3C traceparent header value
// (version 00): "00-<trace id>-<span id>-<flags>", with the low 8 bits of
// c's trace flags. It returns "" when c is nil or its trace id or span id
// is missing or invalid (not lower-case hex of the right length, or all
// zero).
func Traceparent(c *eventbusv1.CorrelationMetadata) string {
	traceID, spanID := c.GetTraceId(), c.GetSpanId()
	if !validID(traceID, 32) || !validID(spanID, 16) {
		return ""
	}
	var b [traceparentLen]byte
	b[0], b[1], b[2] = '0', '0', '-'
	copy(b[3:35], traceID)
	b[35] = '-'
	copy(b[36:52], spanID)
	b[52] = '-'
	f := byte(c.GetTraceFlags())
	b[53], b[54] = hexDigits[f>>4], hexDigits[f&0x0f]
	return string(b[:])
}

// ParseTraceparent parses a W3C traceparent header value and returns its
// trace id, parent (span) id and flags; the ids are substrings of s. It
// follows the Trace Context rules: every field lower-case hex of its exact
// length, the ids not all zero, version ff invalid, a version 00 value
// exactly 55 bytes long; a value of a higher version may be longer, and
// then its 56th byte must be '-' (the extra fields are ignored). Errors
// wrap ErrInvalidTraceparent.
func ParseTraceparent(s string) (traceID, spanID string, flags byte, err error) {
	if len(s) < traceparentLen {
		return "", "", 0, tpError(s, "shorter than 55 bytes")
	}
	if s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return "", "", 0, tpError(s, "fields must be separated by '-' at offsets 2, 35 and 52")
	}
	version, ok := parseHexByte(s[0:2])
	switch {
	case !ok:
		return "", "", 0, tpError(s, "version is not two lower-case hex digits")
	case version == 0xff:
		return "", "", 0, tpError(s, "version ff is invalid")
	case version == 0 && len(s) != traceparentLen:
		return "", "", 0, tpError(s, "a version 00 traceparent is exactly 55 bytes")
	case len(s) > traceparentLen && s[traceparentLen] != '-':
		return "", "", 0, tpError(s, "extra data must follow a '-'")
	}
	traceID, spanID = s[3:35], s[36:52]
	if !validID(traceID, 32) {
		return "", "", 0, tpError(s, "trace id must be 32 lower-case hex digits, not all zero")
	}
	if !validID(spanID, 16) {
		return "", "", 0, tpError(s, "parent id must be 16 lower-case hex digits, not all zero")
	}
	flags, ok = parseHexByte(s[53:55])
	if !ok {
		return "", "", 0, tpError(s, "flags are not two lower-case hex digits")
	}
	return traceID, spanID, flags, nil
}

func tpError(s, reason string) error {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return fmt.Errorf("%w %q: %s", ErrInvalidTraceparent, s, reason)
}

// validID reports whether s is n lower-case hex digits, not all zero.
func validID(s string, n int) bool {
	if len(s) != n {
		return false
	}
	nonZero := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '0':
		case '1' <= c && c <= '9', 'a' <= c && c <= 'f':
			nonZero = true
		default:
			return false
		}
	}
	return nonZero
}

// parseHexByte parses two lower-case hex digits.
func parseHexByte(s string) (byte, bool) {
	hi, ok1 := hexVal(s[0])
	lo, ok2 := hexVal(s[1])
	return hi<<4 | lo, ok1 && ok2
}

func hexVal(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}
