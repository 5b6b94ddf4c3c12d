package eventbus

import (
	"errors"
	"sync"
)

// ring is a FIFO of messages in a power-of-two buffer. It grows on demand
// and shrinks by half after ringQuiet drain cycles in a row that each used
// less than a quarter of it, so bursty traffic does not reallocate over and
// over and a buffer grown for a rare burst is given back over time. A
// subscription that never received anything holds no buffer.
type ring struct {
	buf   []Message
	head  int
	n     int
	peak  int // most messages held since the ring was last empty
	quiet int // drain cycles in a row with peak under a quarter of the buffer
}

const (
	ringMin   = 8
	ringQuiet = 64
)

func (r *ring) push(m *Message) {
	if r.n == len(r.buf) {
		r.resize(max(ringMin, 2*len(r.buf)))
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = *m
	r.n++
	r.peak = max(r.peak, r.n)
}

func (r *ring) resize(size int) {
	nb := make([]Message, size)
	for i := range r.n {
		nb[i] = r.buf[(r.head+i)&(len(r.buf)-1)]
	}
	r.buf, r.head = nb, 0
}

// pop removes the oldest message into *m.
func (r *ring) pop(m *Message) {
	*m = r.buf[r.head]
	r.buf[r.head] = Message{} // let the payload be collected
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	if r.n == 0 {
		r.head = 0
		if r.peak >= len(r.buf)/4 {
			r.quiet = 0
		} else if r.quiet++; r.quiet >= ringQuiet && len(r.buf) > ringMin {
			r.resize(len(r.buf) / 2)
			r.quiet = 0
		}
		r.peak = 0
	}
}

// pushResult says what became of a message offered to a queue.
type pushResult uint8

const (
	pushOK           pushResult = iota
	pushEvicted                 // queued; older messages were dropped for it
	pushFull                    // not queued; the publisher may wait (block)
	pushDropped                 // not queued; dropped (drop-newest, or outranked)
	pushDisconnected            // not queued; the subscription was closed for it
	pushClosed                  // not queued; the subscription is closed
)

// queue is a subscription's bounded priority queue. Publishers push under
// mu; the single consumer pops batches under mu and sleeps on ready.
type queue struct {
	mu        sync.Mutex
	levels    *[numPriorities]ring // allocated by the first push
	count     int                  // queued messages
	bytes     int64                // queued bytes (payload + topic)
	hwm       int                  // most messages ever queued at once
	maxCount  int
	maxBytes  int64
	overflow  Overflow
	waiting   bool          // the consumer found the queue empty and sleeps
	ready     chan struct{} // capacity 1; a token wakes the consumer
	space     chan struct{} // closed when room appears; made by a waiting publisher
	closed    bool
	closeErr  error  // why it closed: errDisconnected or an error wrapping ErrClosed
	blockers  int    // publishers waiting for room; newcomers queue behind them
	delivered uint64 // messages the consumer took
}

// errDisconnected is the close error of a queue that overflowed under
// OverflowDisconnect; the subscription turns it into a descriptive error.
var errDisconnected = errors.New("eventbus: disconnected")

func (q *queue) init(o *SubscribeOptions) {
	q.maxCount, q.maxBytes, q.overflow = o.MaxMessages, o.MaxBytes, o.Overflow
	q.ready = make(chan struct{}, 1)
}

// wake makes sure the consumer is, or will be, awake.
func (q *queue) wake() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// push offers m at the given level. evicted receives the messages dropped
// to make room (drop-oldest) or discarded by a disconnect; the caller counts
// them. waiter says the caller is a publisher already waiting for room;
// while any wait, others wait too, so the waiters are not starved.
func (q *queue) push(m *Message, lvl int, evicted *[]Message, waiter bool) pushResult {
	size := m.size()
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return pushClosed
	}
	res := pushOK
	if q.blockers > 0 && !waiter && q.overflow == OverflowBlock {
		q.mu.Unlock()
		return pushFull
	}
	if q.count >= q.maxCount || q.bytes+size > q.maxBytes {
		switch {
		case size > q.maxBytes:
			q.mu.Unlock()
			return pushDropped // could never fit, not even after waiting
		case q.overflow == OverflowBlock:
			q.mu.Unlock()
			return pushFull
		case q.overflow == OverflowDropNewest:
			q.mu.Unlock()
			return pushDropped
		case q.overflow == OverflowDisconnect:
			q.drainLocked(evicted)
			q.closeLocked(errDisconnected)
			q.mu.Unlock()
			return pushDisconnected
		}
		if !q.evictLocked(lvl, size, evicted) {
			q.mu.Unlock()
			return pushDropped
		}
		res = pushEvicted
	}
	q.appendLocked(m, lvl, size)
	return res
}

// tryPush queues m only if it fits without applying the overflow policy;
// otherwise it changes nothing and returns pushFull (or pushClosed).
func (q *queue) tryPush(m *Message, lvl int) pushResult {
	size := m.size()
	q.mu.Lock()
	switch {
	case q.closed:
		q.mu.Unlock()
		return pushClosed
	case q.blockers > 0 || q.count >= q.maxCount || q.bytes+size > q.maxBytes:
		q.mu.Unlock()
		return pushFull
	}
	q.appendLocked(m, lvl, size)
	return pushOK
}

// appendLocked queues m, unlocks q.mu and wakes the consumer if it sleeps.
func (q *queue) appendLocked(m *Message, lvl int, size int64) {
	if q.levels == nil {
		q.levels = new([numPriorities]ring)
	}
	q.levels[lvl].push(m)
	q.count++
	q.bytes += size
	if q.count > q.hwm {
		q.hwm = q.count
	}
	wake := q.waiting
	q.waiting = false
	q.mu.Unlock()
	if wake {
		q.wake()
	}
}

// evictLocked drops the oldest messages of the lowest levels not above lvl
// until a message of size fits. It changes nothing and returns false if
// that is impossible.
func (q *queue) evictLocked(lvl int, size int64, evicted *[]Message) bool {
	if q.levels == nil {
		return false
	}
	count, bytes := q.count, q.bytes
	for l := 0; l <= lvl && (count >= q.maxCount || bytes+size > q.maxBytes); l++ {
		r := &q.levels[l]
		for i := 0; i < r.n && (count >= q.maxCount || bytes+size > q.maxBytes); i++ {
			count--
			bytes -= r.buf[(r.head+i)&(len(r.buf)-1)].size()
		}
	}
	if count >= q.maxCount || bytes+size > q.maxBytes {
		return false
	}
	for l := 0; l <= lvl && (q.count >= q.maxCount || q.bytes+size > q.maxBytes); l++ {
		r := &q.levels[l]
		for r.n > 0 && (q.count >= q.maxCount || q.bytes+size > q.maxBytes) {
			var m Message
			r.pop(&m)
			q.count--
			q.bytes -= m.size()
			*evicted = append(*evicted, m)
		}
	}
	return true
}

// pop moves up to len(dst) messages into dst, highest priority first. When
// the queue is empty it marks the consumer as waiting and returns the close
// error if the queue is closed.
func (q *queue) pop(dst []Message) (int, error) {
	q.mu.Lock()
	n := 0
	for l := numPriorities - 1; l >= 0 && n < len(dst) && q.levels != nil; l-- {
		r := &q.levels[l]
		for r.n > 0 && n < len(dst) {
			r.pop(&dst[n])
			q.bytes -= dst[n].size()
			n++
		}
	}
	q.count -= n
	q.delivered += uint64(n)
	if n > 0 && q.space != nil {
		close(q.space)
		q.space = nil
	}
	var err error
	if n == 0 {
		q.waiting = true
		err = q.closeErr
	}
	q.mu.Unlock()
	return n, err
}

// block adds delta to the number of waiting publishers.
func (q *queue) block(delta int) {
	q.mu.Lock()
	q.blockers += delta
	q.mu.Unlock()
}

// disconnected reports whether the queue closed for overflow.
func (q *queue) disconnected() bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.closeErr == errDisconnected
}

// waitRoom returns a channel that is closed when the consumer next takes
// messages or the queue closes, or nil if a message of size fits now or the
// queue is closed (either way the caller should push again at once).
func (q *queue) waitRoom(size int64) <-chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed || (q.count < q.maxCount && q.bytes+size <= q.maxBytes) {
		return nil
	}
	if q.space == nil {
		q.space = make(chan struct{})
	}
	return q.space
}

// drainLocked moves every queued message into out.
func (q *queue) drainLocked(out *[]Message) {
	if q.levels == nil {
		return
	}
	for l := range q.levels {
		r := &q.levels[l]
		for r.n > 0 {
			var m Message
			r.pop(&m)
			*out = append(*out, m)
		}
		r.buf = nil
	}
	q.count, q.bytes = 0, 0
}

// closeLocked closes the queue; Next reports err once the queue is empty.
func (q *queue) closeLocked(err error) {
	if q.closed {
		return
	}
	q.closed = true
	q.closeErr = err
	if q.space != nil {
		close(q.space)
		q.space = nil
	}
	q.wake()
}

// idle reports whether the queue is empty and, if waitConsumer, whether its
// consumer has come back for more since taking the last batch.
func (q *queue) idle(waitConsumer bool) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.count == 0 && (!waitConsumer || q.waiting || q.closed)
}

// depth returns the queue's current and peak fill and how many messages
// the consumer took.
func (q *queue) depth() (count int, bytes int64, hwm int, delivered uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.count, q.bytes, q.hwm, q.delivered
}
