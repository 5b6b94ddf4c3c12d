package envelope_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/envelope"
	"github.com/daemoneye/daemoneye/eventbus"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/topic"
	"github.com/daemoneye/daemoneye/topics"
	"google.golang.org/protobuf/proto"
)

func request(op eventbusv1.RpcOperation) *eventbusv1.EventBusMessage {
	m := envelope.New("control.collector.lifecycle.procmond", time.Unix(1, 0), &eventbusv1.RpcRequestPayload{
		Request: &eventbusv1.RpcRequest{
			RequestId: "r1", Operation: op,
			Body: &eventbusv1.RpcRequest_Start{Start: &eventbusv1.LifecycleRequest{CollectorId: "procmond"}},
		},
	})
	m.Correlation = envelope.NewRoot()
	return m
}

func response(status eventbusv1.RpcStatus, withErr, withBody bool) *eventbusv1.EventBusMessage {
	r := &eventbusv1.RpcResponse{RequestId: "r1", Operation: eventbusv1.RpcOperation_RPC_OPERATION_HEALTH_CHECK, Status: status}
	if withErr {
		r.Error = &eventbusv1.RpcError{Code: "collector_busy", Category: eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNAVAILABLE}
	}
	if withBody {
		r.Body = &eventbusv1.RpcResponse_HealthCheck{HealthCheck: &eventbusv1.HealthCheckResponse{Status: eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY}}
	}
	return envelope.New("control.inbox.abc.1", time.Unix(1, 0), &eventbusv1.RpcResponsePayload{Response: r})
}

func TestValidate(t *testing.T) {
	start := eventbusv1.RpcOperation_RPC_OPERATION_START
	tests := []struct {
		name    string
		m       func() *eventbusv1.EventBusMessage
		wantErr string // "" for valid
	}{
		{"process event", processEvent, ""},
		{"request", func() *eventbusv1.EventBusMessage { return request(start) }, ""},
		{"success", func() *eventbusv1.EventBusMessage {
			return response(eventbusv1.RpcStatus_RPC_STATUS_SUCCESS, false, true)
		}, ""},
		{"failure", func() *eventbusv1.EventBusMessage {
			return response(eventbusv1.RpcStatus_RPC_STATUS_UNAVAILABLE, true, false)
		}, ""},
		{"no version is fine", func() *eventbusv1.EventBusMessage { m := processEvent(); m.Metadata.Version = nil; return m }, ""},
		{"no correlation is fine", func() *eventbusv1.EventBusMessage { m := processEvent(); m.Correlation = nil; return m }, ""},

		{"nil", func() *eventbusv1.EventBusMessage { return nil }, "nil message"},
		{"no metadata", func() *eventbusv1.EventBusMessage { m := processEvent(); m.Metadata = nil; return m }, "no metadata"},
		{"no id", func() *eventbusv1.EventBusMessage { m := processEvent(); m.Metadata.MessageId = ""; return m }, "no message id"},
		{"bad topic", func() *eventbusv1.EventBusMessage { m := processEvent(); m.Metadata.Topic = "events.*"; return m }, "invalid topic"},
		{"no topic", func() *eventbusv1.EventBusMessage { m := processEvent(); m.Metadata.Topic = ""; return m }, "invalid topic"},
		{"priority", func() *eventbusv1.EventBusMessage { m := processEvent(); m.Metadata.Priority = 5; return m }, "priority 5"},
		{"major", func() *eventbusv1.EventBusMessage { m := processEvent(); m.Metadata.Version.Major = 2; return m }, "major version 2"},
		{"no payload", func() *eventbusv1.EventBusMessage { m := processEvent(); m.Payload = nil; return m }, "no payload"},
		{"type mismatch", func() *eventbusv1.EventBusMessage {
			m := processEvent()
			m.Metadata.MessageType = eventbusv1.MessageType_MESSAGE_TYPE_ALERT
			return m
		}, "does not match"},
		{"correlation without id", func() *eventbusv1.EventBusMessage { m := processEvent(); m.Correlation.CorrelationId = ""; return m }, "without a correlation id"},
		{"correlation without root", func() *eventbusv1.EventBusMessage {
			m := processEvent()
			m.Correlation.RootCorrelationId = ""
			return m
		}, "without a root"},
		{"bad trace id", func() *eventbusv1.EventBusMessage {
			m := processEvent()
			s := "xyz"
			m.Correlation.TraceId = &s
			return m
		}, "trace id"},
		{"bad span id", func() *eventbusv1.EventBusMessage {
			m := processEvent()
			s := "0000000000000000"
			m.Correlation.SpanId = &s
			return m
		}, "span id"},
		{"request without request", func() *eventbusv1.EventBusMessage {
			return envelope.New("control.a", time.Unix(1, 0), &eventbusv1.RpcRequestPayload{})
		}, "without a request"},
		{"request without id", func() *eventbusv1.EventBusMessage {
			m := request(start)
			m.GetRpcRequest().Request.RequestId = ""
			return m
		}, "without a request id"},
		{"request without operation", func() *eventbusv1.EventBusMessage { return request(0) }, "neither an operation nor a method"},
		{"method request", func() *eventbusv1.EventBusMessage {
			m := request(0)
			m.GetRpcRequest().Request.Method = "list_collectors"
			m.GetRpcRequest().Request.Body = &eventbusv1.RpcRequest_Raw{Raw: []byte("x")}
			return m
		}, ""},
		{"method request without body", func() *eventbusv1.EventBusMessage {
			m := request(0)
			m.GetRpcRequest().Request.Method = "list_collectors"
			m.GetRpcRequest().Request.Body = nil
			return m
		}, ""},
		{"method and operation", func() *eventbusv1.EventBusMessage {
			m := request(start)
			m.GetRpcRequest().Request.Method = "list_collectors"
			return m
		}, "names both method"},
		{"method with an operation's body", func() *eventbusv1.EventBusMessage {
			m := request(0)
			m.GetRpcRequest().Request.Method = "list_collectors"
			return m
		}, `method "list_collectors" with the body of RPC_OPERATION_START`},
		{"operation and body disagree", func() *eventbusv1.EventBusMessage {
			return request(eventbusv1.RpcOperation_RPC_OPERATION_STOP)
		}, "with the body of RPC_OPERATION_START"},
		{"request without body", func() *eventbusv1.EventBusMessage {
			m := request(start)
			m.GetRpcRequest().Request.Body = nil
			return m
		}, "with the body of RPC_OPERATION_UNSPECIFIED"},
		{"response without response", func() *eventbusv1.EventBusMessage {
			return envelope.New("control.a", time.Unix(1, 0), &eventbusv1.RpcResponsePayload{})
		}, "without a response"},
		{"response without status", func() *eventbusv1.EventBusMessage { return response(0, false, true) }, "without a status"},
		{"response without operation", func() *eventbusv1.EventBusMessage {
			m := response(eventbusv1.RpcStatus_RPC_STATUS_SUCCESS, false, true)
			m.GetRpcResponse().Response.Operation = 0
			return m
		}, "neither an operation nor a method"},
		{"method response", func() *eventbusv1.EventBusMessage {
			m := response(eventbusv1.RpcStatus_RPC_STATUS_SUCCESS, false, false)
			m.GetRpcResponse().Response.Operation = 0
			m.GetRpcResponse().Response.Method = "list_collectors"
			m.GetRpcResponse().Response.Body = &eventbusv1.RpcResponse_Raw{Raw: []byte("x")}
			return m
		}, ""},
		{"response without request id", func() *eventbusv1.EventBusMessage {
			m := response(eventbusv1.RpcStatus_RPC_STATUS_SUCCESS, false, true)
			m.GetRpcResponse().Response.RequestId = ""
			return m
		}, "without a request id"},
		{"success with error", func() *eventbusv1.EventBusMessage {
			return response(eventbusv1.RpcStatus_RPC_STATUS_SUCCESS, true, true)
		}, "success with an error"},
		{"success without body", func() *eventbusv1.EventBusMessage {
			return response(eventbusv1.RpcStatus_RPC_STATUS_SUCCESS, false, false)
		}, "with the body of RPC_OPERATION_UNSPECIFIED"},
		{"error without error", func() *eventbusv1.EventBusMessage {
			return response(eventbusv1.RpcStatus_RPC_STATUS_ERROR, false, false)
		}, "without an error"},
		{"timeout with body", func() *eventbusv1.EventBusMessage {
			return response(eventbusv1.RpcStatus_RPC_STATUS_TIMEOUT, true, true)
		}, "with a result body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := envelope.Validate(tt.m())
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !errors.Is(err, envelope.ErrInvalidMessage) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want an ErrInvalidMessage containing %q", err, tt.wantErr)
			}
		})
	}
	// A bad topic keeps topic's error too.
	m := processEvent()
	m.Metadata.Topic = "events.*"
	if err := envelope.Validate(m); !errors.Is(err, topic.ErrInvalidTopic) {
		t.Errorf("Validate = %v, want it to wrap topic.ErrInvalidTopic", err)
	}
}

// TestValidateWith: the metadata's topic is checked under the policy
// given, a broker's own, and Validate is ValidateWith the default policy.
func TestValidateWith(t *testing.T) {
	app := &topic.Policy{Domains: []string{"app", "control"}}
	tests := []struct {
		topic   string
		policy  *topic.Policy
		wantErr string // "" for valid
	}{
		{"app.svc.health", app, ""},
		{"control.inbox.abc.1", app, ""},
		{"events.process.lifecycle", nil, ""},
		{"events.process.lifecycle", app, `first segment "events" is not a registered domain (app, control)`},
		{"app.svc.health", nil, `first segment "app" is not a registered domain (events, control)`},
	}
	for _, tt := range tests {
		m := processEvent()
		m.Metadata.Topic = tt.topic
		err := envelope.ValidateWith(m, tt.policy)
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("ValidateWith(%s, %v): %v", tt.topic, tt.policy, err)
			}
			continue
		}
		if !errors.Is(err, envelope.ErrInvalidMessage) || !errors.Is(err, topic.ErrInvalidTopic) || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("ValidateWith(%s, %v) = %v; want ErrInvalidMessage and ErrInvalidTopic saying %q", tt.topic, tt.policy, err, tt.wantErr)
		}
		if tt.policy == nil && envelope.Validate(m) == nil {
			t.Errorf("Validate(%s) passed what ValidateWith the default policy refused", tt.topic)
		}
	}
}

func TestValidateDoesNotAllocate(t *testing.T) {
	for _, m := range []*eventbusv1.EventBusMessage{processEvent(), request(eventbusv1.RpcOperation_RPC_OPERATION_START),
		response(eventbusv1.RpcStatus_RPC_STATUS_SUCCESS, false, true)} {
		if n := testing.AllocsPerRun(100, func() {
			if err := envelope.Validate(m); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("Validate(%v): %v allocs, want 0", envelope.MessageTypeOf(m), n)
		}
	}
}

func TestNew(t *testing.T) {
	at := time.Date(2026, 11, 23, 1, 2, 3, 4, time.UTC)
	tests := []struct {
		name string
		m    *eventbusv1.EventBusMessage
		want eventbusv1.MessageType
	}{
		{"collection event", envelope.New("events.process.lifecycle", at, &eventbusv1.CollectionEvent{}), eventbusv1.MessageType_MESSAGE_TYPE_COLLECTION_EVENT},
		{"request", envelope.New("events.process.lifecycle", at, &eventbusv1.RpcRequestPayload{}), eventbusv1.MessageType_MESSAGE_TYPE_RPC_REQUEST},
		{"response", envelope.New("events.process.lifecycle", at, &eventbusv1.RpcResponsePayload{}), eventbusv1.MessageType_MESSAGE_TYPE_RPC_RESPONSE},
		{"control", envelope.New("events.process.lifecycle", at, &eventbusv1.ControlMessage{}), eventbusv1.MessageType_MESSAGE_TYPE_CONTROL_MESSAGE},
		{"heartbeat", envelope.New("events.process.lifecycle", at, &eventbusv1.Heartbeat{}), eventbusv1.MessageType_MESSAGE_TYPE_HEARTBEAT},
		{"alert", envelope.New("events.process.lifecycle", at, &eventbusv1.Alert{}), eventbusv1.MessageType_MESSAGE_TYPE_ALERT},
		{"nil alert", envelope.New("events.process.lifecycle", at, (*eventbusv1.Alert)(nil)), eventbusv1.MessageType_MESSAGE_TYPE_ALERT},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md := tt.m.GetMetadata()
			switch {
			case md.GetMessageType() != tt.want || envelope.MessageTypeOf(tt.m) != tt.want:
				t.Errorf("type %v (payload %v), want %v", md.GetMessageType(), envelope.MessageTypeOf(tt.m), tt.want)
			case !uuidRE.MatchString(md.GetMessageId()):
				t.Errorf("message id %q", md.GetMessageId())
			case md.GetTopic() != "events.process.lifecycle":
				t.Errorf("topic %q", md.GetTopic())
			case !md.GetTimestamp().AsTime().Equal(at):
				t.Errorf("timestamp %v, want %v", md.GetTimestamp().AsTime(), at)
			case !proto.Equal(md.GetVersion(), envelope.CurrentVersion()):
				t.Errorf("version %v", md.GetVersion())
			}
			if err := envelope.Validate(tt.m); err != nil && tt.want != eventbusv1.MessageType_MESSAGE_TYPE_RPC_REQUEST && tt.want != eventbusv1.MessageType_MESSAGE_TYPE_RPC_RESPONSE {
				t.Error(err)
			}
		})
	}
	before := time.Now()
	m := envelope.New("events.a", time.Time{}, &eventbusv1.Heartbeat{})
	if ts := m.Metadata.Timestamp.AsTime(); ts.Before(before.Add(-time.Second)) || ts.After(time.Now().Add(time.Second)) {
		t.Errorf("zero time gave timestamp %v, want about now", ts)
	}
	var empty eventbusv1.EventBusMessage
	envelope.SetPayload(&empty, &eventbusv1.Heartbeat{})
	if empty.Metadata.GetMessageType() != eventbusv1.MessageType_MESSAGE_TYPE_HEARTBEAT {
		t.Error("SetPayload did not create the metadata")
	}
}

// TestPriorityMatchesBroker: the schema's priorities convert to the
// broker's by number.
func TestPriorityMatchesBroker(t *testing.T) {
	for p := eventbus.PriorityLow; p <= eventbus.PriorityCritical; p++ {
		if got, want := eventbusv1.Priority(p).String(), "PRIORITY_"+strings.ToUpper(p.String()); got != want {
			t.Errorf("eventbus priority %d is %s in the schema, want %s", p, got, want)
		}
	}
	if n := eventbusv1.Priority(0).Descriptor().Values().Len(); n != 5 {
		t.Errorf("the schema has %d priorities, the broker 4 plus unspecified", n)
	}
}

func TestTopics(t *testing.T) {
	for _, name := range []string{
		topics.ProcessEnumeration, topics.ProcessLifecycle, topics.ProcessMetadata,
		topics.ProcessHash, topics.ProcessAnomaly,
		topics.NetworkConnections, topics.NetworkTraffic, topics.NetworkDNS, topics.NetworkAnomaly,
		topics.FilesystemOperations, topics.FilesystemAccess, topics.FilesystemMetadata, topics.FilesystemAnomaly,
		topics.PerformanceMetrics, topics.PerformanceResources, topics.PerformanceThresholds, topics.PerformanceAnomaly,
		topics.CollectorLifecycle, topics.CollectorConfig, topics.CollectorHealth, topics.CollectorCapabilities,
		topics.AgentTasks, topics.AgentCoordination, topics.AgentStatus, topics.AgentShutdown,
		topics.HealthHeartbeat, topics.HealthStatus,
	} {
		if err := topic.Validate(name); err != nil {
			t.Error(err)
		}
		if err := topic.Validate(name + ".procmond"); err != nil {
			t.Error(err)
		}
	}
}
