package server_test

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/server"
	"github.com/daemoneye/daemoneye/topic"
)

// appPolicy is a broker's own topic policy: the domains app and control.
func appPolicy() *topic.Policy { return &topic.Policy{Domains: []string{"app", "control"}} }

const wideToken = "wide-token-0123456789abcdef0123456789abcdef"

// startAppBroker serves a broker with appPolicy on a UNIX socket, under a
// plain *ACL without a Policy: the local user may publish and subscribe
// within app.# and answer requests; token:wide may do anything the ACL
// can grant ("#").
func startAppBroker(t *testing.T) (path string, b *eventbus.Broker, acl *server.ACL) {
	t.Helper()
	b, err := eventbus.New(eventbus.Options{Policy: appPolicy()})
	if err != nil {
		t.Fatal(err)
	}
	acl = &server.ACL{Grants: map[string]server.Grant{
		"uid:" + strconv.Itoa(os.Getuid()): {Publish: []string{"app.#"}, Subscribe: []string{"app.#"}, Respond: true},
		"token:wide":                       {Publish: []string{"#"}, Subscribe: []string{"#"}},
	}}
	path, _, _ = testbroker.Start(t, server.Options{Broker: b, Authorizer: acl,
		Auth: server.Auth{Tokens: []server.Token{{Name: "wide", Secret: wideToken}}}})
	return path, b, acl
}

// TestBrokerPolicyAcrossTransports: with a broker whose policy has the
// domains app and control, publish, subscribe and request on app. topics
// work between Conns from client.Connect and Conns over the UNIX socket
// (with client.Options.Policy set), the latter under ACL grants on app.#.
func TestBrokerPolicyAcrossTransports(t *testing.T) {
	path, b, acl := startAppBroker(t)
	if acl.Policy != nil {
		t.Errorf("server.New set the caller's ACL.Policy; it should use a copy")
	}
	conn := func(t *testing.T, tr string) *client.Conn {
		t.Helper()
		var c *client.Conn
		var err error
		if tr == "connect" {
			c, err = client.Connect(b, client.Options{Name: "inproc"}) // nil Policy: the broker's
		} else {
			c, err = client.Dial(t.Context(), "unix://"+path, client.Options{Name: "unix", Policy: appPolicy()})
		}
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	for _, tc := range []struct{ service, caller string }{
		{"connect", "connect"},
		{"unix", "unix"},
		{"connect", "unix"},
		{"unix", "connect"},
	} {
		t.Run(tc.service+"<-"+tc.caller, func(t *testing.T) {
			svc, caller := conn(t, tc.service), conn(t, tc.caller)
			sub, err := svc.Subscribe(t.Context(), "app.x", 4)
			if err != nil {
				t.Fatalf("subscribe app.x: %v", err)
			}
			if _, err := svc.SubscribeFunc(t.Context(), "app.svc.+", client.SubscribeOptions{}, func(m *client.Msg) {
				svc.Respond(m, append([]byte("re: "), m.Payload...))
			}); err != nil {
				t.Fatalf("subscribe app.svc.+: %v", err)
			}
			if err := caller.Publish("app.x", []byte("hello")); err != nil {
				t.Fatalf("publish app.x: %v", err)
			}
			if err := caller.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
			if err := caller.AsyncErr(); err != nil {
				t.Fatalf("publish app.x refused: %v", err)
			}
			if m := <-sub.C(); m.Topic != "app.x" || string(m.Payload) != "hello" {
				t.Errorf("received %q %q, want app.x hello", m.Topic, m.Payload)
			}
			r, err := caller.Request(t.Context(), "app.svc.echo", []byte("ping"))
			if err != nil {
				t.Fatalf("request app.svc.echo: %v", err)
			}
			if string(r.Payload) != "re: ping" {
				t.Errorf("reply %q, want %q", r.Payload, "re: ping")
			}
		})
	}
}

// TestBrokerPolicyRefusals: topics outside the broker's policy, or outside
// an identity's grant, are refused with an error that says which rule.
func TestBrokerPolicyRefusals(t *testing.T) {
	path, b, _ := startAppBroker(t)
	dial := func(t *testing.T, opts client.Options) *client.Conn {
		t.Helper()
		c, err := client.Dial(t.Context(), "unix://"+path, opts)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	connect := func(t *testing.T) *client.Conn {
		t.Helper()
		c, err := client.Connect(b, client.Options{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// wider checks more than the broker's policy allows, so that what it
	// sends reaches the server.
	wider := &topic.Policy{Domains: []string{"app", "control", "events"}}
	notDomain := `first segment "events" is not a registered domain (app, control)`
	tests := []struct {
		name string
		conn func(t *testing.T) *client.Conn
		op   string // publish, subscribe or request
		arg  string
		is   error  // what the error wraps
		text string // what it says
	}{
		{"connect publish", connect, "publish", "events.x", topic.ErrInvalidTopic, notDomain},
		{"connect subscribe", connect, "subscribe", "events.#", topic.ErrInvalidPattern, notDomain},
		{"connect request", connect, "request", "events.x", topic.ErrInvalidTopic, notDomain},
		{"unix publish", func(t *testing.T) *client.Conn { return dial(t, client.Options{Policy: appPolicy()}) }, "publish", "events.x", topic.ErrInvalidTopic, notDomain},
		{"unix subscribe", func(t *testing.T) *client.Conn { return dial(t, client.Options{Policy: appPolicy()}) }, "subscribe", "events.#", topic.ErrInvalidPattern, notDomain},
		{"unix request", func(t *testing.T) *client.Conn { return dial(t, client.Options{Policy: appPolicy()}) }, "request", "events.x", topic.ErrInvalidTopic, notDomain},
		// The default policy on the client side does not know app.
		{"unix default policy", func(t *testing.T) *client.Conn { return dial(t, client.Options{}) }, "publish", "app.x", topic.ErrInvalidTopic, `"app" is not a registered domain (events, control)`},
		// The broker's policy on the server's side, past an ACL granting "#".
		{"server publish", func(t *testing.T) *client.Conn { return dial(t, client.Options{Policy: wider, Token: wideToken}) }, "publish", "events.x", client.ErrRefused, notDomain},
		{"server subscribe", func(t *testing.T) *client.Conn { return dial(t, client.Options{Policy: wider, Token: wideToken}) }, "subscribe", "events.#", client.ErrRefused, notDomain},
		// The ACL's grants on app.#, matched with the broker's policy.
		{"acl publish", func(t *testing.T) *client.Conn { return dial(t, client.Options{Policy: appPolicy()}) }, "publish", "control.x", client.ErrRefused, "may publish only to app.#"},
		{"acl subscribe", func(t *testing.T) *client.Conn { return dial(t, client.Options{Policy: appPolicy()}) }, "subscribe", "control.#", client.ErrRefused, "may subscribe only within app.#"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.conn(t)
			var err error
			switch tt.op {
			case "publish":
				if err = c.Publish(tt.arg, nil); err == nil {
					if err = c.Flush(t.Context()); err == nil {
						err = c.AsyncErr()
					}
				}
			case "subscribe":
				_, err = c.Subscribe(t.Context(), tt.arg, 1)
			case "request":
				_, err = c.Request(t.Context(), tt.arg, nil)
			}
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.text) {
				t.Errorf("%s %s: %v; want an error wrapping %v that says %q", tt.op, tt.arg, err, tt.is, tt.text)
			}
		})
	}
}

// TestNewChecksACLWithBrokerPolicy: New refuses a plain *ACL whose grants
// the broker's policy does not accept, naming the grant; an ACL with a
// Policy of its own is checked against that.
func TestNewChecksACLWithBrokerPolicy(t *testing.T) {
	b, err := eventbus.New(eventbus.Options{Policy: appPolicy()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	tests := []struct {
		name string
		acl  *server.ACL
		text string // "": New succeeds
	}{
		{"grants in the policy", &server.ACL{Grants: map[string]server.Grant{"uid:1": {Publish: []string{"app.#"}, Subscribe: []string{"control.inbox.#"}}}}, ""},
		{"grant outside the policy", &server.ACL{Grants: map[string]server.Grant{"uid:1": {Subscribe: []string{"events.#"}}}},
			`the ACL's grant for uid:1: invalid pattern "events.#": first segment "events" is not a registered domain (app, control)`},
		{"default outside the policy", &server.ACL{Default: &server.Grant{Publish: []string{"events.x"}}}, "grant for everyone else"},
		{"own policy", &server.ACL{Policy: &topic.Policy{Domains: []string{"ops"}}, Grants: map[string]server.Grant{"uid:1": {Publish: []string{"app.x"}}}},
			`first segment "app" is not a registered domain (ops)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := server.New(server.Options{Broker: b, Authorizer: tt.acl, NoStatsService: true})
			if tt.text == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				srv.Close()
				return
			}
			if err == nil {
				srv.Close()
				t.Fatalf("New succeeded; want an error saying %q", tt.text)
			}
			if !strings.Contains(err.Error(), tt.text) {
				t.Errorf("New: %v; want it to say %q", err, tt.text)
			}
		})
	}
}
