// Package client connects to a DaemonEye broker over its UNIX socket and
// publishes and subscribes through it.
//
// A Conn buffers what it sends and a writer goroutine flushes the buffer in
// batches; Flush waits until the server has handled everything sent before
// it. Subscriptions deliver on bounded channels; messages that arrive
// while a channel is full are dropped and counted.
//
// Not yet: automatic reconnect with an offline buffer, TCP+mTLS, and an
// in-process transport with this API. They are planned for this package.
package client
