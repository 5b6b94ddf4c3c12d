// Package envelope builds, encodes and decodes the messages DaemonEye sends
// over its event bus: [eventbusv1.EventBusMessage] envelopes, generated from
// proto/daemoneye/eventbus/v1 (the catalog and topic tree are in
// docs/schemas.md).
//
// # Building
//
// [New] wraps a payload (a collection event, an RPC request or response, a
// control message, a heartbeat or an alert) in an envelope with its
// metadata filled in: a fresh message id, the topic, the message type, the
// timestamp the caller passes (so a hot path that already holds the time,
// such as a collector stamping a whole enumeration, reads no clock per
// message) and the schema version. [Validate] checks what a receiver relies
// on, including that an RPC request's operation agrees with its body.
//
// # Correlation and tracing
//
// [NewRoot] starts a workflow; [Child] derives the next step from a parent,
// keeping the root id and the trace id and advancing the sequence number.
// Trace and span ids are W3C Trace Context ids, so [Traceparent] and
// [ParseTraceparent] convert to and from a traceparent header.
//
// # Encoding
//
// An [Encoder] marshals into a buffer it reuses, so encoding allocates
// nothing once the buffer has grown to the largest message (messages whose
// map fields are not empty are the exception: protobuf's map encoder
// allocates per entry). A [Decoder] unmarshals into a message it reuses.
// Neither is safe for concurrent use; give each goroutine its own.
//
// Identifiers (message, correlation, trace and span ids) come from the
// runtime's ChaCha8 generator (math/rand/v2), which is seeded from the
// operating system: unique and unpredictable enough for ids, never to be
// used as secrets.
//
// The package starts no goroutines.
package envelope
