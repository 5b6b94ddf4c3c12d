// Package sendbuf is the batching frame writer's buffer, shared by the
// client's and the server's connections: producers append whole frames,
// one writer takes them in batches, one write per batch however many
// frames accumulated meanwhile, while the producers append to a second
// array.
//
// The package knows nothing of frames' contents, sockets or brokers: what
// counts against a limit, when a producer is refused, and how a batch is
// written stay with the connection that owns the Buffer.
//
// # Coalescing
//
// Queued reports whether the frame made the buffer non-empty. Only that
// producer sees to a flush (Signal, or an inline flush from its own
// goroutine); the others append behind it. So a burst of frames, such as
// the deliveries of one read batch, costs one wake-up and one write.
//
// # Limits
//
// Pending counts what is buffered plus what the writer has taken and not
// yet written; the owner compares it with its own limit (the server's
// MaxPending, the client's MaxBuffered). Limits.MaxSpare bounds the batch
// array kept for reuse while busy, Limits.MaxIdle the arrays kept once
// nothing is pending, so that an idle connection after a burst does not
// hold megabytes.
//
// # Concurrency
//
// A Buffer is guarded by its owner's mutex, which usually guards more of
// the connection's state: every method but Signal and Wake must be called
// holding it. Signal and Wake are safe from any goroutine. Only one writer
// at a time may hold a batch taken with Take (the owner serializes its
// writes).
package sendbuf

// Limits bounds the arrays a Buffer keeps, in bytes of capacity.
type Limits struct {
	// MaxSpare is the largest batch array kept for the next batch after a
	// write (regrowing one of several MiB on every batch costs more than
	// the write). Zero keeps none.
	MaxSpare int
	// MaxIdle is the largest array kept once nothing is pending (see
	// Idle). Zero keeps them whatever their size.
	MaxIdle int
}

// Buffer is the pending frames of one connection. Create it with New.
type Buffer struct {
	limits  Limits
	out     []byte        // frames waiting for the writer
	head    []byte        // the unsent end of a batch, written before out
	spare   []byte        // the previous batch's array, for the next; never shares out's array
	writing int           // bytes taken by the writer and not yet written
	room    chan struct{} // closed when bytes leave Pending; made by a waiting producer
	wake    chan struct{} // capacity 1: the writer has work
}

// New returns an empty Buffer with the given limits.
func New(l Limits) *Buffer {
	return &Buffer{limits: l, wake: make(chan struct{}, 1)}
}

// Frames returns the frames waiting for the writer, for a producer to
// append to; the result goes to Queued.
func (b *Buffer) Frames() []byte { return b.out }

// Queued stores frames, which are what Frames returned with whole frames
// appended, and reports whether the buffer had nothing waiting before:
// then the caller sees to a flush (see Coalescing).
func (b *Buffer) Queued(frames []byte) (first bool) {
	first = len(b.out) == 0
	b.out = frames
	return first
}

// Len returns the bytes waiting for the writer, not counting a head.
func (b *Buffer) Len() int { return len(b.out) }

// HasHead reports whether the unsent end of an earlier batch waits to be
// written before the rest (see Unsent).
func (b *Buffer) HasHead() bool { return len(b.head) > 0 }

// Pending returns the bytes waiting plus those the writer has taken and
// not yet written: what counts against the owner's limit.
func (b *Buffer) Pending() int { return len(b.out) + b.writing }

// Take hands the writer the next batch: the head left by an earlier
// write if there is one (head is then true, and the batch is the end of
// another array, which must not be reused), else everything waiting,
// while producers go on appending to the spare array. It returns nil if
// nothing is waiting. The batch counts in Pending until Written or Done.
func (b *Buffer) Take() (batch []byte, head bool) {
	if len(b.head) > 0 {
		batch, b.head = b.head, nil
		return batch, true
	}
	if len(b.out) == 0 {
		return nil, false
	}
	batch = b.out
	b.out, b.spare = b.spare[:0], nil
	b.writing = len(batch)
	return batch, false
}

// Written records that of the batch being written, left bytes remain:
// the written part leaves Pending, and producers waiting for room are
// woken.
func (b *Buffer) Written(left int) {
	b.writing = left
	b.WakeRoom()
}

// Done ends the write of batch, which Take returned with head false: it
// leaves Pending, producers waiting for room are woken, and its array is
// kept for the next batch within Limits.MaxSpare.
func (b *Buffer) Done(batch []byte) {
	b.writing = 0
	b.WakeRoom()
	if b.spare == nil && cap(batch) <= b.limits.MaxSpare {
		b.spare = batch[:0]
	}
}

// Unsent keeps rest, the unsent end of a batch, to be written before
// anything else; it counts in Pending. The array it belongs to is not
// reused.
func (b *Buffer) Unsent(rest []byte) {
	b.head = rest
	b.writing = len(rest)
}

// Requeue puts batch, taken and not written at all, back in front of what
// was appended meanwhile, to be taken again.
func (b *Buffer) Requeue(batch []byte) {
	b.out = append(append(make([]byte, 0, len(batch)+len(b.out)), batch...), b.out...)
	b.writing = 0
}

// Replace sets the frames waiting to out, for an owner that filters or
// prefixes them (after a lost connection, say). out must not share the
// spare's array.
func (b *Buffer) Replace(out []byte) { b.out = out }

// Idle lets go of arrays larger than Limits.MaxIdle when nothing is
// waiting. The writer calls it when it finds nothing to write.
func (b *Buffer) Idle() {
	if b.limits.MaxIdle <= 0 || len(b.out) > 0 {
		return
	}
	if cap(b.out) > b.limits.MaxIdle {
		b.out = nil
	}
	if cap(b.spare) > b.limits.MaxIdle {
		b.spare = nil
	}
}

// Reset empties the Buffer, head and all, and returns what was not
// written: the unsent head and the frames waiting. It frees the arrays.
func (b *Buffer) Reset() (head, out []byte) {
	head, out = b.head, b.out
	b.head, b.out, b.spare, b.writing = nil, nil, nil, 0
	return head, out
}

// Room returns a channel that is closed when bytes next leave Pending (a
// write made progress or ended) or when the owner calls WakeRoom (it
// closes): a producer over the limit waits on it, without the owner's
// mutex.
func (b *Buffer) Room() <-chan struct{} {
	if b.room == nil {
		b.room = make(chan struct{})
	}
	return b.room
}

// WakeRoom wakes the producers waiting on Room.
func (b *Buffer) WakeRoom() {
	if b.room != nil {
		close(b.room)
		b.room = nil
	}
}

// Signal wakes the writer; a signal already pending absorbs it. Safe from
// any goroutine, without the owner's mutex.
func (b *Buffer) Signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// Wake returns the channel the writer waits on for Signal. Safe from any
// goroutine.
func (b *Buffer) Wake() <-chan struct{} { return b.wake }
