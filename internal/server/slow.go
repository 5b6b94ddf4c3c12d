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

// mayBlock reports whether identity may keep the block overflow policy
// over a socket: the local operator (root and the server's own user), and
// whoever Options.MayBlock admits.
func (s *Server) mayBlock(identity string) bool {
	if identity == localOperators[0] || identity == localOperators[1] {
		return true
	}
	return s.opts.MayBlock != nil && s.opts.MayBlock(identity)
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
