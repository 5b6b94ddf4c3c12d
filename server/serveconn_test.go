package server_test

import (
	"strings"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/internal/testutil/testproc"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
	"github.com/daemoneye/daemoneye/server"
)

// serveConfined hands srv one end of a socketpair as identity and returns
// a client on the other end.
func serveConfined(t *testing.T, srv *server.Server, identity string, opts client.Options) *client.Conn {
	t.Helper()
	mine, theirs := testproc.Socketpair(t)
	if err := srv.ServeConn(mine, identity); err != nil {
		t.Fatal(err)
	}
	c, err := client.DialConn(t.Context(), theirs, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A connection handed over with ServeConn has the identity it was given,
// whatever its hello offers (TestServeConn checks that it takes no slot
// of MaxConns).
func TestServeConnIdentityWithoutASlot(t *testing.T) {
	_, srv, _ := testbroker.Start(t, server.Options{MaxConns: 1})
	c := serveConfined(t, srv, "collector:x", client.Options{Token: "a-token-the-broker-never-heard-of-0123456789"})
	if id := c.Identity(); id != "collector:x" {
		t.Errorf("identity %q, want collector:x", id)
	}
	if err := c.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	bad, other := testproc.Socketpair(t)
	defer other.Close()
	if err := srv.ServeConn(bad, "no-kind"); err == nil || !strings.Contains(err.Error(), "kind:name") {
		t.Errorf("ServeConn with a bad identity: %v", err)
	}
}

// A confined identity answers only the requests delivered to it, once;
// it cannot read another identity's inbox nor forge replies into it; it
// receives on its own inbox. Every refusal is counted.
func TestConfinedResponses(t *testing.T) {
	acl := &server.ACL{Grants: map[string]server.Grant{
		"collector:x": {Subscribe: []string{"control.collector.+.x"}, Request: []string{"control.agent.tasks"}, Respond: true},
	}}
	if err := acl.Validate(); err != nil {
		t.Fatal(err)
	}
	_, srv, b := testbroker.Start(t, server.Options{Authorizer: acl})
	agent, err := client.Connect(b, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer agent.Close()
	col := serveConfined(t, srv, "collector:x", client.Options{})
	reqs, err := col.Subscribe(t.Context(), "control.collector.health.x", 4)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		m   *client.Msg
		err error
	}
	replied := make(chan result, 1)
	go func() {
		m, err := agent.Request(t.Context(), "control.collector.health.x", []byte("ping"))
		replied <- result{m, err}
	}()
	var req client.Msg
	select {
	case req = <-reqs.C():
	case <-time.After(10 * time.Second):
		t.Fatal("no request within 10 s")
	}
	inbox := req.Reply[:strings.LastIndexByte(req.Reply, '.')]
	for _, p := range []string{inbox + ".+", "control.inbox.#", "control.inbox.+.+"} {
		if _, err := col.Subscribe(t.Context(), p, 1); err == nil || !strings.Contains(err.Error(), "forbidden") {
			t.Errorf("subscribing to %s: %v, want forbidden", p, err)
		}
	}
	forged := func(topic string) {
		t.Helper()
		if err := col.Publish(topic, []byte("forged")); err != nil {
			t.Fatal(err)
		}
		col.Flush(t.Context())
		if err := col.AsyncErr(); err == nil || !strings.Contains(err.Error(), "forbidden") {
			t.Errorf("publishing to %s: %v, want forbidden", topic, err)
		}
	}
	forged(inbox + ".999999") // a reply to a request it never saw
	if err := col.Respond(&req, []byte("pong")); err != nil {
		t.Fatal(err)
	}
	r := <-replied
	if r.err != nil || string(r.m.Payload) != "pong" {
		t.Fatalf("the answer: %v, %v", r.m, r.err)
	}
	forged(req.Reply) // a second answer
	// A request whose reply topic is not an inbox gives no permission:
	// answering it would publish where the grant does not allow.
	if err := agent.PublishMsg(&client.Msg{Topic: "control.collector.health.x", Reply: "events.alert.high", Payload: []byte("steer")}); err != nil {
		t.Fatal(err)
	}
	var steer client.Msg
	select {
	case steer = <-reqs.C():
	case <-time.After(10 * time.Second):
		t.Fatal("no request within 10 s")
	}
	if err := col.Respond(&steer, []byte("forged alert")); err != nil {
		t.Fatal(err)
	}
	col.Flush(t.Context())
	if err := col.AsyncErr(); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("answering on %s: %v, want forbidden", steer.Reply, err)
	}
	// Its own inbox, bound to its identity, works.
	if _, err := agent.SubscribeFunc(t.Context(), "control.agent.tasks", client.SubscribeOptions{}, func(m *client.Msg) {
		agent.Respond(m, []byte("task"))
	}); err != nil {
		t.Fatal(err)
	}
	if m, err := col.Request(t.Context(), "control.agent.tasks", nil); err != nil || string(m.Payload) != "task" {
		t.Errorf("a request on its own inbox: %v, %v", m, err)
	}
	if st := srv.Stats(); st.DeniedPublishes != 3 || st.DeniedSubscribes != 3 {
		t.Errorf("denied %d publishes and %d subscribes, want 3 and 3", st.DeniedPublishes, st.DeniedSubscribes)
	}
}

// When the connection handed over breaks, the client does not try to
// dial it again: it ends, and says so.
func TestDialConnEndsWhenTheConnectionBreaks(t *testing.T) {
	_, srv, _ := testbroker.Start(t, server.Options{})
	lost := make(chan error, 1)
	c := serveConfined(t, srv, "collector:x", client.Options{OnDisconnect: func(err error) { lost <- err }})
	srv.Close()
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("no disconnect within 10 s")
	}
	wait.Until(t, 15*time.Second, "the Conn ends", func() bool { return c.Err() != nil })
	if err := c.Publish("events.x", nil); err == nil {
		t.Error("publish on an ended Conn succeeded")
	}
}
