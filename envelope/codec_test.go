package envelope_test

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/envelope"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/topics"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// processEvent returns a typical procmond event: a process creation with
// its record filled as procmond would fill it, a root correlation without
// tags, and no headers (map fields cost allocations to encode).
func processEvent() *eventbusv1.EventBusMessage {
	at := time.Date(2026, 11, 23, 12, 0, 0, 123_456_789, time.UTC)
	cpu, rss, vms, uid, gid := 0.5, uint64(12<<20), uint64(220<<20), uint32(1000), uint32(1000)
	hash := bytes.Repeat([]byte{0xab}, 32)
	m := envelope.New(topics.ProcessLifecycle, at, &eventbusv1.CollectionEvent{
		Event: &eventbusv1.CollectionEvent_Process{Process: &eventbusv1.ProcessEventData{
			Subtype: eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_CREATED,
			Process: &eventbusv1.ProcessRecord{
				Pid: 4242, Ppid: 1, Name: "sshd",
				ExecutablePath: "/usr/sbin/sshd",
				CommandLine:    []string{"/usr/sbin/sshd", "-D", "-e"},
				StartTime:      timestamppb.New(at.Add(-time.Second)),
				CpuPercent:     &cpu, MemoryRssBytes: &rss, MemoryVmsBytes: &vms,
				ExecutableHash: hash, HashAlgorithm: eventbusv1.HashAlgorithm_HASH_ALGORITHM_SHA256,
				Uid: &uid, UserName: "alice", Gid: &gid,
				Accessible: true, FileExists: true,
				CollectionTime: timestamppb.New(at),
			},
		}},
	})
	m.Metadata.SourceId = "procmond"
	m.Metadata.Priority = eventbusv1.Priority_PRIORITY_NORMAL
	m.Correlation = envelope.NewRoot()
	return m
}

func TestEncoderReusesBuffer(t *testing.T) {
	m := processEvent()
	var enc envelope.Encoder
	b1, err := enc.Encode(m)
	if err != nil {
		t.Fatal(err)
	}
	want, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var dec envelope.Decoder
	got, err := dec.Decode(b1)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, m) || len(b1) != len(want) {
		t.Fatalf("Encode gave %d bytes that decode to a different message; proto.Marshal gives %d", len(b1), len(want))
	}
	b2, _ := enc.Encode(m)
	if &b1[0] != &b2[0] {
		t.Error("the second Encode did not reuse the buffer")
	}
}

func TestEncodeDoesNotAllocate(t *testing.T) {
	m := processEvent()
	var enc envelope.Encoder
	if _, err := enc.Encode(m); err != nil { // grow the buffer
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() {
		if _, err := enc.Encode(m); err != nil {
			t.Fatal(err)
		}
	}); n != 0 {
		t.Errorf("Encode: %v allocs per message, want 0", n)
	}
}

func TestDecoderResets(t *testing.T) {
	var enc envelope.Encoder
	var dec envelope.Decoder
	full := processEvent()
	envelope.WithTag(full.Correlation, "collector", "procmond")
	b, _ := enc.Encode(full)
	if _, err := dec.Decode(b); err != nil {
		t.Fatal(err)
	}
	// A message without correlation must not inherit the previous one's.
	small := envelope.New("events.process.lifecycle", time.Unix(1, 0), &eventbusv1.Heartbeat{CollectorId: "procmond"})
	b, _ = enc.Encode(small)
	got, err := dec.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, small) {
		t.Fatalf("decoded %v, want %v", got, small)
	}
}

func TestDecodeError(t *testing.T) {
	var dec envelope.Decoder
	for _, in := range [][]byte{{0xff}, {0x0a, 0x05, 0x01}, bytes.Repeat([]byte{0x80}, 11)} {
		if _, err := dec.Decode(in); err == nil {
			t.Errorf("Decode(%x) succeeded", in)
		}
	}
	// A Decoder still works after an error.
	var enc envelope.Encoder
	b, _ := enc.Encode(processEvent())
	if _, err := dec.Decode(b); err != nil {
		t.Fatal(err)
	}
}

func TestDecodeKeepsUnknownFields(t *testing.T) {
	// A newer minor version may add fields; a relay must pass them on.
	b, _ := new(envelope.Encoder).Encode(processEvent())
	b = append(bytes.Clone(b), 0xf8, 0x3f, 0x07) // field 1023, varint 7
	var dec envelope.Decoder
	m, err := dec.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := new(envelope.Encoder).Encode(m)
	if !bytes.HasSuffix(out, []byte{0xf8, 0x3f, 0x07}) {
		t.Error("the unknown field was lost")
	}
}

var errSink error

func BenchmarkEncode(b *testing.B) {
	m := processEvent()
	var enc envelope.Encoder
	out, _ := enc.Encode(m)
	b.SetBytes(int64(len(out)))
	b.ReportAllocs()
	for b.Loop() {
		_, errSink = enc.Encode(m)
	}
}

func BenchmarkEncodeWithTags(b *testing.B) {
	m := processEvent()
	envelope.AddTags(m.Correlation, envelope.Tag{Key: "collector", Value: "procmond"}, envelope.Tag{Key: "host", Value: "web-1"})
	var enc envelope.Encoder
	out, _ := enc.Encode(m)
	b.SetBytes(int64(len(out)))
	b.ReportAllocs()
	for b.Loop() {
		_, errSink = enc.Encode(m)
	}
}

func BenchmarkMarshal(b *testing.B) {
	m := processEvent()
	b.ReportAllocs()
	for b.Loop() {
		_, errSink = proto.Marshal(m)
	}
}

func BenchmarkDecode(b *testing.B) {
	data, _ := new(envelope.Encoder).Encode(processEvent())
	var dec envelope.Decoder
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		_, errSink = dec.Decode(data)
	}
}

func BenchmarkNew(b *testing.B) {
	at := time.Now()
	ev := processEvent().GetCollectionEvent()
	b.ReportAllocs()
	for b.Loop() {
		m := envelope.New(topics.ProcessLifecycle, at, ev)
		m.Correlation = envelope.NewRoot()
	}
}

func BenchmarkValidate(b *testing.B) {
	m := processEvent()
	b.ReportAllocs()
	for b.Loop() {
		errSink = envelope.Validate(m)
	}
	if errSink != nil && !errors.Is(errSink, envelope.ErrInvalidMessage) {
		b.Fatal(errSink)
	}
}

// TestHostileStrings: names, paths and command lines are arbitrary bytes on
// Linux. A process with invalid UTF-8 in them must still be reported, with
// the exact bytes.
func TestHostileStrings(t *testing.T) {
	const bad = "evil\xff\xfe\x00name"
	m := processEvent()
	p := m.GetCollectionEvent().GetProcess()
	p.Process.Name, p.Process.ExecutablePath, p.Process.UserName = bad, "/tmp/"+bad, bad
	p.Process.CommandLine = []string{bad, "--flag=\xc3\x28"}
	p.TreeContext = &eventbusv1.ProcessTreeContext{ParentName: bad, Ancestors: []*eventbusv1.ProcessAncestor{{Name: bad, ExecutablePath: bad}}}
	p.SecurityContext = &eventbusv1.SecurityContext{UserName: bad, EffectiveUserName: bad, Capabilities: []string{bad}}
	roundTrip(t, m)

	fs := envelope.New(topics.FilesystemOperations, time.Unix(1, 0), &eventbusv1.CollectionEvent{
		Event: &eventbusv1.CollectionEvent_Filesystem{Filesystem: &eventbusv1.FilesystemEventData{
			Subtype:    eventbusv1.FilesystemEventSubtype_FILESYSTEM_EVENT_SUBTYPE_RENAMED,
			Filesystem: &eventbusv1.FilesystemRecord{Path: "/tmp/" + bad, OldPath: bad, ProcessName: bad},
		}},
	})
	roundTrip(t, fs)
	alert := envelope.New("events.process.anomaly", time.Unix(1, 0), &eventbusv1.Alert{Process: p.Process})
	roundTrip(t, alert)
}
