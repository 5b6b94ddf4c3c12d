// Package bench runs publish/subscribe load against a broker and measures
// throughput and end-to-end latency, for `daemoneye-cli bench`.
//
// [Run] starts a broker for the run (in-process, or behind the server on a
// UNIX socket or loopback TCP) or connects to a running one, subscribes
// every subscriber, then lets the publishers go. Every subscriber receives
// every message; the run ends when all have, or when nothing has arrived
// for [Config.IdleTimeout] after the publishers finished. What never
// arrived is reported as dropped, never hidden and never waited for
// without bound.
//
// Latency is end to end, publish to receive. A payload starts with its
// send time: nanoseconds since the run started, from the monotonic clock,
// in StampSize bytes, little-endian (0 means none). Publishers and
// subscribers run in one process and share the start time, so the
// subscriber subtracts the send time from its own clock reading. The
// latencies go into one [Histogram] per subscriber (log-linear buckets,
// bounded memory, percentiles within 0.4%), merged at the end.
//
// Over a socket every message carries a send time. In-process at full
// speed, one in 64 does ([DefaultSampleEvery]): reading the clock costs as
// much there as the broker's own work for a message.
package loadgen
