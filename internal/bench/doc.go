// Package bench runs publish/subscribe load against a broker and measures
// throughput and latency, for `daemoneye-cli bench`. Latency is sampled: one
// message in SampleEvery carries its send time, so taking the clock does not
// slow the measured path.
package bench
