package server

import (
	"fmt"
	"os"
	"time"

	"github.com/daemoneye/daemoneye/eventbus"
)

// Defaults for the Options that bound what a client that does not read
// can cost others.
const (
	// DefaultMaxStall bounds how long a publisher waits for room at one
	// connection before that connection is closed as a slow consumer.
	DefaultMaxStall = 50 * time.Millisecond
	// DefaultMaxPendingTotal bounds the bytes buffered for all
	// connections together.
	DefaultMaxPendingTotal = 128 << 20
)

// ConnDrops counts the messages one connection lost, by reason. Each is
// also counted in the broker's stats, against the subscription and topic.
type ConnDrops struct {
	// Full counts messages dropped because the connection's buffer
	// (MaxPending) or all connections' (MaxPendingTotal) was full, for
	// subscriptions whose policy drops (drop-newest, drop-oldest).
	Full uint64 `json:"full"`
	// SlowConsumer counts messages lost as the connection was found to be
	// a slow consumer: the message that found the buffer full under the
	// disconnect policy, or that a publisher waited MaxStall for in vain
	// under block.
	SlowConsumer uint64 `json:"slow_consumer"`
	// Discarded counts deliveries that were buffered for the connection
	// and then discarded because it closed before they could be written.
	// The broker counts them as dropped (closed, or disconnect for a slow
	// consumer), not as delivered.
	Discarded uint64 `json:"discarded"`
}

// Total returns the sum over all reasons.
func (d ConnDrops) Total() uint64 { return d.Full + d.SlowConsumer + d.Discarded }

func (d *ConnDrops) add(o ConnDrops) {
	d.Full += o.Full
	d.SlowConsumer += o.SlowConsumer
	d.Discarded += o.Discarded
}

// localOperators are the identities of the broker's own user and root.
var localOperators = [2]string{"uid:0", fmt.Sprintf("uid:%d", os.Getuid())}

// mayBlock reports whether a client may keep the block overflow policy
// over a socket: the local operator (root and the server's own user), and
// whoever Options.MayBlock admits; but not a client (identity and client
// name) closed as a slow consumer in the last SlowConsumerCooloff, so
// that a stuck client that reconnects cannot stall publishers again.
func (s *Server) mayBlock(identity, client string) bool {
	if identity != localOperators[0] && identity != localOperators[1] && (s.opts.MayBlock == nil || !s.opts.MayBlock(identity)) {
		return false
	}
	s.slowMu.Lock()
	defer s.slowMu.Unlock()
	at, ok := s.slowRecent[slowKey{identity, client}]
	return !ok || time.Since(at) >= SlowConsumerCooloff
}

// SlowConsumerCooloff is how long a client closed as a slow consumer
// loses the block policy: for that long, its block subscriptions are made
// disconnect when it reconnects.
const SlowConsumerCooloff = 30 * time.Second

// maxSlowRecent bounds the clients remembered for SlowConsumerCooloff.
const maxSlowRecent = 1024

type slowKey struct{ identity, client string }

// slowConsumer counts a connection closed as a slow consumer and
// remembers its client for SlowConsumerCooloff.
func (s *Server) slowConsumer(identity, client string) {
	s.slowConsumers.Add(1)
	now := time.Now()
	s.slowMu.Lock()
	defer s.slowMu.Unlock()
	if s.slowRecent == nil {
		s.slowRecent = make(map[slowKey]time.Time)
	}
	if len(s.slowRecent) >= maxSlowRecent {
		for k, at := range s.slowRecent {
			if now.Sub(at) >= SlowConsumerCooloff {
				delete(s.slowRecent, k)
			}
		}
		for k := range s.slowRecent { // still full: a flood of them; forget some at random
			if len(s.slowRecent) < maxSlowRecent/2 {
				break
			}
			delete(s.slowRecent, k)
		}
	}
	s.slowRecent[slowKey{identity, client}] = now
}

// overflowFor returns the overflow policy and block timeout a socket
// subscription gets for what its client asked. A block subscription of an
// identity that may not block becomes disconnect; one that may waits at
// most MaxStall (less if it asked for less), after which its connection
// is closed as a slow consumer (conn.Stalled).
func (s *Server) overflowFor(mayBlock bool, asked eventbus.Overflow, timeout time.Duration) (eventbus.Overflow, time.Duration) {
	if asked != eventbus.OverflowBlock {
		return asked, 0
	}
	if !mayBlock {
		return eventbus.OverflowDisconnect, 0
	}
	if timeout <= 0 || timeout > s.opts.MaxStall {
		timeout = s.opts.MaxStall
	}
	return eventbus.OverflowBlock, timeout
}

// budgetSpent is called (under the broker's locks, without blocking) when
// a delivery was refused for MaxPendingTotal. Unless one is pending, it
// arms a reclaim after MaxStall: connections whose writer has been stuck
// in a write for MaxStall by then are closed as slow consumers, so that
// clients that do not read cannot hold the budget that the others need
// for long (until WriteTimeout).
func (s *Server) budgetSpent() {
	if !s.reclaimArmed.CompareAndSwap(false, true) {
		return
	}
	s.slowMu.Lock()
	defer s.slowMu.Unlock()
	if s.reclaimOff {
		return
	}
	if s.reclaimTimer == nil {
		s.reclaimTimer = time.AfterFunc(s.opts.MaxStall, s.reclaim)
	} else {
		s.reclaimTimer.Reset(s.opts.MaxStall)
	}
}

// reclaim closes the connections whose writer has been stuck in a write
// for MaxStall, as slow consumers.
func (s *Server) reclaim() {
	defer s.reclaimArmed.Store(false)
	stuckSince := time.Now().Add(-s.opts.MaxStall).UnixNano()
	for _, c := range s.liveConns() {
		if since := c.writeSince.Load(); since != 0 && since <= stuckSince {
			c.closeSlow(errSlowConsumer)
		}
	}
}

// stopReclaim stops a pending reclaim for good.
func (s *Server) stopReclaim() {
	s.slowMu.Lock()
	defer s.slowMu.Unlock()
	s.reclaimOff = true
	if s.reclaimTimer != nil {
		s.reclaimTimer.Stop()
	}
}
