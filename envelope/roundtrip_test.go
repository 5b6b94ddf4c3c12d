package envelope_test

import (
	"strings"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/internal/testutil/protofill"

	"github.com/daemoneye/daemoneye/envelope"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const pkg = "daemoneye.eventbus.v1"

// roundTrip encodes m with an Encoder, decodes it with a Decoder and with
// proto.Unmarshal, and fails unless both results equal m.
func roundTrip(t *testing.T, m *eventbusv1.EventBusMessage) {
	t.Helper()
	var enc envelope.Encoder
	b, err := enc.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	var dec envelope.Decoder
	got, err := dec.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(m, got) {
		t.Fatalf("Decoder round trip differs:\nsent: %v\ngot:  %v", prototext.Format(m), prototext.Format(got))
	}
	var plain eventbusv1.EventBusMessage
	if err := proto.Unmarshal(b, &plain); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(m, &plain) {
		t.Fatalf("proto.Unmarshal round trip differs:\nsent: %v\ngot:  %v", prototext.Format(m), prototext.Format(&plain))
	}
}

// packageMessages returns every message type of the schema package, map
// entries excepted.
func packageMessages(t *testing.T) []protoreflect.MessageDescriptor {
	t.Helper()
	var out []protoreflect.MessageDescriptor
	var walk func(protoreflect.MessageDescriptors)
	walk = func(ms protoreflect.MessageDescriptors) {
		for i := range ms.Len() {
			if md := ms.Get(i); !md.IsMapEntry() {
				out = append(out, md)
				walk(md.Messages())
			}
		}
	}
	protoregistry.GlobalFiles.RangeFilesByPackage(pkg, func(fd protoreflect.FileDescriptor) bool {
		walk(fd.Messages())
		return true
	})
	if len(out) < 40 {
		t.Fatalf("found only %d messages in package %s", len(out), pkg)
	}
	return out
}

// TestRoundTripEveryField fills EventBusMessages with every field set,
// each oneof taking its next case each time, and round-trips them until
// every field of every message in the package has been set (and so
// round-tripped) at least once. A message or field that EventBusMessage
// cannot reach, or that the filler skipped, fails the test.
func TestRoundTripEveryField(t *testing.T) {
	msgs := packageMessages(t)
	var all []protoreflect.FullName
	for _, md := range msgs {
		for i := range md.Fields().Len() {
			all = append(all, md.Fields().Get(i).FullName())
		}
	}
	covered := func(f *protofill.Filler) bool {
		for _, name := range all {
			if !f.Set[name] {
				return false
			}
		}
		return true
	}
	f := protofill.New()
	n := 0
	for ; n < 200 && (n == 0 || !covered(f)); n++ {
		f.Choice = n
		var m eventbusv1.EventBusMessage
		f.Fill(m.ProtoReflect())
		roundTrip(t, &m)
	}
	for _, name := range all {
		if !f.Set[name] {
			t.Errorf("field %s was never set in %d messages: is its message reachable from EventBusMessage?", name, n)
		}
	}
	t.Logf("%d messages covered %d fields of %d message types", n, len(all), len(msgs))
}

// TestEveryOperationRoundTrips builds, for each RpcOperation, a request
// and a successful response with every field of their bodies set, checks
// that the body's oneof field is named after the operation and maps back
// to it, and that both validate and round-trip.
func TestEveryOperationRoundTrips(t *testing.T) {
	ops := eventbusv1.RpcOperation(0).Descriptor().Values()
	reqBody := (&eventbusv1.RpcRequest{}).ProtoReflect().Descriptor().Oneofs().ByName("body")
	respBody := (&eventbusv1.RpcResponse{}).ProtoReflect().Descriptor().Oneofs().ByName("body")
	// Besides one body per operation, a method's: message and raw.
	if n := ops.Len() - 1; reqBody.Fields().Len() != n+2 || respBody.Fields().Len() != n+2 {
		t.Fatalf("%d operations, %d request bodies, %d response bodies: want one of each per operation, and message and raw",
			n, reqBody.Fields().Len(), respBody.Fields().Len())
	}
	at := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	for i := 1; i < ops.Len(); i++ {
		op := eventbusv1.RpcOperation(ops.Get(i).Number())
		name := strings.ToLower(strings.TrimPrefix(string(ops.Get(i).Name()), "RPC_OPERATION_"))
		t.Run(name, func(t *testing.T) {
			f := protofill.New()
			f.Choice = i

			req := &eventbusv1.RpcRequest{
				RequestId: envelope.NewID(), Operation: op, TargetId: "procmond", ClientId: "agent",
				Deadline: timestamppb.New(at.Add(30 * time.Second)), Idempotent: true, Attempt: 1,
			}
			setBody(t, f, req.ProtoReflect(), reqBody, name)
			if got := envelope.RequestOperation(req); got != op {
				t.Fatalf("RequestOperation = %v, want %v", got, op)
			}
			m := envelope.New("control.collector.lifecycle.procmond", at, &eventbusv1.RpcRequestPayload{Request: req})
			m.Correlation = envelope.NewRoot()
			if err := envelope.Validate(m); err != nil {
				t.Fatal(err)
			}
			roundTrip(t, m)

			resp := &eventbusv1.RpcResponse{RequestId: req.RequestId, Operation: op, Status: eventbusv1.RpcStatus_RPC_STATUS_SUCCESS}
			setBody(t, f, resp.ProtoReflect(), respBody, name)
			if got := envelope.ResponseOperation(resp); got != op {
				t.Fatalf("ResponseOperation = %v, want %v", got, op)
			}
			r := envelope.New("control.inbox.0123abcd.7", at, &eventbusv1.RpcResponsePayload{Response: resp})
			r.Correlation = envelope.Child(m.Correlation)
			if err := envelope.Validate(r); err != nil {
				t.Fatal(err)
			}
			roundTrip(t, r)
		})
	}
}

// setBody sets the field of oneof body named name to a filled message.
func setBody(t *testing.T, f *protofill.Filler, m protoreflect.Message, body protoreflect.OneofDescriptor, name string) {
	t.Helper()
	fd := body.Fields().ByName(protoreflect.Name(name))
	if fd == nil {
		t.Fatalf("%s has no body field %q", m.Descriptor().FullName(), name)
	}
	v := m.NewField(fd)
	f.Fill(v.Message())
	m.Set(fd, v)
}

// TestFillerSetsEveryField guards the filler itself: a filled message
// differs from the same message with any one field cleared.
func TestFillerSetsEveryField(t *testing.T) {
	f := protofill.New()
	var m eventbusv1.ProcessRecord
	f.Fill(m.ProtoReflect())
	fields := m.ProtoReflect().Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		if !m.ProtoReflect().Has(fd) {
			t.Errorf("%s not set", fd.Name())
		}
	}
}
