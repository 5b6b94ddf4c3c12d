package envelope_test

import (
	"fmt"
	"time"

	"github.com/daemoneye/daemoneye/envelope"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/topics"
)

// A collector wraps an event, encodes it for the bus, and a subscriber
// decodes and checks it.
func Example() {
	at := time.Now() // one clock read for the whole enumeration
	m := envelope.New(topics.ProcessLifecycle, at, &eventbusv1.CollectionEvent{
		Event: &eventbusv1.CollectionEvent_Process{Process: &eventbusv1.ProcessEventData{
			Subtype: eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_CREATED,
			Process: &eventbusv1.ProcessRecord{Pid: 4242, Name: "sshd"},
		}},
	})
	m.Metadata.SourceId = "procmond"
	m.Correlation = envelope.NewRoot(envelope.Tag{Key: "collector", Value: "procmond"})

	var enc envelope.Encoder // one per publishing goroutine
	data, err := enc.Encode(m)
	if err != nil {
		panic(err)
	}
	// Publish data through client.Conn.Publish, which copies it.

	var dec envelope.Decoder // one per subscribing goroutine
	got, err := dec.Decode(data)
	if err != nil {
		panic(err)
	}
	if err := envelope.Validate(got); err != nil {
		panic(err)
	}
	fmt.Println(got.GetMetadata().GetMessageType(), got.GetCollectionEvent().GetProcess().GetProcess().GetName())
	// Output: MESSAGE_TYPE_COLLECTION_EVENT sshd
}

// An analysis step continues the workflow of the event that caused it.
func ExampleChild() {
	root := envelope.NewRoot()
	step := envelope.WithStage(envelope.Child(root), "process_analysis")
	fmt.Println(step.GetRootCorrelationId() == root.GetCorrelationId(), step.GetParentCorrelationId() == root.GetCorrelationId())
	fmt.Println(step.GetTraceId() == root.GetTraceId(), step.GetSequenceNumber())
	// Output:
	// true true
	// true 1
}

func ExampleParseTraceparent() {
	trace, span, flags, err := envelope.ParseTraceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
	fmt.Println(trace, span, flags, err)
	// Output: 4bf92f3577b34da6a3ce929d0e0e4736 00f067aa0ba902b7 1 <nil>
}
