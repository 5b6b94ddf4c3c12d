// Package bench compares DaemonEye's bus with an embedded NATS server
// (nats-server v2.15.2, nats.go v1.55.0) on the same machine, in the same
// process, with the same message counts and payloads. The command
// bench/cmd/compare runs it and prints a table or JSON.
//
// It is a module of its own so that the main module never depends on
// nats-server: `go test ./...` at the repository root does not include it;
// run `cd bench && go test ./...`.
//
// # Scenarios
//
//   - pub/sub 1:1 and 1:10 (one publisher, N subscribers, each on its own
//     connection) with 16 B, 128 B and 1 KiB payloads: DaemonEye over its
//     UNIX socket against NATS over loopback TCP, and DaemonEye's
//     in-process client (client.Connect) against NATS's in-process
//     connection (nats.InProcessServer, a net.Pipe).
//   - request/reply: one caller making sequential requests to one
//     responder on another connection, over the same pairs of transports.
//   - RPC: a health check in the DaemonEye envelope, sequential calls,
//     over the same pairs of transports. DaemonEye runs it with its rpc
//     package; on NATS the same envelopes are built, encoded, decoded and
//     checked by the same steps around nats.go request/reply, so both do
//     the same protobuf work and the difference is the bus. (In process,
//     DaemonEye's rpc passes the decoded envelope along and skips the
//     decoding; NATS cannot.)
//   - pub/sub 1:1, 128 B, over mutual TLS on loopback TCP, when the
//     DaemonEye client can dial tls:// (otherwise reported as skipped).
//
// # Method
//
// Every trial starts a fresh broker (and server) for one system, connects
// the subscribers, warms up with a tenth of the messages (at most 20,000)
// and waits until every subscriber has them, then publishes the measured
// messages as fast as the client takes them and flushes once at the end.
// The time runs from the first measured publish until the last subscriber
// has counted its last message. Subscribers do no work per message beyond
// counting. A trial that stops making progress for StallTimeout is cut
// short and reported as incomplete, with its drops.
//
// Both systems get the same treatment: DaemonEye subscriptions have a
// channel of 1<<16 messages; NATS subscriptions use an asynchronous handler
// with pending limits removed (SetPendingLimits(-1, -1)). Neither client
// reconnects, so a connection the server closes as a slow consumer shows
// as a disconnect instead of being papered over. Each scenario runs the
// two systems alternately (DaemonEye first on even repetitions, NATS first
// on odd ones) and reports the median of Count repetitions.
package bench
