// Package server serves DaemonEye's wire protocol (package wire) on
// listeners from package transport, connecting each client to an
// eventbus.Broker.
//
// Each connection has one reader goroutine, which runs the handshake and
// then handles the client's frames in order, and one writer goroutine,
// which flushes the connection's outbound buffer with one write per batch
// however many frames accumulated. The connection is an eventbus.Sink:
// publishers append deliver frames to its buffer directly, bounded by
// Options.MaxPending. When the publisher is another connection's reader,
// that reader writes small batches itself, without blocking, before it
// reads again (once per read batch, as nats-server does), saving the
// writer's wake-up on the request/reply path.
//
// Every read and write has a deadline: the handshake must complete within
// HandshakeTimeout, a connection idle for IdleTimeout is closed, and a
// flush that does not finish within WriteTimeout disconnects the client.
// A protocol violation closes only the offending connection, after an error
// frame that says why.
//
// Connections are counted in two stages. Before its welcome a connection
// holds one of MaxPreAuth slots; from its welcome on, one of MaxConns.
// The local operator (root or the server's user over a UNIX socket, known
// from SO_PEERCRED at accept) takes no MaxPreAuth slot and may exceed
// MaxConns by OperatorReserve, so that silent or hostile clients cannot
// lock it out. Failed token attempts are throttled per source (uid or IP
// address) and logged at WARN, one line per source per 10 s.
//
// Lock order: conn.writeMu, then conn.mu; conn.mu is taken inside the
// broker's topic lock (by Deliver) and is never held while calling into
// the broker. writeMu is never taken under the broker's locks; the writer
// holds it while it reports discarded frames to the broker
// (SinkDiscarded). docs/locks.md has the whole order, across packages.
package server
