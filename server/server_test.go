package server

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/protocol/transport"
	"github.com/daemoneye/daemoneye/internal/protocol/wire"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
)

func TestMain(m *testing.M) {
	if path := os.Getenv("DAEMONEYE_TEST_HOLD_SILENT"); path != "" {
		os.Exit(holdSilentChild(path))
	}
	goleak.VerifyTestMain(m)
}

// start runs a broker and a server on a fresh socket and returns the path.
func start(t *testing.T, opts Options) (string, *Server, *eventbus.Broker) {
	t.Helper()
	return startBroker(t, eventbus.Options{}, opts)
}

// startBroker is start with a broker made with bopts.
func startBroker(t *testing.T, bopts eventbus.Options, opts Options) (string, *Server, *eventbus.Broker) {
	t.Helper()
	b, err := eventbus.New(bopts)
	if err != nil {
		t.Fatal(err)
	}
	opts.Broker = b
	srv, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), transport.SocketName)
	l, err := transport.ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve = %v, want ErrServerClosed", err)
		}
		b.Close()
	})
	return path, srv, b
}

type client struct {
	t  *testing.T
	nc net.Conn
	r  *wire.Reader
}

func rawDial(t *testing.T, path string) *client {
	t.Helper()
	nc, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &client{t: t, nc: nc, r: wire.NewReader(nc, 0)}
}

// dial connects and completes the handshake.
func dial(t *testing.T, path string) *client {
	t.Helper()
	c := rawDial(t, path)
	c.send(wire.Magic[:])
	c.send(wire.AppendHello(nil, &wire.Hello{Versions: []wire.Version{wire.Current}, ClientName: []byte("test")}))
	f := c.frame()
	if f.Type != wire.TypeWelcome {
		t.Fatalf("handshake answered with %s: %s", f.Type, f.Body)
	}
	w, err := wire.ParseWelcome(f.Flags, f.Body)
	if err != nil || w.Version != wire.Current || len(w.SessionID) == 0 || !strings.HasPrefix(string(w.Identity), "uid:") {
		t.Fatalf("welcome %+v, %v", w, err)
	}
	return c
}

func (c *client) send(b []byte) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

func (c *client) frame() wire.Frame {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(3 * time.Second))
	f, err := c.r.ReadFrame()
	if err != nil {
		c.t.Fatalf("read frame: %v", err)
	}
	return f
}

// expectError reads an error frame with the given code, then end of stream.
func (c *client) expectError(code wire.Code, text string) {
	c.t.Helper()
	f := c.frame()
	e, err := wire.ParseError(f.Type, f.Flags, f.Body)
	if f.Type != wire.TypeError || err != nil || e.Code != code || !strings.Contains(string(e.Text), text) {
		c.t.Fatalf("got %s frame code %d %q, want error code %d containing %q", f.Type, e.Code, e.Text, code, text)
	}
}

func (c *client) expectClosed() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(3 * time.Second))
	// A reset is a close too: the server closes with the client's unread
	// bytes still queued, after its error frame.
	if _, err := c.r.ReadFrame(); !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, syscall.ECONNRESET) {
		c.t.Fatalf("connection still open (read: %v)", err)
	}
}

func subscribeFrame(sid uint32, pattern string) []byte {
	return wire.AppendSubscribe(nil, &wire.Subscribe{SID: sid, Pattern: []byte(pattern)})
}

func publishFrame(topic, payload string) []byte {
	return wire.AppendPublish(nil, &wire.Publish{Topic: []byte(topic), Payload: []byte(payload)})
}

// roundTrip checks that pub/sub works between two fresh connections.
func roundTrip(t *testing.T, path string) {
	t.Helper()
	sub, pub := dial(t, path), dial(t, path)
	sub.send(subscribeFrame(7, "events.process.#"))
	// Ping after subscribe: the pong proves the subscribe was handled.
	sub.send(wire.AppendU64(nil, wire.TypePing, 42))
	if f := sub.frame(); f.Type != wire.TypePong {
		t.Fatalf("got %s, want pong", f.Type)
	}
	pub.send(publishFrame("events.process.lifecycle", "pid=4242"))
	f := sub.frame()
	d, err := wire.ParseDeliver(f.Flags, f.Body)
	if f.Type != wire.TypeDeliver || err != nil || d.SID != 7 || string(d.Topic) != "events.process.lifecycle" || string(d.Payload) != "pid=4242" || d.Seq == 0 {
		t.Fatalf("got %s %+v, %v", f.Type, d, err)
	}
}

func TestPubSubAcrossConnections(t *testing.T) {
	path, _, b := start(t, Options{})
	roundTrip(t, path)
	if st := b.Stats(); st.Published != 1 || st.Delivered != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestPublishAckAndErrors(t *testing.T) {
	path, _, _ := start(t, Options{})
	c := dial(t, path)
	c.send(wire.AppendPublish(nil, &wire.Publish{Ack: true, AckID: 5, Topic: []byte("events.a")}))
	if f := c.frame(); f.Type != wire.TypeAck {
		t.Fatalf("got %s, want ack", f.Type)
	}
	// Bad topic and bad pattern: an error frame, and the connection stays.
	c.send(wire.AppendPublish(nil, &wire.Publish{Ack: true, AckID: 6, Topic: []byte("events.Bad")}))
	c.expectError(wire.CodeInvalidTopic, "upper-case")
	c.send(subscribeFrame(1, "events.*"))
	c.expectError(wire.CodeInvalidTopic, "write '+'")
	c.send(wire.AppendU32(nil, wire.TypeUnsubscribe, 99))
	c.expectError(wire.CodeUnknownSID, "no subscription 99")
	c.send(subscribeFrame(1, "events.#"))
	c.send(subscribeFrame(1, "control.#"))
	c.expectError(wire.CodeDuplicateSID, "already in use")
	c.send(wire.AppendU64(nil, wire.TypePing, 1))
	if f := c.frame(); f.Type != wire.TypePong {
		t.Fatalf("connection unusable after errors: %s", f.Type)
	}
}

// Each bad input closes only its own connection; everyone else is served.
func TestMalformedInput(t *testing.T) {
	path, _, _ := start(t, Options{HandshakeTimeout: 300 * time.Millisecond, IdleTimeout: 300 * time.Millisecond})
	bystander := dial(t, path)
	bystander.send(subscribeFrame(1, "events.#"))
	// The bystander pings well within the idle timeout while the bad
	// clients come and go.
	stop := make(chan struct{})
	var pinger sync.WaitGroup
	pinger.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				bystander.nc.SetWriteDeadline(time.Now().Add(time.Second))
				bystander.nc.Write(wire.AppendU64(nil, wire.TypePing, 1))
			}
		}
	})

	handshake := func(c *client) {
		c.send(wire.Magic[:])
		c.send(wire.AppendHello(nil, &wire.Hello{Versions: []wire.Version{wire.Current}}))
		if f := c.frame(); f.Type != wire.TypeWelcome {
			t.Fatalf("welcome: %s", f.Type)
		}
	}
	badCRC := wire.AppendU64(nil, wire.TypePing, 1)
	badCRC[len(badCRC)-1] ^= 0xFF
	oversize := wire.AppendU64(nil, wire.TypePing, 1)
	binary.BigEndian.PutUint32(oversize, 1<<30)
	unknown := wire.AppendFrame(nil, 42, 0, nil)
	unknown[4] = 42
	tests := []struct {
		name  string
		shake bool
		send  []byte
		code  wire.Code
		text  string
	}{
		{"garbage before the handshake", false, []byte("GET / HTTP/1.1\r\n\r\n"), wire.CodeProtocol, "bad magic"},
		{"wrong magic", false, []byte("DEYEBUS\r"), wire.CodeProtocol, "bad magic"},
		{"frame before hello", false, append(wire.Magic[:], wire.AppendU64(nil, wire.TypePing, 1)...), wire.CodeProtocol, "expected hello"},
		{"bad checksum", true, badCRC, wire.CodeProtocol, "checksum"},
		{"length over the limit", true, oversize, wire.CodeFrameTooLarge, "too large"},
		{"unknown frame type", true, unknown, wire.CodeProtocol, "unknown frame type"},
		{"server-only frame", true, wire.AppendU64(nil, wire.TypeDeliver, 1), wire.CodeProtocol, "may not send deliver"},
		{"malformed body", true, wire.AppendFrame(nil, wire.TypePublish, 0, []byte{0, 9, 'x'}), wire.CodeProtocol, "truncated"},
		{"half a frame, then silence", true, wire.AppendU64(nil, wire.TypePing, 1)[:7], wire.CodeTimeout, "timeout"},
		{"silent after connect", false, nil, wire.CodeTimeout, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := rawDial(t, path)
			if tt.shake {
				handshake(c)
			}
			if tt.send != nil {
				c.send(tt.send)
			}
			c.expectError(tt.code, tt.text)
			c.expectClosed()
		})
	}
	close(stop)
	pinger.Wait()
	// The bystander was never disturbed.
	pub := dial(t, path)
	pub.send(publishFrame("events.still.here", "ok"))
	for {
		f := bystander.frame()
		if f.Type == wire.TypeDeliver {
			break
		}
		if f.Type != wire.TypePong {
			e, _ := wire.ParseError(f.Type, f.Flags, f.Body)
			t.Fatalf("bystander got %s: %s", f.Type, e.Text)
		}
	}
}

func TestTruncatedFrameThenClose(t *testing.T) {
	path, _, _ := start(t, Options{})
	c := dial(t, path)
	c.send(publishFrame("events.a", "x")[:10])
	c.nc.(*net.UnixConn).CloseWrite()
	c.expectClosed()
	roundTrip(t, path)
}

func TestVersionRefused(t *testing.T) {
	path, _, _ := start(t, Options{})
	c := rawDial(t, path)
	c.send(wire.Magic[:])
	c.send(wire.AppendHello(nil, &wire.Hello{Versions: []wire.Version{{Major: 9, Minor: 1}}}))
	c.expectError(wire.CodeVersion, "the client speaks 9.1, this server speaks 1.0")
	c.expectClosed()
}

func TestOlderMinorClientAccepted(t *testing.T) {
	path, _, _ := start(t, Options{})
	c := rawDial(t, path)
	c.send(wire.Magic[:])
	c.send(wire.AppendHello(nil, &wire.Hello{Versions: []wire.Version{{Major: 1, Minor: 0}, {Major: 0, Minor: 9}}}))
	f := c.frame()
	w, err := wire.ParseWelcome(f.Flags, f.Body)
	if err != nil || w.Version != (wire.Version{Major: 1, Minor: 0}) {
		t.Fatalf("welcome %+v %v", w, err)
	}
}

func TestTokenAuthNotEnabled(t *testing.T) {
	path, _, _ := start(t, Options{})
	c := rawDial(t, path)
	c.send(wire.Magic[:])
	c.send(wire.AppendHello(nil, &wire.Hello{Versions: []wire.Version{wire.Current}, AuthMethod: wire.AuthToken, Credential: []byte("x")}))
	c.expectError(wire.CodeAuth, "not enabled")
	c.expectClosed()
}

// MaxConns bounds authenticated connections; the local operator has a
// reserve beyond it.
func TestConnectionLimit(t *testing.T) {
	ep := startAll(t, Options{MaxConns: 1, Auth: Auth{Tokens: testTokens}})
	first := rawDialTCP(t, ep.tcp)
	first.hello(wire.AuthToken, ciSecret)
	first.expectWelcome()
	second := rawDialTCP(t, ep.tcp)
	second.expectError(wire.CodeLimit, "limit of 1 connections")
	second.expectClosed()
	op := dial(t, ep.unix) // the operator: within OperatorReserve
	op.nc.Close()
	first.nc.Close()
	// The slot is released when the connections go.
	wait.For(t, 3*time.Second, "the slot released", func() error {
		nc, err := net.Dial("tcp", ep.tcp)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		nc.SetDeadline(time.Now().Add(3 * time.Second))
		nc.Write(wire.Magic[:]) // refused at once while the slot is taken: errors are fine
		nc.Write(wire.AppendHello(nil, &wire.Hello{Versions: []wire.Version{wire.Current}, AuthMethod: wire.AuthToken, Credential: []byte(ciSecret)}))
		f, err := wire.NewReader(nc, 0).ReadFrame()
		if err != nil {
			return err
		}
		if f.Type != wire.TypeWelcome {
			return fmt.Errorf("got %s, not welcome", f.Type)
		}
		return nil
	})
}

func TestShutdownSendsGoAway(t *testing.T) {
	path, srv, _ := start(t, Options{})
	c := dial(t, path)
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		done <- srv.Shutdown(ctx)
	}()
	f := c.frame()
	if f.Type != wire.TypeGoAway {
		t.Fatalf("got %s, want goaway", f.Type)
	}
	c.nc.Close() // a well-behaved client leaves
	if err := <-done; err != nil {
		t.Errorf("Shutdown = %v", err)
	}
}

func TestSubscriptionLimit(t *testing.T) {
	path, _, _ := start(t, Options{MaxSubscriptions: 2})
	c := dial(t, path)
	c.send(subscribeFrame(1, "events.a"))
	c.send(subscribeFrame(2, "events.b"))
	c.send(subscribeFrame(3, "events.c"))
	c.expectError(wire.CodeLimit, "limit of 2 subscriptions")
	c.send(wire.AppendU64(nil, wire.TypePing, 9))
	if f := c.frame(); f.Type != wire.TypePong {
		t.Fatalf("got %s", f.Type)
	}
}

// sync pings c and waits for the pong: everything c sent before is handled.
func (c *client) sync() {
	c.t.Helper()
	c.send(wire.AppendU64(nil, wire.TypePing, 77))
	if f := c.frame(); f.Type != wire.TypePong {
		c.t.Fatalf("got %s, want pong", f.Type)
	}
}

func (c *client) deliver() wire.Deliver {
	c.t.Helper()
	f := c.frame()
	d, err := wire.ParseDeliver(f.Flags, f.Body)
	if f.Type != wire.TypeDeliver || err != nil {
		c.t.Fatalf("got %s (%v), want deliver", f.Type, err)
	}
	return d
}

func TestQueueGroupAcrossConnections(t *testing.T) {
	path, _, b := start(t, Options{})
	w1, w2, pub := dial(t, path), dial(t, path), dial(t, path)
	for _, w := range []*client{w1, w2} {
		w.send(wire.AppendSubscribe(nil, &wire.Subscribe{SID: 5, Pattern: []byte("control.svc.+"), QueueGroup: []byte("workers")}))
		w.sync()
	}
	for i := range 10 {
		pub.send(publishFrame("control.svc.a", fmt.Sprint(i)))
	}
	pub.sync()
	got := 0
	for _, w := range []*client{w1, w2} {
		for range 5 { // round robin over two members: five each
			if d := w.deliver(); d.SID != 5 {
				t.Fatalf("sid %d", d.SID)
			}
			got++
		}
		w.sync() // and nothing more before the pong
	}
	if st := b.Stats(); st.Delivered != 10 || got != 10 {
		t.Errorf("delivered %d (counted %d), want 10: each message to one member", st.Delivered, got)
	}
}

func TestRequestReplyOverSocket(t *testing.T) {
	path, _, _ := start(t, Options{})
	svc, caller := dial(t, path), dial(t, path)
	caller.send(subscribeFrame(1, "control.inbox.c1.+"))
	caller.sync()

	req := &wire.Publish{Topic: []byte("control.svc.ping"), Reply: []byte("control.inbox.c1.1"), Ack: true, AckID: 1<<63 | 5, Payload: []byte("ping")}
	caller.send(wire.AppendPublish(nil, req))
	f := caller.frame()
	e, err := wire.ParseError(f.Type, f.Flags, f.Body)
	if f.Type != wire.TypeError || err != nil || e.Code != wire.CodeNoResponders || e.Ref != req.AckID {
		t.Fatalf("request without a service: got %s code %d ref %x %q, want no-responders for ack id %x", f.Type, e.Code, e.Ref, e.Text, req.AckID)
	}

	svc.send(subscribeFrame(9, "control.svc.ping"))
	svc.sync()
	caller.send(wire.AppendPublish(nil, req))
	if f := caller.frame(); f.Type != wire.TypeAck {
		t.Fatalf("got %s, want the ack of the routed request", f.Type)
	}
	d := svc.deliver()
	if string(d.Reply) != "control.inbox.c1.1" || string(d.Payload) != "ping" {
		t.Fatalf("service got reply %q payload %q", d.Reply, d.Payload)
	}
	svc.send(wire.AppendPublish(nil, &wire.Publish{Topic: d.Reply, Payload: []byte("pong")}))
	if r := caller.deliver(); r.SID != 1 || string(r.Payload) != "pong" || r.Reply != nil {
		t.Fatalf("caller got sid %d payload %q reply %q", r.SID, r.Payload, r.Reply)
	}
}

// A client that keeps sending pings but never reads is cut off at
// MaxPending instead of being buffered for without end.
func TestNonReadingClientIsCutOff(t *testing.T) {
	path, _, _ := start(t, Options{MaxPending: 64 << 10, WriteTimeout: time.Minute}) // only MaxPending can end it
	c := dial(t, path)
	ping := wire.AppendU64(nil, wire.TypePing, 1)
	burst := bytes.Repeat(ping, 1000)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		c.nc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.nc.Write(burst); err != nil && !isTimeout(err) {
			return // the server closed the connection
		}
	}
	t.Fatal("the server kept a connection that never reads")
}

// A subscription with the block policy holds its publisher back while the
// connection is over MaxPending, instead of dropping: nothing is lost.
func TestBlockPolicyHoldsThePublisher(t *testing.T) {
	path, _, b := start(t, Options{MaxPending: 8 << 10, MaxStall: time.Minute}) // the subscriber reads, though late
	sub, pub := dial(t, path), dial(t, path)
	sub.send(wire.AppendSubscribe(nil, &wire.Subscribe{SID: 1, Pattern: []byte("events.#"), BlockTimeoutMs: 20000}))
	sub.sync()
	const n = 2000 // 2 MB: far beyond MaxPending and the kernel's socket buffers
	payload := bytes.Repeat([]byte("x"), 1000)
	go func() {
		// The server stops reading from the publisher while it waits, so
		// write from a goroutine; the test's deadline is on the reads.
		for range n {
			pub.nc.SetWriteDeadline(time.Now().Add(20 * time.Second))
			pub.nc.Write(wire.AppendPublish(nil, &wire.Publish{Topic: []byte("events.a"), Payload: payload}))
		}
	}()
	for i := range n {
		sub.nc.SetReadDeadline(time.Now().Add(10 * time.Second))
		f, err := sub.r.ReadFrame()
		if err != nil {
			t.Fatalf("after %d messages: %v (stats %+v)", i, err, b.Stats().Dropped)
		}
		if d, err := wire.ParseDeliver(f.Flags, f.Body); err != nil || d.Seq != uint64(i+1) {
			t.Fatalf("message %d: seq %d, %v", i, d.Seq, err)
		}
	}
	if st := b.Stats(); st.Dropped.Total() != 0 || st.Delivered != n {
		t.Errorf("delivered %d, dropped %+v; want all %d and no drops", st.Delivered, st.Dropped, n)
	}
}

// binValue stands in for an encodable value (envelope.Lazy).
type binValue string

func (v binValue) AppendBinary(b []byte) ([]byte, error) { return append(b, v...), nil }

// A message published in process with a value and no payload reaches a
// subscriber over the socket encoded; one whose value cannot be encoded is
// refused, counted, and does not break the connection.
func TestValueEncodedForTheSocket(t *testing.T) {
	path, _, b := start(t, Options{})
	sub := dial(t, path)
	sub.send(wire.AppendSubscribe(nil, &wire.Subscribe{SID: 1, Pattern: []byte("events.#")}))
	sub.sync()
	if err := b.Publish(t.Context(), eventbus.Message{Topic: "events.a", Value: binValue("encoded")}); err != nil {
		t.Fatal(err)
	}
	if d := sub.deliver(); string(d.Payload) != "encoded" {
		t.Errorf("payload %q, want the value's encoding", d.Payload)
	}
	if err := b.Publish(t.Context(), eventbus.Message{Topic: "events.a", Value: 42}); err == nil {
		t.Error("a value that cannot be encoded was accepted for a socket subscriber")
	}
	if err := b.Publish(t.Context(), eventbus.Message{Topic: "events.a", Payload: []byte("after")}); err != nil {
		t.Fatal(err)
	}
	if d := sub.deliver(); string(d.Payload) != "after" {
		t.Errorf("payload %q after the refused one", d.Payload)
	}
	if got := b.Stats().Dropped.Total(); got != 1 {
		t.Errorf("%d drops counted, want 1", got)
	}
}

// denyControl forbids everyone to publish under control.collector and to
// subscribe to anything under control but their own inbox.
type denyControl struct{}

func (denyControl) AllowPublish(identity, topic string) error {
	if strings.HasPrefix(topic, "control.collector.") {
		return fmt.Errorf("only the agent may send collector commands")
	}
	return nil
}

func (denyControl) AllowSubscribe(identity, pattern string) error {
	if strings.HasPrefix(pattern, "control.") && !strings.HasPrefix(pattern, "control.inbox.mine.") {
		return fmt.Errorf("control topics are the agent's")
	}
	return nil
}

func TestAuthorizer(t *testing.T) {
	path, srv, b := start(t, Options{Authorizer: denyControl{}})
	c := dial(t, path)
	watch, err := b.Subscribe("#", eventbus.SubscribeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Unsubscribe()
	expectForbidden := func(what string, ref uint64) {
		t.Helper()
		f := c.frame()
		e, err := wire.ParseError(f.Type, f.Flags, f.Body)
		if f.Type != wire.TypeError || err != nil || e.Code != wire.CodeForbidden || e.Ref != ref || !strings.Contains(string(e.Text), "uid:") {
			t.Fatalf("%s: got %s %+v, want a forbidden error for ref %d naming the identity", what, f.Type, e, ref)
		}
	}
	c.send(wire.AppendPublishMsg(nil, 0, wire.AckAll, 7, "control.collector.lifecycle.procmond", "", []byte("stop")))
	expectForbidden("publish", 7)
	c.send(wire.AppendPublishMsg(nil, 0, wire.AckAll, 8, "control.collector.lifecycle.procmond", "", []byte("again"))) // cached decision
	expectForbidden("publish again", 8)
	c.send(wire.AppendPublishMsg(nil, 0, wire.AckAll, 9, "events.a", "control.inbox.other.1", []byte("req")))
	expectForbidden("request with someone else's inbox", 9)
	c.send(wire.AppendSubscribe(nil, &wire.Subscribe{SID: 3, Pattern: []byte("control.#")}))
	expectForbidden("subscribe", 3)
	// The connection goes on: an allowed publish and subscription work.
	c.send(wire.AppendSubscribe(nil, &wire.Subscribe{SID: 4, Pattern: []byte("control.inbox.mine.+")}))
	c.send(wire.AppendPublishMsg(nil, 0, wire.AckAll, 10, "events.a", "control.inbox.mine.1", []byte("ok")))
	if f := c.frame(); f.Type != wire.TypeAck {
		t.Fatalf("allowed publish answered %s", f.Type)
	}
	d, err := watch.Next(t.Context())
	if err != nil || d.Topic != "events.a" {
		t.Errorf("the broker got %v, %v; want only the allowed publish", d.Topic, err)
	}
	if st := srv.Stats(); st.DeniedPublishes != 3 || st.DeniedSubscribes != 1 {
		t.Errorf("denied %d publishes, %d subscribes; want 3 and 1", st.DeniedPublishes, st.DeniedSubscribes)
	}
}
