// Package rpc is request/reply over the DaemonEye event bus, with the
// typed envelope: a Client calls, a Server answers.
//
// # Calls
//
// Client.Call wraps an eventbusv1.RpcRequest in an EventBusMessage (with a
// fresh message id, the caller's id and a correlation that continues the
// one in the context, if any), publishes it to a service topic under
// control. as a broker request, and waits for the response on the
// connection's inbox. The call's deadline (the context's, or
// ClientOptions.Timeout) travels in the request; the service cancels the
// handler's context when it passes. A request no service subscribes to
// fails at once with ErrNoResponders instead of waiting for the deadline.
//
// Calls marked idempotent (RpcRequest.idempotent) are retried with
// exponential backoff and jitter after failures that may pass: no
// responders (the service is restarting), an attempt that got no answer
// (ClientOptions.AttemptTimeout: the instance died holding it; the retry
// goes to another member of the queue group), and errors the service marks
// retryable. Retries keep the request id. A circuit breaker per topic
// turns repeated failures to reach a service into immediate
// ErrCircuitOpen errors until a cooldown passes.
//
// # Errors
//
// A service that fails answers with a status (error, timeout, cancelled,
// unavailable) and an RpcError: a stable code, a category, a message,
// metadata, retry hints and a typed detail. The caller receives it as an
// *Error, field for field; errors.Is matches it against the package's
// sentinels by category (ErrInvalidArgument, ErrNotFound, ErrUnavailable,
// ...). Handlers return *Error (see Errorf, InvalidArgument, NotFound) to
// choose what the caller sees; any other error is reported as INTERNAL
// with its text, a context deadline as TIMEOUT.
//
// # Serving
//
// A Server subscribes to the topics given to Handle, optionally in a queue
// group shared with other instances, and decodes each request on the
// goroutine that reads its connection. It runs the handler there if the
// handler is an InlineHandler that says the request is quick (no
// goroutine hand-off: the fastest path, see BENCHMARKS.md), or else on a
// worker goroutine (kept for the next request); at most
// ServerOptions.MaxConcurrent run at once, and a request beyond that is
// answered UNAVAILABLE at once so the caller can retry elsewhere. Requests whose schema major version differs from
// envelope.VersionMajor are refused with code "version_unsupported";
// older and newer minor versions are served (unknown fields are skipped).
// Shutdown stops taking requests and waits for the running handlers; Close
// cancels them. The Server owns its handler goroutines and waits for them.
//
// Typed clients and servers for the collector control operations are in
// package collector.
package rpc
