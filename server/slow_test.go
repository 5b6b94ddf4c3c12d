package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/protocol/wire"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
)

// readDeliveries reads c until the server's close, and returns how many
// whole deliver frames it got.
func readDeliveries(c *client) int {
	n := 0
	for {
		c.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
		f, err := c.r.ReadFrame()
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				c.t.Errorf("reading what the server sent before closing: %v", err)
			}
			return n
		}
		if f.Type == wire.TypeDeliver {
			n++
		}
	}
}

// A subscriber to "#" that asks for block and never reads must not hold
// back publishers or other subscribers: the publisher waits for it at most
// MaxStall, then it is closed as a slow consumer; its losses are counted by
// reason, and what was buffered for it and discarded with the connection
// counts as dropped, not delivered.
func TestStuckBlockSubscriberIsDisconnected(t *testing.T) {
	path, srv, b := start(t, Options{MaxPending: 64 << 10})
	stuck, other, pub := dial(t, path), dial(t, path), dial(t, path)
	stuck.send(wire.AppendSubscribe(nil, &wire.Subscribe{SID: 1, Pattern: []byte("#"), Overflow: uint8(eventbus.OverflowBlock), BlockTimeoutMs: 60000}))
	stuck.sync()
	other.send(subscribeFrame(2, "events.#"))
	other.sync()

	const n = 5000 // 5 MB: far beyond MaxPending and the socket buffers
	payload := make([]byte, 1000)
	got := make(chan int, 1)
	go func() {
		i := 0
		for ; i < n; i++ {
			other.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
			f, err := other.r.ReadFrame()
			if err != nil || f.Type != wire.TypeDeliver {
				break
			}
		}
		got <- i
	}()
	frame := wire.AppendPublish(nil, &wire.Publish{Topic: []byte("events.a"), Payload: payload})
	for range n {
		pub.send(frame) // 2 s per write: the server's reader must not be held by the stuck client
	}
	select {
	case i := <-got:
		if i != n {
			t.Fatalf("the other subscriber got %d of %d messages", i, n)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("the other subscriber did not get %d messages in 20 s: the stuck subscriber holds the publisher (stats %+v)", n, srv.Stats().ConnDropped)
	}
	wait.Until(t, 20*time.Second, "the stuck subscriber is not disconnected", func() bool { return srv.Stats().SlowConsumers == 1 && len(srv.Stats().Connections) == 2 })
	read := readDeliveries(stuck) // what reached its socket before the close

	st := srv.Stats()
	if st.ConnDropped.SlowConsumer == 0 || st.ConnDropped.Discarded == 0 {
		t.Errorf("the stuck connection's losses are not counted by reason: %+v", st.ConnDropped)
	}
	bs := b.Stats()
	if bs.Delivered != uint64(n+read) {
		t.Errorf("broker counts %d delivered; the other subscriber got %d and the stuck one %d: buffered deliveries discarded at close were counted as delivered", bs.Delivered, n, read)
	}
	var ts eventbus.TopicStats
	for _, tt := range bs.Topics {
		if tt.Topic == "events.a" {
			ts = tt
		}
	}
	// Every copy for the stuck subscriber was delivered or dropped, by a
	// reason the stats name.
	if offered := ts.Enqueued + ts.Dropped.Timeout + ts.Dropped.Disconnect - st.ConnDropped.Discarded - uint64(n); uint64(read)+ts.Dropped.Total() != offered || ts.Dropped.Disconnect < st.ConnDropped.Discarded {
		t.Errorf("stuck: %d read, dropped %+v, enqueued %d, conn drops %+v: the counts do not add up", read, ts.Dropped, ts.Enqueued, st.ConnDropped)
	}
}

// Deliveries buffered for a connection that closes before they are
// written (here: its writes time out) are counted as dropped, closed, and
// not as delivered.
func TestDiscardedDeliveriesAreDropsNotDeliveries(t *testing.T) {
	path, srv, b := start(t, Options{MaxPending: 4 << 20, WriteTimeout: 2 * time.Second}) // the publishes are done long before
	sub := dial(t, path)
	sub.send(wire.AppendSubscribe(nil, &wire.Subscribe{SID: 1, Pattern: []byte("events.#"), Overflow: uint8(eventbus.OverflowDropNewest)}))
	sub.sync()
	const n = 2000
	payload := make([]byte, 1000)
	for range n {
		b.Publish(context.Background(), eventbus.Message{Topic: "events.a", Payload: payload})
	}
	wait.Until(t, 20*time.Second, "the connection whose writes time out is not closed", func() bool { return len(srv.Stats().Connections) == 0 })
	read := readDeliveries(sub)
	bs, st := b.Stats(), srv.Stats()
	if read == n {
		t.Fatal("every message reached the client: the test does not test what it should")
	}
	if bs.Delivered != uint64(read) || bs.Delivered+bs.Dropped.Total() != n {
		t.Errorf("client read %d of %d; broker counts %d delivered and dropped %+v", read, n, bs.Delivered, bs.Dropped)
	}
	if st.ConnDropped.Discarded == 0 || bs.Dropped.Closed != st.ConnDropped.Discarded {
		t.Errorf("discarded %d at close, broker dropped %+v", st.ConnDropped.Discarded, bs.Dropped)
	}
}

// Only the local operator, or whom MayBlock admits, keeps the block policy
// over a socket; anyone else's block becomes disconnect, and stats show
// the policy applied.
func TestBlockOnlyForTheLocalOperator(t *testing.T) {
	path, _, b := start(t, Options{Auth: Auth{Tokens: testTokens}, MayBlock: func(id string) bool { return id == "token:ops" }})
	for _, tt := range []struct {
		secret, want string
	}{
		{"", "block"}, // peer credentials: this test's own uid
		{ciSecret, "disconnect"},
		{opsSecret, "block"},
	} {
		c := rawDial(t, path)
		if tt.secret == "" {
			c.hello(wire.AuthPeer, "")
		} else {
			c.hello(wire.AuthToken, tt.secret)
		}
		id := c.expectWelcome()
		c.send(wire.AppendSubscribe(nil, &wire.Subscribe{SID: 1, Pattern: []byte("events.#"), Overflow: uint8(eventbus.OverflowBlock), BlockTimeoutMs: 60000}))
		c.sync()
		found := false
		for _, s := range b.Stats().Subscriptions {
			if len(s.Subscriber) > len(id) && s.Subscriber[:len(id)+1] == id+"/" {
				found = true
				if s.Overflow != tt.want {
					t.Errorf("%s: overflow %s, want %s", id, s.Overflow, tt.want)
				}
			}
		}
		if !found {
			t.Errorf("%s: subscription not in stats", id)
		}
		c.nc.Close()
	}
	srv := &Server{opts: Options{MaxStall: 50 * time.Millisecond}}
	for _, tt := range []struct {
		asked time.Duration
		want  time.Duration
	}{{0, 50 * time.Millisecond}, {time.Minute, 50 * time.Millisecond}, {10 * time.Millisecond, 10 * time.Millisecond}} {
		if o, got := srv.overflowFor(true, eventbus.OverflowBlock, tt.asked); o != eventbus.OverflowBlock || got != tt.want {
			t.Errorf("block timeout %v: got %s %v, want block %v", tt.asked, o, got, tt.want)
		}
	}
}

// The broker's limit on subscriptions reaches socket clients as CodeLimit.
func TestBrokerSubscriptionLimitOverSocket(t *testing.T) {
	path, _, _ := startBroker(t, eventbus.Options{MaxSubscriptions: 3}, Options{NoStatsService: true})
	a, c := dial(t, path), dial(t, path)
	a.send(subscribeFrame(1, "events.a"))
	a.send(subscribeFrame(2, "events.b"))
	a.sync()
	c.send(subscribeFrame(1, "events.c"))
	c.send(subscribeFrame(2, "events.d"))
	f := c.frame()
	e, err := wire.ParseError(f.Type, f.Flags, f.Body)
	if f.Type != wire.TypeError || err != nil || e.Code != wire.CodeLimit || e.Ref != 2 {
		t.Fatalf("the subscription over the broker's limit: got %s code %d %q", f.Type, e.Code, e.Text)
	}
	a.nc.Close() // its subscriptions go with it
	sid := uint32(10)
	wait.Until(t, 20*time.Second, "a's subscriptions are not released", func() bool {
		sid++
		c.send(subscribeFrame(sid, fmt.Sprintf("events.e%d", sid)))
		c.send(wire.AppendU64(nil, wire.TypePing, 1))
		refused := false
		for f := c.frame(); f.Type != wire.TypePong; f = c.frame() {
			refused = refused || f.Type == wire.TypeError
		}
		return !refused
	})
}

func heapInUse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// What connections and their subscriptions held is released once they
// have gone: their buffers, their subscriptions in the broker's registry
// and index, and the cached routes to them.
func TestClosedConnectionsReleaseMemory(t *testing.T) {
	const conns, per = 16, 2500
	path, srv, b := startBroker(t, eventbus.Options{MaxSubscriptions: conns*per + 10}, Options{MaxConns: conns + 4, MaxSubscriptions: per, NoStatsService: true})
	keep := dial(t, path) // stays: the trie keeps the "events.t" node
	keep.send(subscribeFrame(1, "events.t.keep"))
	keep.sync()
	base := heapInUse()
	var cs []*client
	for i := range conns {
		c := dial(t, path)
		var batch []byte
		for j := range per {
			batch = append(batch, subscribeFrame(uint32(j+1), fmt.Sprintf("events.t.c%dx%d", i, j))...)
		}
		c.send(batch)
		c.sync()
		cs = append(cs, c)
	}
	for i := range conns { // deliveries that are buffered, and routes that hold the subscriptions
		b.Publish(context.Background(), eventbus.Message{Topic: fmt.Sprintf("events.t.c%dx1", i), Payload: make([]byte, 100)})
	}
	peak := heapInUse()
	for _, c := range cs {
		c.nc.Close()
	}
	cs = nil
	wait.Until(t, 20*time.Second, "the connections are not gone", func() bool { return len(srv.Stats().Connections) == 1 })
	var subs atomic.Int64
	wait.Until(t, 20*time.Second, "their subscriptions are not gone", func() bool {
		subs.Store(int64(len(b.Stats().Subscriptions)))
		return subs.Load() == 1
	})
	after := heapInUse()
	grew, kept := int64(peak)-int64(base), int64(after)-int64(base)
	t.Logf("%d connections with %d subscriptions: +%d bytes; after they went: %+d bytes", conns, conns*per, grew, kept)
	if grew <= 0 || kept > grew/50 {
		t.Fatalf("%d bytes of the %d that %d connections' subscriptions took are still held after they closed", kept, grew, conns)
	}
}

// A client closed as a slow consumer that reconnects does not get to
// stall publishers again for SlowConsumerCooloff: its block subscriptions
// are made disconnect. Other clients of the same identity keep block.
func TestReconnectedSlowConsumerLosesBlock(t *testing.T) {
	path, srv, b := start(t, Options{MaxPending: 16 << 10})
	blockSub := wire.AppendSubscribe(nil, &wire.Subscribe{SID: 1, Pattern: []byte("events.#"), Overflow: uint8(eventbus.OverflowBlock)})
	stuck := dial(t, path) // client name "test"
	stuck.send(blockSub)
	stuck.sync()
	payload := make([]byte, 1000)
	wait.Until(t, 20*time.Second, "the stuck client is not closed as a slow consumer", func() bool {
		b.Publish(context.Background(), eventbus.Message{Topic: "events.a", Payload: payload})
		return srv.Stats().SlowConsumers == 1
	})
	overflowOf := func(client string) string {
		c := rawDial(t, path)
		c.send(wire.Magic[:])
		c.send(wire.AppendHello(nil, &wire.Hello{Versions: []wire.Version{wire.Current}, ClientName: []byte(client)}))
		c.expectWelcome()
		c.send(blockSub)
		c.sync()
		var session string
		for _, cs := range srv.Stats().Connections {
			if cs.Client == client {
				session = cs.Session
			}
		}
		for _, s := range b.Stats().Subscriptions {
			if len(s.Subscriber) > len(session) && s.Subscriber[len(s.Subscriber)-len(session):] == session {
				return s.Overflow
			}
		}
		t.Fatalf("%s: no subscription in stats", client)
		return ""
	}
	if got := overflowOf("test"); got != "disconnect" {
		t.Errorf("the reconnected slow consumer's block subscription: %s, want disconnect", got)
	}
	if got := overflowOf("another"); got != "block" {
		t.Errorf("another client of the same identity: %s, want block", got)
	}
}

// A client that does not read, with the disconnect policy, is closed as
// soon as its buffer is full, not after WriteTimeout, though the writer is
// stuck in a write to it, and what it never got is counted as dropped.
func TestFullDisconnectClientIsClosedAtOnce(t *testing.T) {
	path, srv, b := start(t, Options{MaxPending: 64 << 10, WriteTimeout: time.Minute})
	sub := dial(t, path)
	sub.send(wire.AppendSubscribe(nil, &wire.Subscribe{SID: 1, Pattern: []byte("events.#"), Overflow: uint8(eventbus.OverflowDisconnect)}))
	sub.sync()
	payload := make([]byte, 1000)
	published := 0
	// First fill the socket, one message at a time, until the writer is
	// stuck in a write: a message stays pending. The sleep stays: it is
	// the observation itself (no event says that a write is stuck; 20 ms
	// without the buffer draining does).
	for stuck := false; !stuck; {
		if published++; published > 100000 {
			t.Fatal("the writer never got stuck")
		}
		b.Publish(context.Background(), eventbus.Message{Topic: "events.a", Payload: payload})
		for i := 0; i < 20 && !stuck; i++ {
			time.Sleep(time.Millisecond)
			stuck = i == 19 && maxPending(srv.Stats()) > 0
			if maxPending(srv.Stats()) == 0 {
				break
			}
		}
	}
	for ; published < 100000; published++ { // then its buffer
		if err := b.Publish(context.Background(), eventbus.Message{Topic: "events.a", Payload: payload}); errors.Is(err, eventbus.ErrSlowConsumer) {
			published++
			break
		}
	}
	wait.Until(t, 20*time.Second, "the full connection is still open (it would be closed after WriteTimeout, 1 min)", func() bool { return len(srv.Stats().Connections) == 0 })
	// The error frame and the end of a cut frame are sent only briefly
	// (finalFlushTimeout), and this client read nothing meanwhile: the
	// stream may end before them, but never with a frame lost uncounted.
	got, sawError := 0, false
	for !sawError {
		sub.nc.SetReadDeadline(time.Now().Add(20 * time.Second))
		f, err := sub.r.ReadFrame()
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %d deliveries: %v", got, err)
		}
		switch f.Type {
		case wire.TypeDeliver:
			got++
		case wire.TypeError:
			if e, _ := wire.ParseError(f.Type, f.Flags, f.Body); e.Code != wire.CodeSlowConsumer {
				t.Fatalf("error code %d (%s), want slow_consumer", e.Code, e.Text)
			}
			sawError = true
		}
	}
	bs, st := b.Stats(), srv.Stats()
	if bs.Delivered != uint64(got) || bs.Delivered+bs.Dropped.Total() != uint64(published) || st.SlowConsumers != 1 {
		t.Errorf("published %d, read %d; broker: delivered %d, dropped %+v; slow consumers %d", published, got, bs.Delivered, bs.Dropped, st.SlowConsumers)
	}
}

// Clients that do not read cannot hold the server-wide budget
// (MaxPendingTotal) that the others need: while it is spent, deliveries
// are dropped and counted, and connections whose writer has been stuck for
// MaxStall are closed as slow consumers, whatever their policy, instead of
// after WriteTimeout. Then the others get everything again.
func TestStuckClientsDoNotHoldTheBudget(t *testing.T) {
	// MaxStall well above a scheduling delay on a loaded machine, so that
	// the healthy client, which reads, is not taken for a stuck one.
	path, srv, b := start(t, Options{MaxPending: 128 << 10, MaxPendingTotal: 320 << 10, WriteTimeout: time.Minute, MaxStall: 500 * time.Millisecond})
	for range 3 {
		stuck := dial(t, path)
		stuck.send(wire.AppendSubscribe(nil, &wire.Subscribe{SID: 1, Pattern: []byte("events.#"), Overflow: uint8(eventbus.OverflowDropNewest)}))
		stuck.sync()
	}
	healthy := dial(t, path)
	healthy.send(wire.AppendSubscribe(nil, &wire.Subscribe{SID: 1, Pattern: []byte("events.#"), Overflow: uint8(eventbus.OverflowDropNewest)}))
	healthy.sync()
	last := make(chan string, 1)
	go func() { // the healthy client reads everything
		defer close(last)
		for {
			healthy.nc.SetReadDeadline(time.Now().Add(30 * time.Second))
			f, err := healthy.r.ReadFrame()
			if err != nil {
				return
			}
			if d, err := wire.ParseDeliver(f.Flags, f.Body); err == nil && string(d.Topic) == "events.last" {
				last <- string(d.Payload)
				return
			}
		}
	}()
	payload := make([]byte, 1000)
	wait.For(t, 20*time.Second, "the three stuck clients to be closed", func() error {
		for range 100 {
			b.Publish(context.Background(), eventbus.Message{Topic: "events.a", Payload: payload})
		}
		if n := srv.Stats().SlowConsumers; n != 3 {
			return fmt.Errorf("%d connections closed as slow consumers, want the 3 stuck ones", n)
		}
		return nil
	})
	if st := srv.Stats(); st.ConnDropped.Full == 0 {
		t.Errorf("no delivery was refused for the budget: the test does not test what it should (%+v)", st.ConnDropped)
	}
	// The healthy client may still be reading the backlog it was sent and
	// have no room (its policy is drop-newest), so events.last is offered
	// until it arrives: what is tested is that it arrives at all.
	var got string
	wait.Until(t, 20*time.Second, "the healthy client to get a message once the stuck ones are closed", func() bool {
		b.Publish(context.Background(), eventbus.Message{Topic: "events.last", Payload: []byte("through")})
		select {
		case got = <-last:
			return true
		default:
			return false
		}
	})
	if got != "through" {
		t.Fatalf("the healthy client got %q, want the last message", got)
	}
	healthy.nc.Close()
}

// A drop-newest subscriber whose buffer deliveries have filled is not a
// slow consumer for pinging while it catches up: control frames have room
// beyond MaxPending (controlHeadroom).
func TestControlFramesHaveHeadroom(t *testing.T) {
	path, srv, b := start(t, Options{MaxPending: 64 << 10, WriteTimeout: time.Minute})
	sub := dial(t, path)
	sub.send(wire.AppendSubscribe(nil, &wire.Subscribe{SID: 1, Pattern: []byte("events.a"), Overflow: uint8(eventbus.OverflowDropNewest)}))
	sub.sync()
	watcher := dial(t, path)
	watcher.send(subscribeFrame(2, "events.marker"))
	watcher.sync()
	payload := make([]byte, 20)
	wait.Until(t, 20*time.Second, "the subscriber's buffer full and a message dropped", func() bool {
		for range 1000 {
			b.Publish(context.Background(), eventbus.Message{Topic: "events.a", Payload: payload})
		}
		return srv.Stats().ConnDropped.Full > 0
	})
	for i := range 5 {
		sub.send(wire.AppendU64(nil, wire.TypePing, uint64(i+1)))
	}
	// Handled after the pings, on the same reader: once the watcher has
	// it, the pings have been answered (into the full buffer).
	sub.send(wire.AppendPublish(nil, &wire.Publish{Topic: []byte("events.marker"), Payload: []byte("after the pings")}))
	if d := watcher.deliver(); string(d.Payload) != "after the pings" {
		t.Fatalf("watcher got %q", d.Payload)
	}
	if st := srv.Stats(); st.SlowConsumers != 0 || len(st.Connections) != 2 {
		t.Errorf("a drop-newest subscriber that pinged 5 times was closed as a slow consumer: slow consumers %d, connections %d", st.SlowConsumers, len(st.Connections))
	}
}
