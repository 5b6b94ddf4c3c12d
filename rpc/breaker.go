package rpc

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// maxBreakers bounds the number of topics with failures the Client
// remembers; beyond it an entry whose circuit is closed is forgotten
// first.
const maxBreakers = 1024

// breakers keeps a circuit breaker per topic. Only topics with recent
// failures have an entry: a healthy topic costs nothing.
type breakers struct {
	threshold int // failures in a row that open the circuit; <0: off
	cooldown  time.Duration

	mu sync.Mutex
	m  map[string]*breaker
	n  atomic.Int32 // len(m): a call finds no entry without the lock
}

type breaker struct {
	failures  int       // in a row
	openUntil time.Time // zero: closed
	probing   bool      // half open: one call is through
}

func (bs *breakers) init(threshold int, cooldown time.Duration) {
	bs.threshold, bs.cooldown = threshold, cooldown
	bs.m = make(map[string]*breaker)
}

// allow says whether a call to topic may go ahead. The *breaker it returns
// (nil for a healthy topic) goes back to done with the outcome.
func (bs *breakers) allow(topic string) (*breaker, error) {
	if bs.threshold < 0 || bs.n.Load() == 0 {
		return nil, nil
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	b := bs.m[topic]
	if b == nil || b.openUntil.IsZero() {
		return b, nil
	}
	now := time.Now()
	if now.Before(b.openUntil) {
		return nil, fmt.Errorf("%w: the last %d calls to %q found no service; the next call goes through in %v",
			ErrCircuitOpen, b.failures, topic, b.openUntil.Sub(now).Round(time.Millisecond))
	}
	if b.probing {
		return nil, fmt.Errorf("%w: a trial call to %q is under way after %d failures", ErrCircuitOpen, topic, b.failures)
	}
	b.probing = true
	return b, nil
}

// done records the outcome of a call to topic allowed with b: ok means
// the service was there (whatever it answered).
func (bs *breakers) done(topic string, b *breaker, ok bool) {
	if bs.threshold < 0 || (b == nil && ok) {
		return // healthy and staying so: the fast path
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if ok {
		if bs.m[topic] == b {
			delete(bs.m, topic)
			bs.n.Store(int32(len(bs.m)))
		}
		return
	}
	if b == nil {
		if b = bs.m[topic]; b == nil {
			bs.evict()
			b = &breaker{}
			bs.m[topic] = b
			bs.n.Store(int32(len(bs.m)))
		}
	}
	b.probing = false
	b.failures++
	if b.failures >= bs.threshold {
		b.openUntil = time.Now().Add(bs.cooldown)
	}
}

// evict makes room for one more entry, forgetting closed circuits first.
func (bs *breakers) evict() {
	if len(bs.m) < maxBreakers {
		return
	}
	for t, b := range bs.m {
		if b.openUntil.IsZero() {
			delete(bs.m, t)
			return
		}
	}
	for t := range bs.m {
		delete(bs.m, t)
		return
	}
}
