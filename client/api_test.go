package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
	"github.com/daemoneye/daemoneye/server"
	"github.com/daemoneye/daemoneye/topics"
)

// eachTransport runs fn against a broker reached over a UNIX socket and in
// process: the two must behave the same.
func eachTransport(t *testing.T, fn func(t *testing.T, dial func(name string) *Conn)) {
	for _, tr := range []string{"unix", "inproc"} {
		t.Run(tr, func(t *testing.T) {
			var b *eventbus.Broker
			var addr string
			if tr == "unix" {
				var path string
				path, _, b = testbroker.Start(t, server.Options{})
				addr = "unix://" + path
			} else {
				var err error
				if b, err = eventbus.New(eventbus.Options{}); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { b.Close() })
			}
			fn(t, func(name string) *Conn {
				var c *Conn
				var err error
				if addr == "" {
					c, err = Connect(b, Options{Name: name})
				} else {
					c, err = Dial(t.Context(), addr, Options{Name: name})
				}
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { c.Close() })
				return c
			})
		})
	}
}

func TestAPIPubSub(t *testing.T) {
	eachTransport(t, func(t *testing.T, dial func(string) *Conn) {
		sub, pub := dial("sub"), dial("pub")
		s, err := sub.Subscribe(t.Context(), "events.process.+", 0)
		if err != nil {
			t.Fatal(err)
		}
		payload := []byte("pid=1")
		if err := pub.PublishMsg(&Msg{Topic: "events.process.created", Payload: payload, Priority: eventbus.PriorityHigh}); err != nil {
			t.Fatal(err)
		}
		payload[0] = 'X' // the caller may reuse its payload at once
		if err := pub.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		m := receive(t, s, 1)[0]
		if m.Topic != "events.process.created" || string(m.Payload) != "pid=1" || m.Seq != 1 ||
			m.Priority != eventbus.PriorityHigh || m.Pattern != "events.process.+" {
			t.Errorf("got %+v", m)
		}
		if err := s.Unsubscribe(); err != nil {
			t.Fatal(err)
		}
		if _, ok := <-s.C(); ok {
			t.Error("channel open after Unsubscribe")
		}
	})
}

func TestAPIRequestReply(t *testing.T) {
	eachTransport(t, func(t *testing.T, dial func(string) *Conn) {
		svc, caller := dial("svc"), dial("caller")
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()

		start := time.Now()
		_, err := caller.Request(ctx, "control.svc.echo", []byte("hi"))
		if !errors.Is(err, ErrNoResponders) {
			t.Fatalf("request without a service: %v, want ErrNoResponders", err)
		}
		if waited := time.Since(start); waited > 2*time.Second {
			t.Errorf("no responders took %v; it must not wait out the deadline", waited)
		}

		_, err = svc.SubscribeFunc(ctx, "control.svc.echo", SubscribeOptions{}, func(m *Msg) {
			svc.Respond(m, append([]byte("echo:"), m.Payload...))
		})
		if err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			r, err := caller.Request(ctx, "control.svc.echo", fmt.Appendf(nil, "%d", i))
			if err != nil {
				t.Fatal(err)
			}
			if string(r.Payload) != fmt.Sprintf("echo:%d", i) {
				t.Fatalf("reply %q to request %d", r.Payload, i)
			}
		}
		if err := svc.Respond(&Msg{Topic: "events.a"}, nil); err == nil {
			t.Error("Respond to a message without a reply topic succeeded")
		}

		// A service that never answers: the caller's deadline ends it.
		if _, err := svc.Subscribe(ctx, "control.svc.silent", 0); err != nil {
			t.Fatal(err)
		}
		short, cancelShort := context.WithTimeout(ctx, 50*time.Millisecond)
		defer cancelShort()
		if _, err := caller.Request(short, "control.svc.silent", nil); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("request to a silent service: %v, want DeadlineExceeded", err)
		}
	})
}

func TestAPIQueueGroup(t *testing.T) {
	eachTransport(t, func(t *testing.T, dial func(string) *Conn) {
		w1, w2, pub := dial("w1"), dial("w2"), dial("pub")
		var subs []*Subscription
		for _, w := range []*Conn{w1, w2} {
			s, err := w.SubscribeWith(t.Context(), "control.work.#", SubscribeOptions{QueueGroup: "workers"})
			if err != nil {
				t.Fatal(err)
			}
			subs = append(subs, s)
		}
		const n = 100
		for range n {
			pub.Publish("control.work.item", nil)
		}
		pub.Flush(t.Context())
		got := make([]int, len(subs))
		total := 0
		take := func() {
			for i, s := range subs {
				for more := true; more; {
					select {
					case <-s.C():
						got[i]++
						total++
					default:
						more = false
					}
				}
			}
		}
		wait.Until(t, 10*time.Second, "the group to get every message", func() bool { take(); return total >= n })
		// Anything more (a message twice) was sent before the pong of a
		// Flush on its Conn.
		for _, w := range []*Conn{w1, w2} {
			if err := w.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
		}
		take()
		for i, s := range subs {
			if got[i] == 0 {
				t.Errorf("member %s got nothing; work must spread", s.Pattern())
			}
		}
		if total != n {
			t.Errorf("the group got %d messages, want %d: each exactly once", total, n)
		}
	})
}

func TestConnectNeedsBroker(t *testing.T) {
	c, err := Connect(nil, Options{})
	if !errors.Is(err, ErrNoBroker) || c != nil {
		t.Errorf("Connect(nil) = %v, %v; want ErrNoBroker", c, err)
	}
}

// TestDialInprocRefused: the inproc:// scheme is gone; Dial says to use
// Connect.
func TestDialInprocRefused(t *testing.T) {
	for _, addr := range []string{"inproc://", "inproc://agent"} {
		c, err := Dial(t.Context(), addr, Options{})
		if !errors.Is(err, ErrAddress) || !strings.Contains(err.Error(), "client.Connect") || c != nil {
			t.Errorf("Dial(%q) = %v, %v; want ErrAddress saying to use client.Connect", addr, c, err)
		}
	}
}

func TestServerAnswersStatsRequests(t *testing.T) {
	path, _ := startBroker(t)
	c := dialT(t, path)
	c.Publish("events.counted", nil)
	r, err := c.Request(t.Context(), topics.BrokerStats, nil)
	if err != nil {
		t.Fatal(err)
	}
	var st server.Stats
	if err := json.Unmarshal(r.Payload, &st); err != nil {
		t.Fatalf("stats reply %q: %v", r.Payload, err)
	}
	if len(st.Connections) != 1 || st.Connections[0].Client != "test" || !strings.HasPrefix(st.Connections[0].Identity, "uid:") {
		t.Errorf("connections %+v, want this one", st.Connections)
	}
	if !slices.ContainsFunc(st.Broker.Topics, func(ts eventbus.TopicStats) bool { return ts.Topic == "events.counted" && ts.Published == 1 }) {
		t.Errorf("topics %+v, want events.counted published once", st.Broker.Topics)
	}
}

func TestAPIDrain(t *testing.T) {
	eachTransport(t, func(t *testing.T, dial func(string) *Conn) {
		sub, pub := dial("sub"), dial("pub")
		var got []string
		done := make(chan struct{})
		if _, err := sub.SubscribeFunc(t.Context(), "events.#", SubscribeOptions{Buffer: 1000}, func(m *Msg) {
			got = append(got, string(m.Payload))
			if len(got) == 500 {
				close(done)
			}
		}); err != nil {
			t.Fatal(err)
		}
		for i := range 500 {
			pub.Publish("events.a", fmt.Appendf(nil, "%d", i))
		}
		if err := pub.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if err := sub.Drain(t.Context()); err != nil {
			t.Fatal(err)
		}
		select { // Drain returned after the handler finished everything
		case <-done:
		default:
			t.Fatalf("handler saw %d of 500 messages when Drain returned", len(got))
		}
		if err := sub.Publish("events.a", nil); !errors.Is(err, ErrClosed) {
			t.Errorf("Publish after Drain = %v, want ErrClosed", err)
		}
	})
}

// binValue stands in for an encodable value (envelope.Lazy).
type binValue string

func (v binValue) AppendBinary(b []byte) ([]byte, error) { return append(b, v...), nil }

// A Msg with a Value and no Payload: in process the subscriber gets the
// value itself; over the socket, its encoding.
func TestAPIValueWithoutPayload(t *testing.T) {
	eachTransport(t, func(t *testing.T, dial func(string) *Conn) {
		sub, pub := dial("sub"), dial("pub")
		s, err := sub.Subscribe(t.Context(), "events.#", 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.PublishMsg(&Msg{Topic: "events.v", Value: binValue("encoded")}); err != nil {
			t.Fatal(err)
		}
		if err := pub.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		m := receive(t, s, 1)[0]
		if v, ok := m.Value.(binValue); ok {
			if v != "encoded" || m.Payload != nil {
				t.Errorf("in process: value %q, payload %q", v, m.Payload)
			}
		} else if string(m.Payload) != "encoded" || m.Value != nil {
			t.Errorf("over the socket: payload %q, value %v", m.Payload, m.Value)
		}
		if err := pub.PublishMsg(&Msg{Topic: "events.v", Value: 42}); err == nil && pub.ip == nil {
			t.Error("an unencodable value without payload was sent over the socket")
		}
	})
}

// An Inline SubscribeFunc gets every message in order and may respond to
// requests; over a socket it runs on the goroutine that reads the
// connection, so nothing else on the Conn arrives while it runs.
func TestAPIInlineSubscribeFunc(t *testing.T) {
	eachTransport(t, func(t *testing.T, dial func(string) *Conn) {
		sub, pub := dial("sub"), dial("pub")
		other, err := sub.Subscribe(t.Context(), "events.other", 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		done := make(chan struct{})
		heldBack := true
		_, err = sub.SubscribeFunc(t.Context(), "events.a", SubscribeOptions{Inline: true}, func(m *Msg) {
			if string(m.Payload) == "wait" {
				// events.other was published right after this message:
				// over a socket it must not arrive until this call returns.
				// Kept: that nothing arrives is what is tested; the 200ms
				// are the window in which it would.
				for range 20 {
					if len(other.C()) > 0 && sub.ip == nil {
						heldBack = false
					}
					time.Sleep(10 * time.Millisecond)
				}
				return
			}
			got = append(got, string(m.Payload))
			if len(got) == 500 {
				close(done)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sub.SubscribeFunc(t.Context(), "control.echo", SubscribeOptions{Inline: true}, func(m *Msg) {
			sub.Respond(m, append([]byte("echo:"), m.Payload...))
		}); err != nil {
			t.Fatal(err)
		}
		pub.Publish("events.a", []byte("wait"))
		pub.Publish("events.other", []byte("x"))
		for i := range 500 {
			pub.Publish("events.a", fmt.Appendf(nil, "%d", i))
		}
		if err := pub.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("handler saw %d of 500 messages", len(got))
		}
		for i, p := range got {
			if p != fmt.Sprint(i) {
				t.Fatalf("message %d is %q: out of order or lost", i, p)
			}
		}
		if !heldBack {
			t.Error("a message for another subscription arrived while the inline handler ran")
		}
		r, err := pub.Request(t.Context(), "control.echo", []byte("hi"))
		if err != nil {
			t.Fatalf("request to an inline responder: %v", err)
		}
		if string(r.Payload) != "echo:hi" {
			t.Errorf("request to an inline responder: reply %q", r.Payload)
		}
	})
}

// Subscription.Drain: what the broker routed before the drain still
// reaches the subscription, even while its function is busy; nothing
// routed after it does.
func TestAPISubscriptionDrain(t *testing.T) {
	for _, inline := range []bool{false, true} {
		t.Run(fmt.Sprintf("inline=%v", inline), func(t *testing.T) {
			eachTransport(t, func(t *testing.T, dial func(string) *Conn) {
				sub, pub := dial("sub"), dial("pub")
				busy, release := make(chan struct{}), make(chan struct{})
				var mu sync.Mutex
				var got []string
				s, err := sub.SubscribeFunc(t.Context(), "events.#", SubscribeOptions{Inline: inline}, func(m *Msg) {
					if string(m.Payload) == "0" {
						close(busy)
						<-release
					}
					mu.Lock()
					got = append(got, string(m.Payload))
					mu.Unlock()
				})
				if err != nil {
					t.Fatal(err)
				}
				for i := range 50 {
					pub.Publish("events.a", fmt.Appendf(nil, "%d", i))
				}
				if err := pub.Flush(t.Context()); err != nil { // all 50 routed to sub
					t.Fatal(err)
				}
				<-busy
				drained := make(chan error, 1)
				go func() { drained <- s.Drain(t.Context()) }()
				// Let the function go on only once the drain has begun (or,
				// were Drain an Unsubscribe, the subscription has ended).
				wait.Until(t, 5*time.Second, "the drain to begin", func() bool {
					sub.mu.Lock()
					defer sub.mu.Unlock()
					return s.draining.Load() || sub.subs[s.sid] != s
				})
				close(release)
				if err := <-drained; err != nil {
					t.Fatalf("Drain = %v", err)
				}
				pub.Publish("events.a", []byte("late"))
				if err := pub.Flush(t.Context()); err != nil {
					t.Fatal(err)
				}
				if err := sub.Flush(t.Context()); err != nil { // anything routed to sub has arrived
					t.Fatal(err)
				}
				// An Inline function has had all 50 when Drain returns; the
				// goroutine of another may still be reading its channel.
				if !inline {
					wait.Until(t, 5*time.Second, "the function's goroutine to take the 50 messages", func() bool {
						mu.Lock()
						defer mu.Unlock()
						return len(got) >= 50
					})
				}
				mu.Lock()
				defer mu.Unlock()
				if len(got) != 50 || got[49] != "49" {
					t.Errorf("the function got %d messages (last %q), want the 50 published before Drain", len(got), got[len(got)-1])
				}
				if _, ok := <-s.C(); ok {
					t.Error("the subscription's channel is still open after Drain")
				}
			})
		})
	}
}
