package rpc

import (
	"context"
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/daemoneye/daemoneye/envelope"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// Method describes one method of a service: its name on the wire and the
// protobuf types of its request and response (pointers to generated
// message types, such as *agentv1.ListCollectorsRequest). Declare it once,
// in a package that the service and its callers both import, and use it
// with Handle and Call. A Method is a value: copy it freely.
//
// A method's request travels in RpcRequest.method and body.message (a
// google.protobuf.Any); the service checks its type on arrival. The name
// of one of the seeds' collector operations ("health_check", "start",
// "get_snapshot", ...) makes the Method that operation instead: its request
// and response travel in the operation's own body field and operation
// enum, as the schema defines (then Req and Resp must be that field's
// types), and in process the service reads the caller's very objects,
// with nothing serialized.
type Method[Req, Resp proto.Message] struct {
	// Name is the method's name: lower_snake_case, at most 128 bytes,
	// such as "list_collectors". Unique within a Mux.
	Name string
	// Idempotent says calling twice has the same effect as once, so that
	// calls are retried after failures that may pass (see
	// ClientOptions.MaxAttempts). WithIdempotent overrides it per call.
	Idempotent bool
}

// Caller sends one RPC to a topic and returns its successful response, as
// Client.Call does. Call and the collector's typed client take a Caller,
// so that a caller may route requests (the CLI sends a collector's calls
// through the agent).
type Caller interface {
	Call(ctx context.Context, topic string, req *eventbusv1.RpcRequest) (*eventbusv1.RpcResponse, error)
}

// CallOption adjusts one call.
type CallOption func(*eventbusv1.RpcRequest)

// WithIdempotent marks the call idempotent (retried) or not, overriding
// Method.Idempotent.
func WithIdempotent(idempotent bool) CallOption {
	return func(r *eventbusv1.RpcRequest) { r.Idempotent = idempotent }
}

// WithTarget names the service instance or collector that should act
// (RpcRequest.target_id).
func WithTarget(id string) CallOption {
	return func(r *eventbusv1.RpcRequest) { r.TargetId = id }
}

// Call calls method m of the service on topic with req and returns its
// response. The deadline, retries (for idempotent methods), circuit
// breaker and errors are those of Client.Call: errors.Is matches a failure
// against ErrNoResponders, ErrTimeout, ErrInvalidArgument and the other
// sentinels, and errors.As gives the service's *Error. A response of
// another type than Resp is ErrBadResponse.
//
// Call takes req over: in process the service may read the very object,
// so do not modify it afterwards; likewise, read the response but do not
// modify it. c is normally a *Client.
func Call[Req, Resp proto.Message](ctx context.Context, c Caller, topic string, m Method[Req, Resp], req Req, opts ...CallOption) (Resp, error) {
	var zero Resp
	r := &eventbusv1.RpcRequest{Idempotent: m.Idempotent}
	for _, o := range opts {
		o(r)
	}
	if op, ok := operations[m.Name]; ok {
		if req.ProtoReflect().Descriptor() != op.req.Message() {
			return zero, fmt.Errorf("%s on %s: %w: it takes a %s, not a %s", m.Name, topic, ErrInvalidArgument,
				op.req.Message().FullName(), req.ProtoReflect().Descriptor().FullName())
		}
		msg := req.ProtoReflect()
		if !msg.IsValid() { // a nil pointer: an empty request
			msg = msg.New()
		}
		r.ProtoReflect().Set(op.req, protoreflect.ValueOfMessage(msg))
		r.Operation = op.op
	} else {
		if err := validMethod(m.Name); err != nil {
			return zero, fmt.Errorf("call on %s: %w", topic, err)
		}
		a, err := anypb.New(req)
		if err != nil {
			return zero, fmt.Errorf("%s on %s: %w: the request cannot be encoded: %v", m.Name, topic, ErrInvalidArgument, err)
		}
		r.Method, r.Body = m.Name, &eventbusv1.RpcRequest_Message{Message: a}
	}
	resp, err := c.Call(ctx, topic, r)
	if err != nil {
		return zero, err
	}
	return decodeResult[Resp](m.Name, topic, resp)
}

// decodeResult takes the result of method name out of a successful
// response: the operation's body field, or the message body, checked to
// be a Resp.
func decodeResult[Resp proto.Message](name, topic string, resp *eventbusv1.RpcResponse) (Resp, error) {
	var zero Resp
	if op, ok := operations[name]; ok {
		v := resp.ProtoReflect().Get(op.resp).Message()
		if !v.IsValid() {
			v = v.New() // a service that said nothing: an empty result
		}
		out, ok := v.Interface().(Resp)
		if !ok {
			return zero, fmt.Errorf("%s on %s: %w: the method returns a %s, not a %T", name, topic, ErrBadResponse, v.Descriptor().FullName(), zero)
		}
		return out, nil
	}
	out := zero.ProtoReflect().New().Interface().(Resp)
	switch b := resp.GetBody().(type) {
	case nil:
		return out, nil // an empty result
	case *eventbusv1.RpcResponse_Message:
		if want := out.ProtoReflect().Descriptor().FullName(); b.Message.MessageName() != want {
			return zero, fmt.Errorf("%s on %s: %w: the result is a %s, this client expects a %s", name, topic, ErrBadResponse, b.Message.MessageName(), want)
		}
		if err := proto.Unmarshal(b.Message.GetValue(), out); err != nil {
			return zero, fmt.Errorf("%s on %s: %w: the result does not decode: %v", name, topic, ErrBadResponse, err)
		}
		return out, nil
	}
	return zero, fmt.Errorf("%s on %s: %w: the result is a %T body, this client expects a protobuf message", name, topic, ErrBadResponse, resp.GetBody())
}

// CallRaw calls method name of the service on topic with a request of
// bytes and returns the bytes of its response; the service serves it with
// HandleRaw. Otherwise it is Call.
func CallRaw(ctx context.Context, c Caller, topic, name string, req []byte, idempotent bool, opts ...CallOption) ([]byte, error) {
	if err := validMethod(name); err != nil {
		return nil, fmt.Errorf("call on %s: %w", topic, err)
	}
	r := &eventbusv1.RpcRequest{Method: name, Idempotent: idempotent, Body: &eventbusv1.RpcRequest_Raw{Raw: req}}
	for _, o := range opts {
		o(r)
	}
	resp, err := c.Call(ctx, topic, r)
	if err != nil {
		return nil, err
	}
	switch b := resp.GetBody().(type) {
	case nil:
		return nil, nil
	case *eventbusv1.RpcResponse_Raw:
		return b.Raw, nil
	}
	return nil, fmt.Errorf("%s on %s: %w: the result is a %T body, this client expects raw bytes", name, topic, ErrBadResponse, resp.GetBody())
}

// validMethod checks a method name: lower_snake_case, 1 to 128 bytes.
func validMethod(name string) error {
	if name == "" || len(name) > 128 || strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789_") != "" {
		return fmt.Errorf("%w: method name %q is not lower_snake_case of 1 to 128 bytes", ErrInvalidArgument, name)
	}
	return nil
}

// operation is a collector operation as a method: its enum value and its
// body fields in RpcRequest and RpcResponse.
type operation struct {
	op         eventbusv1.RpcOperation
	name       string
	req, resp  protoreflect.FieldDescriptor
	reqMessage protoreflect.FullName
}

// operations are the seeds' collector operations by name (the body
// field's, such as "health_check"); opByEnum the same by enum value.
var operations, opByEnum = func() (map[string]*operation, []*operation) {
	byName := map[string]*operation{}
	values := eventbusv1.RpcOperation(0).Descriptor().Values()
	byEnum := make([]*operation, values.Len())
	reqFields := (&eventbusv1.RpcRequest{}).ProtoReflect().Descriptor().Oneofs().ByName("body").Fields()
	respFields := (&eventbusv1.RpcResponse{}).ProtoReflect().Descriptor().Oneofs().ByName("body").Fields()
	for i := range values.Len() {
		v := values.Get(i)
		name := strings.ToLower(strings.TrimPrefix(string(v.Name()), "RPC_OPERATION_"))
		req, resp := reqFields.ByName(protoreflect.Name(name)), respFields.ByName(protoreflect.Name(name))
		if req == nil || resp == nil {
			continue // UNSPECIFIED
		}
		op := &operation{op: eventbusv1.RpcOperation(v.Number()), name: name, req: req, resp: resp, reqMessage: req.Message().FullName()}
		byName[name] = op
		if int(v.Number()) < len(byEnum) {
			byEnum[v.Number()] = op
		}
	}
	return byName, byEnum
}()

// methodOf is the name of the method req calls: its method, or its
// operation's name (by the body, which is what the service reads).
func methodOf(req *eventbusv1.RpcRequest) string {
	if m := req.GetMethod(); m != "" {
		return m
	}
	if op := envelope.RequestOperation(req); int(op) < len(opByEnum) && opByEnum[op] != nil {
		return opByEnum[op].name
	}
	return ""
}

// HandleOption adjusts how a Mux serves one method.
type HandleOption func(*entry)

// Inline says the method answers quickly without blocking (no I/O, no
// long-held locks, no calls over the Server's own connection): the Server
// runs it on the goroutine that reads its connection (see InlineHandler).
func Inline() HandleOption { return func(e *entry) { e.inline = true } }

// entry is one method of a Mux.
type entry struct {
	serve  func(ctx context.Context, r *Request) (*eventbusv1.RpcResponse, error)
	inline bool
}

// Mux is a Handler that serves the methods registered with Handle and
// HandleRaw, dispatching each request by its method (or its collector
// operation). It answers a method it does not have with category
// UNSUPPORTED (code "operation_unsupported"), a request body of the wrong
// type with category VALIDATION (code "wrong_type", saying which type the
// method takes). Give it to Server.Handle for one or more topics.
//
// Registering is safe concurrently with serving (a method registered
// while the Mux serves is answered from the next request on), but a Mux
// is normally filled before it serves.
type Mux struct {
	name    string
	mu      sync.Mutex                        // serializes registrations
	methods atomic.Pointer[map[string]*entry] // copied on write: requests read it without a lock
}

// NewMux returns an empty Mux. name says what it serves in its answers to
// unknown methods ("collector procmond does not support start").
func NewMux(name string) *Mux {
	mx := &Mux{name: name}
	mx.methods.Store(&map[string]*entry{})
	return mx
}

func (mx *Mux) add(name string, e *entry, opts []HandleOption) {
	for _, o := range opts {
		o(e)
	}
	mx.mu.Lock()
	defer mx.mu.Unlock()
	old := *mx.methods.Load()
	if _, dup := old[name]; dup {
		panic(fmt.Sprintf("rpc: method %q registered twice with %s", name, mx.name))
	}
	m := maps.Clone(old)
	m[name] = e
	mx.methods.Store(&m)
}

// Has reports whether mx serves method name.
func (mx *Mux) Has(name string) bool {
	_, ok := (*mx.methods.Load())[name]
	return ok
}

// ServeRPC dispatches r to its method.
func (mx *Mux) ServeRPC(ctx context.Context, r *Request) (*eventbusv1.RpcResponse, error) {
	name := methodOf(r.Call)
	e, ok := (*mx.methods.Load())[name]
	if !ok {
		if name == "" {
			return nil, Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_VALIDATION, CodeInvalidRequest,
				"the request names no method and carries no operation body")
		}
		if len(name) > 128 || validMethod(name) != nil { // not echoed: it may be long, or not text
			return nil, Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_VALIDATION, CodeInvalidRequest,
				"the method name is not lower_snake_case of 1 to 128 bytes")
		}
		return nil, Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNSUPPORTED, CodeUnsupported,
			"%s does not support %s", mx.name, name)
	}
	return e.serve(ctx, r)
}

// Inline reports whether r's method was registered with Inline. A request
// for no method of mx is answered inline (at once, with an error).
func (mx *Mux) Inline(r *Request) bool {
	e, ok := (*mx.methods.Load())[methodOf(r.Call)]
	return !ok || e.inline
}

// Handle registers fn as method m of mx. fn receives the request decoded
// (and its type checked) and returns the response or an error, as a
// Handler does: an *Error to say exactly what the caller sees, any other
// error reported as category INTERNAL. rpc.RequestFrom(ctx) gives the
// whole request (topic, envelope, attempt). A nil response is sent as an
// empty one. fn may be called concurrently.
//
// Handle panics if m's name is not valid, is registered already, or is a
// collector operation whose body types are not Req and Resp: these are
// mistakes in the program, not in its input.
func Handle[Req, Resp proto.Message](mx *Mux, m Method[Req, Resp], fn func(ctx context.Context, req Req) (Resp, error), opts ...HandleOption) {
	var req Req
	var resp Resp
	if op, ok := operations[m.Name]; ok {
		if req.ProtoReflect().Descriptor() != op.req.Message() || resp.ProtoReflect().Descriptor() != op.resp.Message() {
			panic(fmt.Sprintf("rpc: operation %s takes a %s and returns a %s, not %T and %T", m.Name,
				op.req.Message().FullName(), op.resp.Message().FullName(), req, resp))
		}
		mx.add(m.Name, &entry{serve: func(ctx context.Context, r *Request) (*eventbusv1.RpcResponse, error) {
			in, _ := r.Call.ProtoReflect().Get(op.req).Message().Interface().(Req)
			out, err := fn(ctx, in)
			if err != nil {
				return nil, err
			}
			v := out.ProtoReflect()
			if !v.IsValid() {
				v = v.New()
			}
			res := &eventbusv1.RpcResponse{}
			res.ProtoReflect().Set(op.resp, protoreflect.ValueOfMessage(v))
			return res, nil
		}}, opts)
		return
	}
	if err := validMethod(m.Name); err != nil {
		panic(fmt.Sprintf("rpc: Handle: %v", err))
	}
	want := req.ProtoReflect().Descriptor().FullName()
	mx.add(m.Name, &entry{serve: func(ctx context.Context, r *Request) (*eventbusv1.RpcResponse, error) {
		in := req.ProtoReflect().New().Interface().(Req)
		switch b := r.Call.GetBody().(type) {
		case nil: // an empty request
		case *eventbusv1.RpcRequest_Message:
			if got := b.Message.MessageName(); got != want {
				return nil, wrongType(m.Name, "a "+string(want), "a "+string(got))
			}
			if err := proto.Unmarshal(b.Message.GetValue(), in); err != nil {
				return nil, InvalidArgument(CodeInvalidRequest, fmt.Sprintf("the %s request does not decode as a %s: %v", m.Name, want, err))
			}
		default:
			return nil, wrongType(m.Name, "a "+string(want), bodyName(r.Call))
		}
		out, err := fn(ctx, in)
		if err != nil {
			return nil, err
		}
		a, err := anypb.New(out)
		if err != nil {
			return nil, Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_INTERNAL, CodeInternal, "the %s result cannot be encoded: %v", m.Name, err)
		}
		return &eventbusv1.RpcResponse{Body: &eventbusv1.RpcResponse_Message{Message: a}}, nil
	}}, opts)
}

// HandleRaw registers fn as method name of mx, with requests and
// responses of bytes (CallRaw). Otherwise it is Handle.
func HandleRaw(mx *Mux, name string, fn func(ctx context.Context, req []byte) ([]byte, error), opts ...HandleOption) {
	if _, ok := operations[name]; ok {
		panic(fmt.Sprintf("rpc: HandleRaw: %s is a collector operation, whose body is a protobuf message", name))
	}
	if err := validMethod(name); err != nil {
		panic(fmt.Sprintf("rpc: HandleRaw: %v", err))
	}
	mx.add(name, &entry{serve: func(ctx context.Context, r *Request) (*eventbusv1.RpcResponse, error) {
		var in []byte
		switch b := r.Call.GetBody().(type) {
		case nil:
		case *eventbusv1.RpcRequest_Raw:
			in = b.Raw
		default:
			return nil, wrongType(name, "raw bytes", bodyName(r.Call))
		}
		out, err := fn(ctx, in)
		if err != nil {
			return nil, err
		}
		return &eventbusv1.RpcResponse{Body: &eventbusv1.RpcResponse_Raw{Raw: out}}, nil
	}}, opts)
}

// CodeWrongType is the code of a request whose body is not of the type
// its method takes.
const CodeWrongType = "wrong_type"

func wrongType(method, want, got string) *Error {
	return InvalidArgument(CodeWrongType, fmt.Sprintf("method %s takes %s, not %s", method, want, got),
		&eventbusv1.FieldViolation{Field: "body", Description: "want " + want})
}

// bodyName says what body a request carries, for errors.
func bodyName(r *eventbusv1.RpcRequest) string {
	switch b := r.GetBody().(type) {
	case *eventbusv1.RpcRequest_Message:
		return "a " + string(b.Message.MessageName())
	case *eventbusv1.RpcRequest_Raw:
		return "raw bytes"
	case nil:
		return "request without a body"
	}
	if op := envelope.RequestOperation(r); opByEnum[op] != nil {
		return "a " + string(opByEnum[op].reqMessage)
	}
	return fmt.Sprintf("%T", r.GetBody())
}

type requestKey struct{}

// RequestFrom returns the request a handler serves, from the context the
// Server gives it (topic, envelope with the sender and correlation, the
// RpcRequest with its attempt and deadline), or nil for another context.
func RequestFrom(ctx context.Context) *Request {
	r, _ := ctx.Value(requestKey{}).(*Request)
	return r
}
