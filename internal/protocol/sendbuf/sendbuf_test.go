package sendbuf

import (
	"bytes"
	"testing"
)

func queue(b *Buffer, frame string) bool { return b.Queued(append(b.Frames(), frame...)) }

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// TestCoalescing: only the frame that makes the buffer non-empty asks for
// a flush; a batch takes everything queued, and frames queued while it is
// written go to the next one, in another array.
func TestCoalescing(t *testing.T) {
	b := New(Limits{MaxSpare: 1 << 10})
	firsts := []bool{queue(b, "aa"), queue(b, "bb"), queue(b, "cc")}
	if want := []bool{true, false, false}; !equalBools(firsts, want) {
		t.Fatalf("Queued reported first %v, want %v", firsts, want)
	}
	batch, head := b.Take()
	if string(batch) != "aabbcc" || head {
		t.Fatalf("Take = %q, head %v; want \"aabbcc\", false", batch, head)
	}
	if b.Pending() != 6 || b.Len() != 0 {
		t.Fatalf("while writing: Pending %d, Len %d; want 6, 0", b.Pending(), b.Len())
	}
	if !queue(b, "dd") {
		t.Error("the first frame after a Take did not ask for a flush")
	}
	if b.Pending() != 8 {
		t.Errorf("Pending %d, want 8", b.Pending())
	}
	b.Done(batch)
	if b.Pending() != 2 {
		t.Errorf("after Done: Pending %d, want 2", b.Pending())
	}
	next, _ := b.Take()
	if string(next) != "dd" {
		t.Fatalf("second batch %q, want \"dd\"", next)
	}
	if &next[:1][0] == &batch[:1][0] {
		t.Error("the second batch shares the array of the one being written")
	}
	b.Done(next)
	queue(b, "ee") // goes to the first batch's array, kept as the spare
	if got, _ := b.Take(); &got[:1][0] != &batch[:1][0] {
		t.Error("the spare array was not reused")
	}
}

func equalBools(a, b []bool) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestLimits(t *testing.T) {
	tests := []struct {
		name      string
		limits    Limits
		size      int
		spareKept bool
		idleKept  bool
	}{
		{"small", Limits{MaxSpare: 64, MaxIdle: 64}, 32, true, true},
		{"over MaxSpare", Limits{MaxSpare: 64, MaxIdle: 1 << 10}, 200, false, true},
		{"over MaxIdle", Limits{MaxSpare: 1 << 10, MaxIdle: 64}, 200, true, false},
		{"no MaxIdle keeps all", Limits{MaxSpare: 1 << 10}, 200, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := New(tt.limits)
			b.Queued(make([]byte, tt.size))
			batch, _ := b.Take()
			b.Done(batch)
			if got := cap(b.spare) > 0; got != tt.spareKept {
				t.Errorf("spare kept %v (cap %d), want %v", got, cap(b.spare), tt.spareKept)
			}
			b.Idle()
			if got := cap(b.spare) > 0; got != (tt.spareKept && tt.idleKept) {
				t.Errorf("after Idle: spare kept %v, want %v", got, tt.spareKept && tt.idleKept)
			}
		})
	}
}

// TestRoom: a producer waiting for room is woken when a write makes
// progress or ends, or when the owner wakes it; not by a Take, which
// moves bytes without sending them.
func TestRoom(t *testing.T) {
	b := New(Limits{})
	queue(b, "0123456789")
	room := b.Room()
	if b.Room() != room {
		t.Fatal("two waiters got different channels")
	}
	batch, _ := b.Take()
	if closed(room) {
		t.Fatal("Take woke the waiters; the bytes still count")
	}
	b.Written(4)
	if !closed(room) || b.Pending() != 4 {
		t.Fatalf("after Written(4): room closed %v, Pending %d; want true, 4", closed(room), b.Pending())
	}
	room = b.Room()
	b.Done(batch)
	if !closed(room) || b.Pending() != 0 {
		t.Fatalf("after Done: room closed %v, Pending %d; want true, 0", closed(room), b.Pending())
	}
	room = b.Room()
	b.WakeRoom()
	if !closed(room) {
		t.Fatal("WakeRoom did not wake the waiters")
	}
}

// TestUnsentAndRequeue: the unsent end of a batch goes out before
// anything queued meanwhile; a batch not written at all goes back in
// front.
func TestUnsentAndRequeue(t *testing.T) {
	b := New(Limits{MaxSpare: 1 << 10})
	queue(b, "aabb")
	batch, _ := b.Take()
	queue(b, "cc")
	b.Unsent(batch[2:])
	if !b.HasHead() || b.Pending() != 4 {
		t.Fatalf("HasHead %v, Pending %d; want true, 4", b.HasHead(), b.Pending())
	}
	head, isHead := b.Take()
	if string(head) != "bb" || !isHead {
		t.Fatalf("Take = %q, head %v; want \"bb\", true", head, isHead)
	}
	b.Written(0)
	rest, _ := b.Take()
	if string(rest) != "cc" {
		t.Fatalf("after the head: %q, want \"cc\"", rest)
	}
	queue(b, "dd")
	b.Requeue(rest)
	b.Done(rest)
	if again, _ := b.Take(); string(again) != "ccdd" {
		t.Fatalf("after Requeue: %q, want \"ccdd\"", again)
	}
	h, out := b.Reset()
	if len(h) != 0 || len(out) != 0 || b.Pending() != 0 {
		t.Errorf("Reset left %q, %q, Pending %d", h, out, b.Pending())
	}
}

func TestSignal(t *testing.T) {
	b := New(Limits{})
	b.Signal()
	b.Signal() // absorbed by the first
	if !closed(b.Wake()) {
		t.Fatal("Signal did not wake the writer")
	}
	if closed(b.Wake()) {
		t.Fatal("two signals woke the writer twice")
	}
}

func TestQueueDoesNotAllocate(t *testing.T) {
	b := New(Limits{MaxSpare: 1 << 20})
	frame := bytes.Repeat([]byte{'f'}, 100)
	for range 2 { // grow both arrays
		for range 64 {
			b.Queued(append(b.Frames(), frame...))
		}
		batch, _ := b.Take()
		b.Done(batch)
	}
	n := testing.AllocsPerRun(100, func() {
		for range 64 {
			b.Queued(append(b.Frames(), frame...))
		}
		batch, _ := b.Take()
		b.Done(batch)
	})
	if n != 0 {
		t.Errorf("a batch of 64 frames: %v allocs, want 0", n)
	}
}
