package server

import (
	"testing"

	"github.com/daemoneye/daemoneye/eventbus"
)

// encodedValue stands in for a payload (eventbus.Message.Value): it
// encodes as its bytes.
type encodedValue struct{ p []byte }

func (v *encodedValue) AppendBinary(b []byte) ([]byte, error) { return append(b, v.p...), nil }

// TestDeliverDoesNotAllocate: once warm, a message delivered to a
// connection over its socket costs no allocation on the server, whether
// the connection's writer writes it or the publisher's Batch flushes it
// inline, and whether it carries a payload or a value encoded for it.
// (The broker's own part is TestPublishDoesNotAllocate in eventbus.)
func TestDeliverDoesNotAllocate(t *testing.T) {
	path, _, b := start(t, Options{})
	sub := dial(t, path)
	sub.send(subscribeFrame(5, "events.alloc.#"))
	sub.sync()
	payload := []byte("pid=4242 exe=/usr/bin/sleep")
	tests := []struct {
		name  string
		m     eventbus.Message
		batch bool
	}{
		{"payload, writer", eventbus.Message{Topic: "events.alloc.p", Payload: payload}, false},
		{"payload, inline flush", eventbus.Message{Topic: "events.alloc.p", Payload: payload}, true},
		{"value, writer", eventbus.Message{Topic: "events.alloc.v", Value: &encodedValue{payload}}, false},
		{"value, inline flush", eventbus.Message{Topic: "events.alloc.v", Value: &encodedValue{payload}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.m.Value != nil && raceEnabled {
				t.Skip("sync.Pool drops buffers at random under the race detector")
			}
			batch := &eventbus.Batch{Context: t.Context()}
			deliver := func() {
				var err error
				if tt.batch {
					err = b.Publish(batch, tt.m)
					batch.Flush()
				} else {
					err = b.Publish(t.Context(), tt.m)
				}
				if err != nil {
					t.Fatal(err)
				}
				d := sub.deliver()
				if d.SID != 5 || string(d.Payload) != string(payload) {
					t.Fatalf("delivered sid %d payload %q, want 5 %q", d.SID, d.Payload, payload)
				}
			}
			for range 100 { // grow the buffers and the route cache
				deliver()
			}
			if n := testing.AllocsPerRun(200, deliver); n != 0 {
				t.Errorf("%v allocs per delivered message, want 0", n)
			}
		})
	}
}
