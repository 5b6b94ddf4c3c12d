package client

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/protocol/transport"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
	"github.com/daemoneye/daemoneye/server"
)

// broker is a broker and server on a socket path that a test can stop and
// start again, as a crashed and restarted broker.
type broker struct {
	t      *testing.T
	path   string
	b      *eventbus.Broker
	srv    *server.Server
	served chan error
}

func newRestartable(t *testing.T) *broker {
	bk := &broker{t: t, path: filepath.Join(t.TempDir(), "eventbus.sock")}
	bk.start()
	t.Cleanup(bk.stop)
	return bk
}

// start starts a fresh broker (nothing carried over) on the path.
func (bk *broker) start() {
	t := bk.t
	t.Helper()
	b, err := eventbus.New(eventbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Options{Broker: b, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	l, err := transport.ListenUnix(bk.path)
	if err != nil {
		t.Fatal(err)
	}
	bk.b, bk.srv, bk.served = b, srv, make(chan error, 1)
	go func() { bk.served <- srv.Serve(l) }()
}

// stop closes every connection at once, like a crash.
func (bk *broker) stop() {
	if bk.srv == nil {
		return
	}
	bk.srv.Close()
	<-bk.served
	bk.b.Close()
	bk.srv = nil
}

func fastReconnect(name string) Options {
	return Options{Name: name, ReconnectWait: 5 * time.Millisecond, MaxReconnectWait: 20 * time.Millisecond}
}

func receive(t *testing.T, s *Subscription, n int) []Msg {
	t.Helper()
	var got []Msg
	for len(got) < n {
		select {
		case m, ok := <-s.C():
			if !ok {
				t.Fatalf("subscription ended after %d of %d messages: %v", len(got), n, s.Err())
			}
			got = append(got, m)
		case <-time.After(5 * time.Second):
			t.Fatalf("received %d of %d messages (dropped %d)", len(got), n, s.Dropped())
		}
	}
	return got
}

func TestReconnectRestoresSubscriptionsAndSendsTheBuffer(t *testing.T) {
	bk := newRestartable(t)
	reconnected := make(chan string, 2)
	subOpts, pubOpts := fastReconnect("sub"), fastReconnect("pub")
	subOpts.OnReconnect = func() { reconnected <- "sub" }
	pubOpts.OnReconnect = func() { reconnected <- "pub" }
	sub, err := Dial(t.Context(), bk.path, subOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	s, err := sub.Subscribe(t.Context(), "events.#", 1000)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := Dial(t.Context(), bk.path, pubOpts)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()

	bk.stop()
	wait.Until(t, 5*time.Second, "both clients notice the broker is gone", func() bool {
		return !pub.Stats().Connected && !sub.Stats().Connected
	})
	const n = 300
	for i := range n {
		if err := pub.Publish("events.buffered", fmt.Appendf(nil, "%d", i)); err != nil {
			t.Fatalf("publish %d while disconnected: %v", i, err)
		}
	}
	if st := pub.Stats(); st.Buffered == 0 {
		t.Fatalf("nothing buffered while disconnected: %+v", st)
	}
	// Hold the publisher's buffer back until the subscriber is restored:
	// the new broker keeps nothing for subscribers that are not there yet.
	pub.mu.Lock()
	bk.start()
	if who := <-reconnected; who != "sub" {
		t.Fatalf("%s reconnected while the test held its lock", who)
	}
	pub.mu.Unlock()
	if who := <-reconnected; who != "pub" {
		t.Fatalf("second reconnect was %s", who)
	}
	if err := pub.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	got := receive(t, s, n)
	for i, m := range got {
		if string(m.Payload) != fmt.Sprint(i) || m.Seq != uint64(i+1) {
			t.Fatalf("message %d: %q seq %d; want the buffer in order", i, m.Payload, m.Seq)
		}
	}
	st := pub.Stats()
	if st.Disconnects != 1 || st.Reconnects != 1 || st.Buffered != 0 || st.BufferFull != 0 {
		t.Errorf("publisher stats %+v", st)
	}
}

func TestBufferFullWhileDisconnected(t *testing.T) {
	bk := newRestartable(t)
	opts := fastReconnect("pub")
	opts.MaxBuffered = 4096
	opts.WriteTimeout = 100 * time.Millisecond // bounds how long Close waits for the broker
	pub, err := Dial(t.Context(), bk.path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	bk.stop()
	wait.Until(t, 5*time.Second, "the client notices", func() bool { return !pub.Stats().Connected })
	accepted := 0
	for {
		err := pub.Publish("events.a", make([]byte, 100))
		if errors.Is(err, ErrBufferFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		accepted++
	}
	if accepted == 0 || accepted > 4096/100 {
		t.Errorf("accepted %d messages of 100 B into a 4 KiB buffer", accepted)
	}
	if st := pub.Stats(); st.BufferFull != 1 {
		t.Errorf("BufferFull = %d, want 1", st.BufferFull)
	}
	// Close reports what it could not send.
	err = pub.Close()
	if !errors.Is(err, ErrDisconnected) || !strings.Contains(err.Error(), fmt.Sprintf("%d buffered messages were never sent", accepted)) {
		t.Errorf("Close = %v, want ErrDisconnected naming %d unsent messages", err, accepted)
	}
}

func TestFlushWaitsForTheReconnect(t *testing.T) {
	bk := newRestartable(t)
	pub, err := Dial(t.Context(), bk.path, fastReconnect("pub"))
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	bk.stop()
	wait.Until(t, 5*time.Second, "the client notices", func() bool { return !pub.Stats().Connected })
	pub.Publish("events.a", nil)
	flushed := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		flushed <- pub.Flush(ctx)
	}()
	select {
	case err := <-flushed:
		t.Fatalf("Flush returned %v while the broker was down", err)
	case <-time.After(50 * time.Millisecond):
	}
	bk.start()
	if err := <-flushed; err != nil {
		t.Fatalf("Flush after the reconnect: %v", err)
	}
	if st := bk.b.Stats(); st.Published != 1 {
		t.Errorf("new broker saw %d publishes, want the buffered one", st.Published)
	}
}

func TestNextBackoff(t *testing.T) {
	for _, tc := range []struct{ wait, max, want time.Duration }{
		{50 * time.Millisecond, 2 * time.Second, 100 * time.Millisecond},
		{time.Second, 2 * time.Second, 2 * time.Second},
		{2 * time.Second, 2 * time.Second, 2 * time.Second},
	} {
		if got := nextBackoff(tc.wait, tc.max); got != tc.want {
			t.Errorf("nextBackoff(%v, %v) = %v, want %v", tc.wait, tc.max, got, tc.want)
		}
	}
	for range 1000 {
		if j := jitter(100 * time.Millisecond); j < 50*time.Millisecond || j >= 150*time.Millisecond {
			t.Fatalf("jitter(100ms) = %v, want within ±50%%", j)
		}
	}
}

// A subscription the new broker refuses ends with its error, and nothing
// else: no stray unsubscribe, no refusal reported for a publish.
func TestRefusedRestoreEndsOnlyThatSubscription(t *testing.T) {
	path := filepath.Join(t.TempDir(), "eventbus.sock")
	run := func(maxSubs int) func() {
		b, err := eventbus.New(eventbus.Options{})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := server.New(server.Options{Broker: b, MaxSubscriptions: maxSubs})
		if err != nil {
			t.Fatal(err)
		}
		l, err := transport.ListenUnix(path)
		if err != nil {
			t.Fatal(err)
		}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		return func() { srv.Close(); <-served; b.Close() }
	}
	stop := run(0)
	reconnected := make(chan struct{}, 1)
	opts := fastReconnect("x")
	opts.OnReconnect = func() { reconnected <- struct{}{} }
	c, err := Dial(t.Context(), "unix://"+path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s1, err := c.Subscribe(t.Context(), "events.a", 0)
	if err != nil {
		t.Fatal(err)
	}
	s2, err := c.Subscribe(t.Context(), "events.b", 0)
	if err != nil {
		t.Fatal(err)
	}
	stop()
	stop = run(1) // the new broker allows one subscription per connection
	defer func() { stop() }()
	<-reconnected
	if err := c.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if s1.Err() != nil || !errors.Is(s2.Err(), ErrRefused) {
		t.Errorf("after the restore: s1 %v, s2 %v; want s1 kept and s2 refused", s1.Err(), s2.Err())
	}
	if _, ok := <-s2.C(); ok {
		t.Error("the refused subscription's channel is open")
	}
	if err := c.AsyncErr(); err != nil {
		t.Errorf("AsyncErr = %v; nothing was published", err)
	}
	c.Close() // before the broker stops, or Close waits for it to come back
}

// A message the client received for a subscription whose channel was full
// when the session ended is kept for it (backlog); it must reach the
// channel once the consumer reads again, even if nothing more is ever
// published to the subscription (it used to wait for the next message).
func TestBacklogKeptAcrossReconnectReachesTheChannel(t *testing.T) {
	bk := newRestartable(t)
	sub, err := Dial(t.Context(), bk.path, fastReconnect("sub"))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	s, err := sub.Subscribe(t.Context(), "events.a", 1)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := Dial(t.Context(), bk.path, Options{Name: "pub", NoReconnect: true})
	if err != nil {
		t.Fatal(err)
	}
	pub.Publish("events.a", []byte("1")) // fills the channel
	pub.Publish("events.a", []byte("2")) // the reader waits for room with it
	if err := pub.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	pub.Close()
	wait.Until(t, 5*time.Second, "the reader to wait for room with message 2", func() bool {
		sub.mu.Lock()
		defer sub.mu.Unlock()
		return len(s.backlog) == 1
	})
	bk.stop()
	// The reader waits for room, so only a write notices the loss: the
	// keepalive would, after seconds; a publish does at once.
	sub.Publish("events.other", nil) // not to s
	wait.Until(t, 5*time.Second, "the client to notice the loss", func() bool { return !sub.Stats().Connected })
	bk.start()
	wait.Until(t, 5*time.Second, "the reconnect", func() bool { st := sub.Stats(); return st.Connected && st.Reconnects > 0 })
	for _, want := range []string{"1", "2"} {
		select {
		case m := <-s.C():
			if string(m.Payload) != want {
				t.Fatalf("got %q, want %q", m.Payload, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("message %s, received before the broker restarted, never reached the channel", want)
		}
	}
}
