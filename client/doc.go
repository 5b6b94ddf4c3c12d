// Package client connects to a DaemonEye broker and publishes, subscribes
// and makes requests through it: with Dial over its UNIX socket
// (unix:///path, the default) or over TCP with mutual TLS
// (tls://host:port), or with Connect to an *eventbus.Broker in the same
// process, without serialization. The Conn's API is the same for all three.
//
// A Conn checks topics and patterns before it sends them, with
// Options.Policy: for Connect the broker's own policy, for Dial the
// default one unless Options.Policy names the broker's.
//
// A Conn buffers what it sends and one goroutine flushes the buffer in
// batches; Flush waits until the server has handled everything sent before
// it, and AsyncErr reports what the server refused. A refusal reads
// "client: refused by the server: " and the server's text, and matches
// ErrRefused (and eventbus.ErrPayloadTooLarge, eventbus.ErrSlowConsumer,
// topic.ErrInvalidTopic or topic.ErrInvalidPattern where the server's
// code says so); a lost connection wraps ErrDisconnected once and says
// why, with the broker's last error frame if it sent one. Subscriptions deliver
// on bounded channels (or to a handler, with SubscribeFunc). A channel that
// is full holds up the Conn (flow control): it stops reading, so the broker
// keeps the messages, and what it cannot keep it drops and counts in its
// stats. While it waits, nothing else arrives on the Conn, so a consumer
// must not wait on its own Conn while its channel may be full (see
// SubscribeOptions.DropWhenFull, which drops and counts in the client
// instead).
//
// Over a UNIX socket, Dial reads the listening process's credentials
// before it sends anything (the hello may carry a token): it must be root
// or Options.ServerUID (default: the client's own uid), otherwise Dial
// fails with ErrUntrustedBroker.
//
// Request publishes a request and waits for the reply on the Conn's inbox
// (a subscription to control.inbox.<random>.+, made on first use). A
// request nobody subscribes to fails at once with ErrNoResponders.
//
// When a socket connection is lost, the Conn reconnects by itself with
// exponential backoff and jitter, subscribes everything again and waits
// for the broker to confirm, then sends what was published meanwhile. That
// buffer is bounded (Options.MaxBuffered); a publish beyond it fails with
// ErrBufferFull and is counted in Stats, never dropped silently. Messages
// in the batch being written when the connection broke may or may not have
// reached the broker; Stats.LostInFlight counts them. Flush after a batch
// of publishes to know they arrived. When the broker says it is going away
// (a graceful shutdown), the Conn reads what the broker already sent, up
// to the pong of a last ping (at most 2 s), and keeps its publishes for the
// next broker. Messages published while a subscriber is still reconnecting
// reach a broker without its subscription: they are counted there as
// unrouted ('daemoneye-cli stats').
package client
