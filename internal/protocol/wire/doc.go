// Package wire is DaemonEye's binary wire protocol: length-prefixed frames
// with a type, flags and a CRC32C checksum, and the encodings of the frame
// bodies. The layout is specified in docs/protocol.md; this package is its
// only implementation.
//
// Encoding appends to a caller's buffer and decoding reads into a reused
// buffer, so neither allocates per frame. Decoded bodies alias the reader's
// buffer. A frame's declared length is checked against the limit before any
// memory is set aside for it.
//
// The broker routes on the topic and flags in a publish frame and never
// looks inside the payload (a protobuf envelope, or anything else).
package wire
