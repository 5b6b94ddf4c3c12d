package collector

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/envelope"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/testutil/clienttest"
	"github.com/daemoneye/daemoneye/internal/testutil/protofill"
	"github.com/daemoneye/daemoneye/rpc"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// full implements every interface: it records the request body it gets
// per operation and answers with the body prepared for it.
type full struct {
	mu  sync.Mutex
	got map[eventbusv1.RpcOperation]proto.Message
	ret map[eventbusv1.RpcOperation]proto.Message
}

func answer[R proto.Message](f *full, op eventbusv1.RpcOperation, req proto.Message) (R, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got[op] = req
	r, _ := f.ret[op].(R)
	return r, nil
}

func (f *full) Health(_ context.Context, r *eventbusv1.HealthCheckRequest) (*eventbusv1.HealthCheckResponse, error) {
	return answer[*eventbusv1.HealthCheckResponse](f, eventbusv1.RpcOperation_RPC_OPERATION_HEALTH_CHECK, r)
}
func (f *full) Capabilities(_ context.Context, r *eventbusv1.GetCapabilitiesRequest) (*eventbusv1.Capabilities, error) {
	return answer[*eventbusv1.Capabilities](f, eventbusv1.RpcOperation_RPC_OPERATION_GET_CAPABILITIES, r)
}
func (f *full) Start(_ context.Context, r *eventbusv1.LifecycleRequest) (*eventbusv1.LifecycleResponse, error) {
	return answer[*eventbusv1.LifecycleResponse](f, eventbusv1.RpcOperation_RPC_OPERATION_START, r)
}
func (f *full) Stop(_ context.Context, r *eventbusv1.LifecycleRequest) (*eventbusv1.LifecycleResponse, error) {
	return answer[*eventbusv1.LifecycleResponse](f, eventbusv1.RpcOperation_RPC_OPERATION_STOP, r)
}
func (f *full) Restart(_ context.Context, r *eventbusv1.LifecycleRequest) (*eventbusv1.LifecycleResponse, error) {
	return answer[*eventbusv1.LifecycleResponse](f, eventbusv1.RpcOperation_RPC_OPERATION_RESTART, r)
}
func (f *full) Pause(_ context.Context, r *eventbusv1.LifecycleRequest) (*eventbusv1.LifecycleResponse, error) {
	return answer[*eventbusv1.LifecycleResponse](f, eventbusv1.RpcOperation_RPC_OPERATION_PAUSE, r)
}
func (f *full) Resume(_ context.Context, r *eventbusv1.LifecycleRequest) (*eventbusv1.LifecycleResponse, error) {
	return answer[*eventbusv1.LifecycleResponse](f, eventbusv1.RpcOperation_RPC_OPERATION_RESUME, r)
}
func (f *full) UpdateConfig(_ context.Context, r *eventbusv1.ConfigUpdateRequest) (*eventbusv1.ConfigUpdateResult, error) {
	return answer[*eventbusv1.ConfigUpdateResult](f, eventbusv1.RpcOperation_RPC_OPERATION_UPDATE_CONFIG, r)
}
func (f *full) GracefulShutdown(_ context.Context, r *eventbusv1.ShutdownRequest) (*eventbusv1.ShutdownResponse, error) {
	return answer[*eventbusv1.ShutdownResponse](f, eventbusv1.RpcOperation_RPC_OPERATION_GRACEFUL_SHUTDOWN, r)
}
func (f *full) ForceShutdown(_ context.Context, r *eventbusv1.ShutdownRequest) (*eventbusv1.ShutdownResponse, error) {
	return answer[*eventbusv1.ShutdownResponse](f, eventbusv1.RpcOperation_RPC_OPERATION_FORCE_SHUTDOWN, r)
}
func (f *full) Snapshot(_ context.Context, r *eventbusv1.SnapshotRequest) (*eventbusv1.ProcessSnapshot, error) {
	return answer[*eventbusv1.ProcessSnapshot](f, eventbusv1.RpcOperation_RPC_OPERATION_GET_SNAPSHOT, r)
}
func (f *full) Register(_ context.Context, r *eventbusv1.RegisterRequest) (*eventbusv1.RegisterResponse, error) {
	return answer[*eventbusv1.RegisterResponse](f, eventbusv1.RpcOperation_RPC_OPERATION_REGISTER, r)
}
func (f *full) Deregister(_ context.Context, r *eventbusv1.DeregisterRequest) (*eventbusv1.DeregisterResponse, error) {
	return answer[*eventbusv1.DeregisterResponse](f, eventbusv1.RpcOperation_RPC_OPERATION_DEREGISTER, r)
}

// typed adapts a typed Client method to one signature.
func typed[Q, R proto.Message](call func(context.Context, string, Q) (R, error)) func(context.Context, string, proto.Message) (proto.Message, error) {
	return func(ctx context.Context, id string, q proto.Message) (proto.Message, error) {
		return call(ctx, id, q.(Q))
	}
}

// Every operation, through the typed client, over the bus: the collector
// gets the request body with every field as sent, and the caller gets the
// response body with every field as the collector returned it.
func TestEveryOperationRoundTrips(t *testing.T) {
	clienttest.EachTransport(t, func(t *testing.T, dial func(string) *client.Conn) {
		f := &full{got: map[eventbusv1.RpcOperation]proto.Message{}, ret: map[eventbusv1.RpcOperation]proto.Message{}}
		srv := rpc.NewServer(dial("demo"), rpc.ServerOptions{})
		defer srv.Close()
		if err := Serve(t.Context(), srv, "demo", f); err != nil {
			t.Fatal(err)
		}
		if err := ServeRegistry(t.Context(), srv, f); err != nil {
			t.Fatal(err)
		}
		c := NewClient(rpc.NewClient(dial("agent"), rpc.ClientOptions{}))
		calls := map[eventbusv1.RpcOperation]func(context.Context, string, proto.Message) (proto.Message, error){
			eventbusv1.RpcOperation_RPC_OPERATION_HEALTH_CHECK:      typed(c.Health),
			eventbusv1.RpcOperation_RPC_OPERATION_GET_CAPABILITIES:  typed(c.Capabilities),
			eventbusv1.RpcOperation_RPC_OPERATION_START:             typed(c.Start),
			eventbusv1.RpcOperation_RPC_OPERATION_STOP:              typed(c.Stop),
			eventbusv1.RpcOperation_RPC_OPERATION_RESTART:           typed(c.Restart),
			eventbusv1.RpcOperation_RPC_OPERATION_PAUSE:             typed(c.Pause),
			eventbusv1.RpcOperation_RPC_OPERATION_RESUME:            typed(c.Resume),
			eventbusv1.RpcOperation_RPC_OPERATION_UPDATE_CONFIG:     typed(c.UpdateConfig),
			eventbusv1.RpcOperation_RPC_OPERATION_GRACEFUL_SHUTDOWN: typed(c.GracefulShutdown),
			eventbusv1.RpcOperation_RPC_OPERATION_FORCE_SHUTDOWN:    typed(c.ForceShutdown),
			eventbusv1.RpcOperation_RPC_OPERATION_GET_SNAPSHOT:      typed(c.Snapshot),
			eventbusv1.RpcOperation_RPC_OPERATION_REGISTER: func(ctx context.Context, _ string, q proto.Message) (proto.Message, error) {
				return c.Register(ctx, q.(*eventbusv1.RegisterRequest))
			},
			eventbusv1.RpcOperation_RPC_OPERATION_DEREGISTER: func(ctx context.Context, _ string, q proto.Message) (proto.Message, error) {
				return c.Deregister(ctx, q.(*eventbusv1.DeregisterRequest))
			},
		}
		reqBody := (&eventbusv1.RpcRequest{}).ProtoReflect().Descriptor().Oneofs().ByName("body")
		respBody := (&eventbusv1.RpcResponse{}).ProtoReflect().Descriptor().Oneofs().ByName("body")
		ops := eventbusv1.RpcOperation(0).Descriptor().Values()
		if len(calls) != ops.Len()-1 {
			t.Fatalf("the test covers %d operations of %d", len(calls), ops.Len()-1)
		}
		for i := 1; i < ops.Len(); i++ {
			op := eventbusv1.RpcOperation(ops.Get(i).Number())
			name := protoreflect.Name(opName(op))
			fill := protofill.New()
			fill.Choice = i
			q := newBody(reqBody, name)
			fill.Fill(q.ProtoReflect())
			r := newBody(respBody, name)
			fill.Fill(r.ProtoReflect())
			if op == eventbusv1.RpcOperation_RPC_OPERATION_REGISTER || op == eventbusv1.RpcOperation_RPC_OPERATION_DEREGISTER {
				// Topics derive from the id: it must be a valid segment.
				q.ProtoReflect().Set(q.ProtoReflect().Descriptor().Fields().ByName("collector_id"), protoreflect.ValueOfString("demo-2"))
			}
			f.mu.Lock()
			f.ret[op] = proto.Clone(r)
			f.mu.Unlock()
			got, err := calls[op](t.Context(), "demo", q)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			f.mu.Lock()
			received := f.got[op]
			f.mu.Unlock()
			if !proto.Equal(received, q) {
				t.Errorf("%s: the collector got\n%v\nthe caller sent\n%v", name, received, q)
			}
			if caps, ok := r.(*eventbusv1.Capabilities); ok {
				// The Handler speaks for the operations and versions.
				caps.SupportedOperations, caps.Version, caps.SupportedVersions = Operations(f), envelope.CurrentVersion(), supportedVersions()
			}
			if !proto.Equal(got, r) {
				t.Errorf("%s: the caller got\n%v\nthe collector returned\n%v", name, got, r)
			}
		}
	})
}

func newBody(body protoreflect.OneofDescriptor, name protoreflect.Name) proto.Message {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(body.Fields().ByName(name).Message().FullName())
	if err != nil {
		panic(err)
	}
	return mt.New().Interface()
}

// minimal implements only what every collector must.
type minimal struct{}

func (minimal) Health(context.Context, *eventbusv1.HealthCheckRequest) (*eventbusv1.HealthCheckResponse, error) {
	return &eventbusv1.HealthCheckResponse{Status: eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY}, nil
}
func (minimal) Capabilities(context.Context, *eventbusv1.GetCapabilitiesRequest) (*eventbusv1.Capabilities, error) {
	return &eventbusv1.Capabilities{Features: []string{"demo"}}, nil
}

func TestUnsupportedAndWrongTopic(t *testing.T) {
	clienttest.EachTransport(t, func(t *testing.T, dial func(string) *client.Conn) {
		srv := rpc.NewServer(dial("demo"), rpc.ServerOptions{})
		defer srv.Close()
		if err := Serve(t.Context(), srv, "demo", minimal{}); err != nil {
			t.Fatal(err)
		}
		rc := rpc.NewClient(dial("agent"), rpc.ClientOptions{BreakerFailures: -1})
		c := NewClient(rc)
		caps, err := c.Capabilities(t.Context(), "demo", &eventbusv1.GetCapabilitiesRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if len(caps.GetSupportedOperations()) != 2 || caps.GetFeatures()[0] != "demo" || caps.GetVersion().GetMinor() != envelope.VersionMinor {
			t.Errorf("capabilities %v", caps)
		}
		if _, err := c.Pause(t.Context(), "demo", &eventbusv1.LifecycleRequest{}); !errors.Is(err, rpc.ErrUnsupported) {
			t.Errorf("Pause on a collector without Lifecycle = %v, want ErrUnsupported", err)
		}
		// START sent to the health topic: refused, not started.
		_, err = rc.Call(t.Context(), Topic(eventbusv1.RpcOperation_RPC_OPERATION_HEALTH_CHECK, "demo"),
			&eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_Start{Start: &eventbusv1.LifecycleRequest{}}})
		var e *rpc.Error
		if !errors.As(err, &e) || e.Detail.GetCode() != "wrong_topic" || !strings.Contains(e.Detail.GetMessage(), "control.collector.lifecycle.demo") {
			t.Errorf("START on the health topic = %v", err)
		}
		if _, err := c.Health(t.Context(), "other", &eventbusv1.HealthCheckRequest{}); !errors.Is(err, rpc.ErrNoResponders) {
			t.Errorf("Health of a collector nobody serves = %v", err)
		}
	})
}

func TestTopicAndID(t *testing.T) {
	for op, want := range map[eventbusv1.RpcOperation]string{
		eventbusv1.RpcOperation_RPC_OPERATION_HEALTH_CHECK:     "control.collector.health.procmond",
		eventbusv1.RpcOperation_RPC_OPERATION_FORCE_SHUTDOWN:   "control.collector.lifecycle.procmond",
		eventbusv1.RpcOperation_RPC_OPERATION_UPDATE_CONFIG:    "control.collector.config.procmond",
		eventbusv1.RpcOperation_RPC_OPERATION_GET_CAPABILITIES: "control.collector.capabilities.procmond",
		eventbusv1.RpcOperation_RPC_OPERATION_GET_SNAPSHOT:     "control.agent.tasks.procmond",
		eventbusv1.RpcOperation_RPC_OPERATION_REGISTER:         "control.agent.coordination",
		eventbusv1.RpcOperation_RPC_OPERATION_UNSPECIFIED:      "",
	} {
		if got := Topic(op, "procmond"); got != want {
			t.Errorf("Topic(%v) = %q, want %q", op, got, want)
		}
	}
	for id, ok := range map[string]bool{"procmond": true, "net-mon_2": true, "": false, "a.b": false, "Proc": false, "#": false, "a+": false, strings.Repeat("x", 300): false} {
		if err := ValidateID(id); (err == nil) != ok {
			t.Errorf("ValidateID(%q) = %v", id, err)
		} else if err != nil && !errors.Is(err, ErrInvalidID) {
			t.Errorf("ValidateID(%q) = %v, not ErrInvalidID", id, err)
		}
	}
}

// Health checks and capability queries are answered on the connection's
// reading goroutine; operations that may take time are not, whatever
// operation the request claims.
func TestHandlerInline(t *testing.T) {
	h, ok := Handler("demo", &full{}).(rpc.InlineHandler)
	if !ok {
		t.Fatal("collector.Handler is not an rpc.InlineHandler")
	}
	health := eventbusv1.RpcOperation_RPC_OPERATION_HEALTH_CHECK
	start := eventbusv1.RpcOperation_RPC_OPERATION_START
	for _, tc := range []struct {
		name  string
		op    eventbusv1.RpcOperation
		topic string
		body  *eventbusv1.RpcRequest
		want  bool
	}{
		{"health", health, Topic(health, "demo"), &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_HealthCheck{}}, true},
		{"capabilities", eventbusv1.RpcOperation_RPC_OPERATION_GET_CAPABILITIES, Topic(eventbusv1.RpcOperation_RPC_OPERATION_GET_CAPABILITIES, "demo"),
			&eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_GetCapabilities{}}, true},
		{"start", start, Topic(start, "demo"), &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_Start{}}, false},
		{"snapshot", eventbusv1.RpcOperation_RPC_OPERATION_GET_SNAPSHOT, Topic(eventbusv1.RpcOperation_RPC_OPERATION_GET_SNAPSHOT, "demo"),
			&eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_GetSnapshot{}}, false},
		// Claims to be a health check, carries a start: the body is what
		// would run, so it is refused for its topic, at once.
		{"start posing as health", health, Topic(health, "demo"), &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_Start{}}, true},
		// Refused for its topic at once.
		{"start on the health topic", start, Topic(health, "demo"), &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_Start{}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.body.Operation = tc.op
			if got := h.Inline(&rpc.Request{Topic: tc.topic, Call: tc.body}); got != tc.want {
				t.Errorf("Inline = %v, want %v", got, tc.want)
			}
		})
	}
}

// The topic is checked against the operation a request's body carries
// (what would run), not the operation it claims; a method of another
// service is refused.
func TestHandlerChecksTheBodysTopic(t *testing.T) {
	f := &full{got: map[eventbusv1.RpcOperation]proto.Message{}, ret: map[eventbusv1.RpcOperation]proto.Message{}}
	h := Handler("demo", f)
	health := eventbusv1.RpcOperation_RPC_OPERATION_HEALTH_CHECK
	for _, tc := range []struct {
		name string
		req  *eventbusv1.RpcRequest
		want error
		code string
	}{
		{"start posing as health", &eventbusv1.RpcRequest{Operation: health, Body: &eventbusv1.RpcRequest_Start{Start: &eventbusv1.LifecycleRequest{}}},
			rpc.ErrInvalidArgument, "wrong_topic"},
		{"a method of another service", &eventbusv1.RpcRequest{Method: "list_collectors"}, rpc.ErrUnsupported, rpc.CodeUnsupported},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := h.ServeRPC(t.Context(), &rpc.Request{Topic: Topic(health, "demo"), Call: tc.req})
			var e *rpc.Error
			if !errors.Is(err, tc.want) || !errors.As(err, &e) || e.Detail.GetCode() != tc.code {
				t.Errorf("ServeRPC = %v, want %v (code %s)", err, tc.want, tc.code)
			}
			if len(f.got) != 0 {
				t.Errorf("the collector was called: %v", f.got)
			}
		})
	}
}
