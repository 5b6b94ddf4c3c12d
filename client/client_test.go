package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/server"
	"github.com/daemoneye/daemoneye/topic"
)

func TestMain(m *testing.M) {
	if path := os.Getenv("DAEMONEYE_TEST_FAKE_BROKER"); path != "" {
		os.Exit(runFakeBroker(path))
	}
	goleak.VerifyTestMain(m)
}

func startBroker(t *testing.T) (string, *server.Server) { return startBrokerB(t) }

func startBrokerB(t testing.TB) (string, *server.Server) { return startBrokerWith(t, server.Options{}) }

func startBrokerWith(t testing.TB, opts server.Options) (string, *server.Server) {
	opts.Logger = testLogger()
	path, srv, _ := testbroker.Start(t, opts)
	return path, srv
}

func dialT(t *testing.T, path string) *Conn {
	t.Helper()
	c, err := Dial(t.Context(), "unix://"+path, Options{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestPublishSubscribe(t *testing.T) {
	path, _ := startBroker(t)
	sub, pub := dialT(t, path), dialT(t, path)
	identity := sub.Identity()
	if identity == "" {
		t.Error("no identity from the welcome")
	}
	s, err := sub.Subscribe(t.Context(), "events.#", 16)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := pub.Publish("events.a", []byte{byte('0' + i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		select {
		case m := <-s.C():
			if m.Topic != "events.a" || string(m.Payload) != string(rune('0'+i)) || m.Seq != uint64(i+1) || m.Pattern != "events.#" {
				t.Errorf("got %+v", m)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("no message")
		}
	}
	// The frames read since the welcome must not have changed it.
	if id := sub.Identity(); id != identity {
		t.Errorf("Identity() = %q after receiving, %q before", id, identity)
	}
}

func TestErrors(t *testing.T) {
	path, _ := startBroker(t)
	c := dialT(t, path)
	if _, err := c.Subscribe(t.Context(), "events.*", 0); !errors.Is(err, topic.ErrInvalidPattern) {
		t.Errorf("Subscribe(events.*) = %v, want ErrInvalidPattern", err)
	}
	if _, err := c.SubscribeWith(t.Context(), "events.a", SubscribeOptions{QueueGroup: "bad group"}); !errors.Is(err, ErrRefused) {
		t.Errorf("Subscribe with a bad queue group = %v, want ErrRefused", err)
	}
	if err := c.Publish("events.Bad", nil); !errors.Is(err, topic.ErrInvalidTopic) {
		t.Errorf("Publish(bad topic) = %v", err)
	}
	if err := c.Publish("events.a", make([]byte, 2<<20)); !errors.Is(err, eventbus.ErrPayloadTooLarge) {
		t.Errorf("Publish(2 MiB) = %v", err)
	}
	if _, err := Dial(t.Context(), filepath.Join(t.TempDir(), "nothing.sock"), Options{}); err == nil {
		t.Error("Dial to a missing socket succeeded")
	}
	if _, err := Dial(t.Context(), "tcp://localhost:1", Options{}); err == nil {
		t.Error("Dial tcp:// succeeded")
	}
	// The connection is still usable.
	if err := c.Flush(t.Context()); err != nil {
		t.Error(err)
	}
}

func TestServerGoesAwayWithoutReconnect(t *testing.T) {
	path, srv := startBroker(t)
	c, err := Dial(t.Context(), path, Options{NoReconnect: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.Subscribe(t.Context(), "#", 0)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	go srv.Shutdown(ctx)
	select {
	case _, ok := <-s.C():
		if ok {
			t.Fatal("unexpected message")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("subscription channel not closed after goaway")
	}
	if err := c.Err(); !errors.Is(err, ErrDisconnected) || !strings.Contains(err.Error(), "going away") {
		t.Errorf("Err = %v, want ErrDisconnected saying the broker is going away", err)
	}
	if err := c.Publish("events.a", nil); !errors.Is(err, ErrDisconnected) {
		t.Errorf("Publish after goaway = %v", err)
	}
}

func testLogger() *slog.Logger {
	if os.Getenv("DAEMONEYE_TEST_LOG") == "" {
		return nil
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Many publishes with flushes in between: every frame must arrive intact.
// (The writer once reused a buffer that publishers were still filling.)
func TestManyPublishesArriveIntact(t *testing.T) {
	path, _ := startBroker(t)
	sub, pub := dialT(t, path), dialT(t, path)
	s, err := sub.Subscribe(t.Context(), "events.#", 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	const n = 50000
	payload := make([]byte, 100)
	for i := range n {
		if err := pub.Publish("events.many", payload); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 0 {
			if err := pub.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := pub.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		select {
		case m := <-s.C():
			if m.Seq != uint64(i+1) || len(m.Payload) != 100 {
				t.Fatalf("message %d: seq %d, %d bytes", i, m.Seq, len(m.Payload))
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("received %d of %d (dropped %d); publisher: %v", i, n, s.Dropped(), pub.Err())
		}
	}
}

// Closing a connection while deliveries pour in must not panic (a send on
// a closed channel) and must end every goroutine.
func TestCloseWhileReceiving(t *testing.T) {
	path, _ := startBroker(t)
	pub := dialT(t, path)
	for range 20 {
		sub, err := Dial(t.Context(), path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sub.Subscribe(t.Context(), "events.#", 4); err != nil {
			t.Fatal(err)
		}
		for range 200 {
			pub.Publish("events.flood", []byte("x"))
		}
		pub.Flush(t.Context())
		sub.Close()
	}
}

// A client that only receives keeps its connection: it pings at half the
// interval the server announced.
func TestReceiveOnlyClientStaysConnected(t *testing.T) {
	path, _ := startBrokerWith(t, server.Options{IdleTimeout: 200 * time.Millisecond})
	c := dialT(t, path)
	s, err := c.Subscribe(t.Context(), "events.#", 0)
	if err != nil {
		t.Fatal(err)
	}
	// Kept: that the connection outlives several idle timeouts of quiet
	// is what is tested; the sleep is the quiet (a real socket: no
	// synctest bubble).
	time.Sleep(700 * time.Millisecond)
	if err := c.Err(); err != nil {
		t.Fatalf("connection closed while idle: %v", err)
	}
	pub := dialT(t, path)
	pub.Publish("events.late", nil)
	pub.Flush(t.Context())
	select {
	case m, ok := <-s.C():
		if !ok || m.Topic != "events.late" {
			t.Fatalf("got %+v, %v", m, ok)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no message after idling")
	}
	if err := s.Unsubscribe(); err != nil {
		t.Error(err)
	}
	if _, ok := <-s.C(); ok {
		t.Error("channel open after Unsubscribe")
	}
}

// TestPublishMsgs publishes batches: every message arrives in order, a
// batch larger than the send buffer completes (the writer is woken while
// the batch waits for room), and a bad message stops the batch there.
func TestPublishMsgs(t *testing.T) {
	path, _ := startBroker(t)
	sub := dialT(t, path)
	pub, err := Dial(t.Context(), "unix://"+path, Options{Name: "batch", MaxBuffered: 4096, WriteTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	const n = 2000
	s, err := sub.Subscribe(t.Context(), "events.#", n+10)
	if err != nil {
		t.Fatal(err)
	}
	ms := make([]*Msg, n)
	for i := range ms {
		ms[i] = &Msg{Topic: "events.batch", Payload: fmt.Appendf(make([]byte, 0, 100), "%0100d", i)}
	}
	if got, err := pub.PublishMsgs(ms); got != n || err != nil {
		t.Fatalf("PublishMsgs of %d messages through a %d-byte buffer: %d, %v", n, 4096, got, err)
	}
	bad := []*Msg{{Topic: "events.batch", Payload: []byte("last")}, {Topic: "events.Bad"}, {Topic: "events.batch", Payload: []byte("never")}}
	if got, err := pub.PublishMsgs(bad); got != 1 || !errors.Is(err, topic.ErrInvalidTopic) {
		t.Fatalf("PublishMsgs with a bad topic second: %d, %v; want 1, ErrInvalidTopic", got, err)
	}
	if err := pub.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i := range n + 1 {
		want := fmt.Sprintf("%0100d", i)
		if i == n {
			want = "last"
		}
		select {
		case m := <-s.C():
			if string(m.Payload) != want {
				t.Fatalf("message %d: %q, want %q", i, m.Payload, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("message %d did not arrive", i)
		}
	}
	select {
	case m := <-s.C():
		t.Fatalf("unexpected message %q", m.Payload)
	default:
	}
}
