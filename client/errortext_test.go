package client

import (
	"errors"
	"io"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/protocol/wire"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/server"
)

// denySecret is an Authorizer that refuses everything under
// events.secret and control.secret.
type denySecret struct{}

var errNotInACL = errors.New("not in the ACL")

func (denySecret) AllowPublish(_, name string) error {
	if strings.HasPrefix(name, "events.secret.") || strings.HasPrefix(name, "control.secret.") {
		return errNotInACL
	}
	return nil
}

func (denySecret) AllowSubscribe(_, pattern string) error {
	if strings.HasPrefix(pattern, "events.secret.") {
		return errNotInACL
	}
	return nil
}

// TestErrorTextsReadOnce: each refusal the server sends over a UNIX
// socket reads with who refused and what once each (no "eventbus: no
// responders: eventbus: no responders", no "refused by the server: server:
// forbidden"), and still matches its sentinels.
func TestErrorTextsReadOnce(t *testing.T) {
	path, _, _ := testbroker.Start(t, server.Options{Authorizer: denySecret{}, MaxSubscriptions: 2, Logger: testLogger()})
	tests := []struct {
		name   string
		do     func(c *Conn) error
		once   []string // phrases the text says exactly once
		is     []error
		isNot  []error
		prefix string // how the text starts
	}{
		{
			name: "no responders",
			do: func(c *Conn) error {
				_, err := c.Request(t.Context(), "control.nobody.here", []byte("x"))
				return err
			},
			once:   []string{"no responders", "eventbus:", `"control.nobody.here"`},
			is:     []error{ErrNoResponders, eventbus.ErrNoResponders},
			isNot:  []error{ErrRefused, ErrDisconnected},
			prefix: "eventbus: no responders: nobody subscribes to",
		},
		{
			name: "forbidden request",
			do: func(c *Conn) error {
				_, err := c.Request(t.Context(), "control.secret.x", []byte("x"))
				return err
			},
			once:   []string{"client:", "refused by the server", "forbidden", "not in the ACL", `"control.secret.x"`},
			is:     []error{ErrRefused},
			isNot:  []error{ErrNoResponders},
			prefix: "client: refused by the server: forbidden: ",
		},
		{
			name: "forbidden publish",
			do: func(c *Conn) error {
				if err := c.Publish("events.secret.x", []byte("x")); err != nil {
					return err
				}
				if err := c.Flush(t.Context()); err != nil {
					return err
				}
				return c.AsyncErr()
			},
			once:   []string{"client:", "refused by the server", "forbidden", "not in the ACL", `"events.secret.x"`},
			is:     []error{ErrRefused},
			prefix: "client: refused by the server: forbidden: ",
		},
		{
			name: "forbidden subscribe",
			do: func(c *Conn) error {
				_, err := c.Subscribe(t.Context(), "events.secret.#", 1)
				return err
			},
			once:   []string{"refused by the server", "forbidden", "not in the ACL", `"events.secret.#"`},
			is:     []error{ErrRefused},
			prefix: "client: ",
		},
		{
			name: "subscription limit",
			do: func(c *Conn) error {
				for _, p := range []string{"events.a.#", "events.b.#", "events.c.#"} {
					if _, err := c.Subscribe(t.Context(), p, 1); err != nil {
						return err
					}
				}
				return nil
			},
			once:   []string{"refused by the server", "limit of 2 subscriptions"},
			is:     []error{ErrRefused},
			prefix: "client: ",
		},
		{
			name: "token refused at the handshake",
			do: func(*Conn) error {
				c, err := Dial(t.Context(), "unix://"+path, Options{Token: "not-enabled", NoReconnect: true})
				if err == nil {
					c.Close()
				}
				return err
			},
			once:   []string{"client:", "refused by the server"},
			is:     []error{ErrRefused},
			prefix: "client: refused by the server: ",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialT(t, path)
			err := tt.do(c)
			if err == nil {
				t.Fatal("no error")
			}
			text := err.Error()
			t.Logf("%s", text)
			for _, phrase := range tt.once {
				if n := strings.Count(text, phrase); n != 1 {
					t.Errorf("%q says %q %d times, want once", text, phrase, n)
				}
			}
			for _, bad := range []string{": server: ", ": eventbus: ", ": topic: ", ": wire: "} {
				if strings.Contains(text, bad) {
					t.Errorf("%q carries the server's package prefix %q", text, bad)
				}
			}
			if !strings.HasPrefix(text, tt.prefix) {
				t.Errorf("%q does not start with %q", text, tt.prefix)
			}
			for _, s := range tt.is {
				if !errors.Is(err, s) {
					t.Errorf("errors.Is(%q, %v) = false", text, s)
				}
			}
			for _, s := range tt.isNot {
				if errors.Is(err, s) {
					t.Errorf("errors.Is(%q, %v) = true", text, s)
				}
			}
		})
	}
}

// TestDisconnectSaysWhyOnce: when the broker goes away or closes the
// connection with a reason, what fails with ErrDisconnected (a request in
// flight, the Conn itself) says once that it was disconnected and once
// why.
func TestDisconnectSaysWhyOnce(t *testing.T) {
	tests := []struct {
		name string
		// start returns the broker's address and a function that makes
		// it drop the connection, once the request is in flight.
		start func(t *testing.T) (addr string, drop func())
		once  []string
	}{
		{
			name: "the broker shuts down",
			start: func(t *testing.T) (string, func()) {
				path := filepath.Join(t.TempDir(), "eventbus.sock")
				srv, _, _ := testbroker.StartAt(t, path, server.Options{Logger: testLogger()}, nil)
				return "unix://" + path, func() {
					if err := srv.Shutdown(t.Context()); err != nil {
						t.Error(err)
					}
				}
			},
			once: []string{"client:", "disconnected from the broker", "going away", "shutting down"},
		},
		{
			name:  "the broker closes with a reason",
			start: closingBroker,
			once:  []string{"client:", "disconnected from the broker", "closed the connection", "outbound buffer reached"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr, drop := tt.start(t)
			lost := make(chan error, 1)
			c, err := Dial(t.Context(), addr, Options{NoReconnect: true, OnDisconnect: func(err error) { lost <- err }})
			if err != nil {
				t.Fatal(err)
			}
			drop()
			var why error
			select {
			case why = <-lost:
			case <-time.After(5 * time.Second):
				t.Fatal("the Conn did not notice it lost the broker")
			}
			c.Close()
			for _, e := range []error{why, c.Err()} {
				if e == nil {
					t.Fatal("no error after the broker went away")
				}
				text := e.Error()
				t.Logf("%s", text)
				if !errors.Is(e, ErrDisconnected) {
					t.Errorf("errors.Is(%q, ErrDisconnected) = false", text)
				}
				for _, phrase := range tt.once {
					if n := strings.Count(text, phrase); n != 1 {
						t.Errorf("%q says %q %d times, want once", text, phrase, n)
					}
				}
			}
		})
	}
}

// TestRequestSaysDisconnectedOnce: a request waiting when the broker
// shuts down fails with ErrDisconnected said once, and the topic named.
func TestRequestSaysDisconnectedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "eventbus.sock")
	srv, _, _ := testbroker.StartAt(t, path, server.Options{Logger: testLogger()}, nil)
	svc, err := Dial(t.Context(), "unix://"+path, Options{NoReconnect: true})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	got := make(chan struct{})
	if _, err := svc.SubscribeFunc(t.Context(), "control.slow.svc", SubscribeOptions{}, func(*Msg) { close(got) }); err != nil {
		t.Fatal(err)
	}
	c, err := Dial(t.Context(), "unix://"+path, Options{NoReconnect: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	reqErr := make(chan error, 1)
	go func() {
		_, err := c.Request(t.Context(), "control.slow.svc", []byte("x"))
		reqErr <- err
	}()
	select {
	case <-got: // the request is with the service, which never answers
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not reach the service")
	}
	if err := srv.Shutdown(t.Context()); err != nil {
		t.Fatal(err)
	}
	select {
	case err = <-reqErr:
	case <-time.After(5 * time.Second):
		t.Fatal("the request still waits after the broker went away")
	}
	text := err.Error()
	t.Logf("%s", text)
	if !errors.Is(err, ErrDisconnected) {
		t.Errorf("errors.Is(%q, ErrDisconnected) = false", text)
	}
	for _, phrase := range []string{"client:", "disconnected from the broker", "going away", `"control.slow.svc"`} {
		if n := strings.Count(text, phrase); n != 1 {
			t.Errorf("%q says %q %d times, want once", text, phrase, n)
		}
	}
}

// closingBroker listens on a UNIX socket, welcomes one client, and when
// told to, sends it a slow-consumer error frame for the connection and
// closes it, as a broker does with a client that stopped reading.
func closingBroker(t *testing.T) (string, func()) {
	path := filepath.Join(t.TempDir(), "eventbus.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted := make(chan net.Conn, 1)
	go func() {
		nc, err := l.Accept()
		if err != nil {
			close(accepted)
			return
		}
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		magic := make([]byte, len(wire.Magic))
		if _, err := io.ReadFull(nc, magic); err != nil {
			nc.Close()
			close(accepted)
			return
		}
		if _, err := wire.NewReader(nc, 0).ReadFrame(); err != nil { // the hello
			nc.Close()
			close(accepted)
			return
		}
		nc.Write(wire.AppendWelcome(nil, &wire.Welcome{Version: wire.Current, SessionID: []byte("s1"), Identity: []byte("uid:test"), MaxPayload: 1 << 20, PingIntervalMs: 30000}))
		accepted <- nc
	}()
	return "unix://" + path, func() {
		nc, ok := <-accepted
		if !ok {
			t.Fatal("the fake broker did not welcome the client")
		}
		nc.Write(wire.AppendError(nil, wire.TypeError, &wire.ErrorBody{Code: wire.CodeSlowConsumer,
			Text: []byte("your outbound buffer reached the server's MaxPending limit and a subscription's overflow policy is disconnect")}))
		nc.Close()
	}
}
