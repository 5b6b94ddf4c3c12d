// Package topics names the topics of DaemonEye's topic tree: the seeds'
// hierarchy as constants, and builders for the topics that end with an id.
// It is the one place these names are written; the agent, the CLI, the
// collectors, the server and the client all take them from here.
//
// The tree has two domains. events.* carries what collectors observe
// (CollectionEvent payloads) and the agent's alerts; control.* carries
// requests, replies, heartbeats and the broker's own services. Package
// topic (singular) validates and matches topic names; this package only
// names them. It imports nothing outside the standard library, so every
// layer may use it.
//
// The constants and functions are safe for concurrent use.
package topics
