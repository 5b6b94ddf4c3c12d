package server

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/protocol/wire"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
)

// A reader writes another connection's small batches itself (conn.Flush).
// When the subscriber stops reading and its socket fills, what the inline
// write could not send must go out first, before anything appended since,
// and nothing may be lost.
func TestInlineWritesKeepOrderWhenTheSocketFills(t *testing.T) {
	path, srv, b := start(t, Options{MaxPending: 32 << 20, MaxStall: time.Minute})
	sub, pub := dial(t, path), dial(t, path)
	sub.send(wire.AppendSubscribe(nil, &wire.Subscribe{SID: 1, Pattern: []byte("events.#"), BlockTimeoutMs: 20000, Overflow: uint8(eventbus.OverflowBlock)}))
	sub.sync()
	const n = 3000 // 1 MB of small frames: beyond the kernel's socket buffers
	payload := make([]byte, 300)
	// One publish per read batch (the ping's pong proves it handled), so
	// that each batch is small and written inline, until the subscriber's
	// socket, which is not being read, is full.
	for i := range n {
		binary.BigEndian.PutUint32(payload, uint32(i))
		pub.send(wire.AppendPublish(nil, &wire.Publish{Topic: []byte("events.a"), Payload: payload}))
		pub.sync()
	}
	if srv.partialInline.Load() == 0 {
		t.Fatal("no inline write was cut short by a full socket: the test does not test what it should")
	}
	for i := range n {
		sub.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		f, err := sub.r.ReadFrame()
		if err != nil {
			t.Fatalf("after %d messages: %v", i, err)
		}
		d, err := wire.ParseDeliver(f.Flags, f.Body)
		if err != nil || d.Seq != uint64(i+1) || len(d.Payload) != len(payload) || binary.BigEndian.Uint32(d.Payload) != uint32(i) {
			t.Fatalf("message %d: seq %d, payload %d bytes starting %x, %v", i, d.Seq, len(d.Payload), d.Payload[:min(4, len(d.Payload))], err)
		}
	}
	if st := b.Stats(); st.Dropped.Total() != 0 || st.Delivered != n {
		t.Errorf("delivered %d, dropped %+v; want all %d and no drops", st.Delivered, st.Dropped, n)
	}
}

// A reader that must wait for room at one connection first hands what it
// delivered to others to their writers: they must not wait with it.
func TestBlockedReaderHandsOffItsOtherDeliveries(t *testing.T) {
	path, srv, _ := start(t, Options{MaxPending: 8 << 10, MaxStall: time.Minute}) // full must stay full
	full, other, filler, pub := dial(t, path), dial(t, path), dial(t, path), dial(t, path)
	full.send(wire.AppendSubscribe(nil, &wire.Subscribe{SID: 1, Pattern: []byte("events.full"), BlockTimeoutMs: 20000, Overflow: uint8(eventbus.OverflowBlock)}))
	full.sync()
	other.send(subscribeFrame(2, "events.other"))
	other.sync()
	// filler fills full's buffer and socket and is left waiting for room.
	big := make([]byte, 1000)
	go func() {
		for range 2000 {
			filler.nc.SetWriteDeadline(time.Now().Add(20 * time.Second))
			if _, err := filler.nc.Write(wire.AppendPublish(nil, &wire.Publish{Topic: []byte("events.full"), Payload: big})); err != nil {
				return
			}
		}
	}()
	// Only full can be behind: filler waits for room.
	wait.Until(t, 10*time.Second, "full's outbound buffer to fill", func() bool { return maxPending(srv.Stats()) > 6<<10 })
	// One read batch: a message for other (flushed at the end of the
	// batch), then one for full (the reader waits for room).
	batch := wire.AppendPublish(nil, &wire.Publish{Topic: []byte("events.other"), Payload: []byte("not held")})
	batch = wire.AppendPublish(batch, &wire.Publish{Topic: []byte("events.full"), Payload: make([]byte, 2000)}) // cannot fit
	pub.send(batch)
	if d := other.deliver(); string(d.Payload) != "not held" {
		t.Fatalf("other got %q", d.Payload)
	}
}

// maxPending is the most bytes any connection has waiting.
func maxPending(st Stats) int {
	most := 0
	for _, cs := range st.Connections {
		most = max(most, cs.Pending)
	}
	return most
}
