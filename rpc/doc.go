// Package rpc is request/reply over the DaemonEye event bus, with the
// typed envelope: a Client calls, a Server answers.
//
// # Methods
//
// A service's methods are Method values, declared once where the service
// and its callers both see them, each with a name and the protobuf types
// of its request and response:
//
//	var Upper = rpc.Method[*textv1.UpperRequest, *textv1.UpperReply]{Name: "upper", Idempotent: true}
//
// The service registers a function per method on a Mux and serves the Mux
// on a topic (Server.Handle); a caller uses Call:
//
//	mux := rpc.NewMux("the text service")
//	rpc.Handle(mux, Upper, upper, rpc.Inline()) // func(ctx, *textv1.UpperRequest) (*textv1.UpperReply, error)
//	srv.Handle(ctx, "control.text", mux)
//
//	reply, err := rpc.Call(ctx, client, "control.text", Upper, &textv1.UpperRequest{Text: "hi"})
//
// On the wire the request names its method (RpcRequest.method) and carries
// its message in a google.protobuf.Any; the service checks the type and
// answers another with category VALIDATION, code "wrong_type", saying
// which type the method takes (errors.Is(err, ErrInvalidArgument)). A
// response of another type than the caller expects is ErrBadResponse.
// CallRaw and HandleRaw do the same with bytes of the service's own
// format. A method the Mux does not have is answered UNSUPPORTED.
//
// The seeds' collector operations are methods too, named after their body
// fields ("health_check", "start", ...; see package collector): those
// travel in the operation's own body field, and in process the service
// reads the caller's very request object, with nothing serialized. A
// service's own methods are encoded even in process (one Marshal and one
// Unmarshal each way).
//
// Everything below applies to both: the deadline, no-responders, retries
// of idempotent methods (Method.Idempotent, or WithIdempotent per call),
// the circuit breaker, the error model, MaxConcurrent, inline handlers
// and Shutdown.
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
// Below Call and Mux are Client.Call, which sends an RpcRequest as given,
// and the Handler interface, which receives the whole Request; both are
// for callers and services that need the envelope itself (the agent's
// forwarder passes requests through unchanged).
//
// Typed clients and servers for the collector control operations are in
// package collector.
package rpc
