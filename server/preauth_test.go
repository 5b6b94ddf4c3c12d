package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/protocol/wire"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
	"github.com/daemoneye/daemoneye/topics"
)

// raiseNoFile lifts the soft RLIMIT_NOFILE to at least n (within the hard
// limit), for tests that hold many sockets at both ends.
func raiseNoFile(t *testing.T, n uint64) {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur >= n {
		return
	}
	if lim.Max < n {
		t.Skipf("RLIMIT_NOFILE hard limit %d is below the %d this test needs", lim.Max, n)
	}
	lim.Cur = n
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
}

// holdSilent opens n connections with dial that never send a byte, and
// closes them at the end of the test.
func holdSilent(t *testing.T, n int, dial func() (net.Conn, error)) {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, nc := range conns {
			nc.Close()
		}
	})
	for range n {
		nc, err := dial()
		if err != nil {
			t.Fatalf("silent connection %d: %v", len(conns)+1, err)
		}
		conns = append(conns, nc)
	}
}

// waitAccepted waits until the server has accepted (or refused) n
// connections beyond those it had before.
func waitAccepted(t *testing.T, srv *Server, n int) Stats {
	t.Helper()
	var st Stats
	wait.For(t, 30*time.Second, fmt.Sprintf("the server to take %d connections", n), func() error {
		st = srv.Stats()
		if got := st.Handshaking + int(st.RefusedPreAuth+st.RefusedConns); got < n {
			return fmt.Errorf("only %d handshaking + %d refused", st.Handshaking, st.RefusedPreAuth+st.RefusedConns)
		}
		return nil
	})
	return st
}

// requestStats asks for the stats over a fresh UNIX socket connection, as
// daemoneye-cli stats does, and returns them and the reply's size.
func requestStats(t *testing.T, path string) (Stats, int) {
	t.Helper()
	c := dial(t, path)
	defer c.nc.Close()
	c.send(subscribeFrame(1, "control.inbox.stats.+"))
	c.sync()
	c.send(wire.AppendPublish(nil, &wire.Publish{Topic: []byte(topics.BrokerStats), Reply: []byte("control.inbox.stats.1")}))
	d := c.deliver()
	var st Stats
	if err := json.Unmarshal(d.Payload, &st); err != nil {
		t.Fatalf("stats reply: %v", err)
	}
	return st, len(d.Payload)
}

// With 1,100 silent TCP connections held against a server with the
// broker's limit of 1024, the operator's stats over the UNIX socket get
// through 5 times of 5.
func TestSilentTCPDoesNotLockOutOperator(t *testing.T) {
	raiseNoFile(t, 4096)
	const silent = 1100
	ep := startAll(t, Options{MaxConns: 1024, HandshakeTimeout: time.Minute, Auth: Auth{Tokens: testTokens}})
	holdSilent(t, silent, func() (net.Conn, error) { return net.DialTimeout("tcp", ep.tcp, 10*time.Second) })
	st := waitAccepted(t, ep.srv, silent)
	if st.Handshaking > DefaultMaxPreAuth || st.RefusedPreAuth < silent-DefaultMaxPreAuth {
		t.Errorf("handshaking %d, refused at MaxPreAuth %d: want at most %d handshaking, the rest refused", st.Handshaking, st.RefusedPreAuth, DefaultMaxPreAuth)
	}
	for i := range 5 {
		start := time.Now()
		requestStats(t, ep.unix)
		t.Logf("stats %d of 5 in %s", i+1, time.Since(start))
	}
	// A refused TCP client is told why.
	c := rawDialTCP(t, ep.tcp)
	c.expectError(wire.CodeLimit, "have not authenticated yet (its MaxPreAuth limit): try again in a moment")
}

// Silent connections of the operator's own uid take no slot: they cannot
// lock out the operator (nor anyone else). A process running as root or
// as the server's user can stop the server anyway; what bounds these
// connections is the handshake timeout (and the process's file limit).
func TestSilentUnixPeersDoNotLockOutOperator(t *testing.T) {
	raiseNoFile(t, 4096)
	path, srv, _ := start(t, Options{MaxConns: 16, MaxPreAuth: 4, HandshakeTimeout: time.Minute})
	const silent = 100
	holdSilent(t, silent, func() (net.Conn, error) { return net.Dial("unix", path) })
	if st := waitAccepted(t, srv, silent); st.Handshaking != silent || st.RefusedPreAuth != 0 {
		t.Errorf("handshaking %d, refused %d: want all %d silent operator connections handshaking", st.Handshaking, st.RefusedPreAuth, silent)
	}
	for range 5 {
		requestStats(t, path)
	}
}

// A connection silent past HandshakeTimeout is told so and closed, and
// its MaxPreAuth slot is free again.
func TestHandshakeTimeoutFreesPreAuthSlot(t *testing.T) {
	ep := startAll(t, Options{MaxPreAuth: 1, HandshakeTimeout: 300 * time.Millisecond, Auth: Auth{Tokens: testTokens}})
	silent := rawDialTCP(t, ep.tcp)
	silent.expectError(wire.CodeTimeout, "")
	silent.expectClosed()
	// The slot is free once the server has closed its end, just after
	// the client sees the close.
	wait.For(t, 10*time.Second, "a welcome on the freed slot", func() error {
		if id, refusal := tokenAttempt(t, ep.tcp, nil, opsSecret); id != "token:ops" {
			return fmt.Errorf("refused: %q", refusal)
		}
		return nil
	})
}

// countingHandler counts WARN records about failed authentication, by
// source.
type countingHandler struct {
	mu       sync.Mutex
	lines    map[string]int
	failures map[string]int64
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *countingHandler) WithGroup(string) slog.Handler            { return h }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Level != slog.LevelWarn || r.Message != "authentication failed" {
		return nil
	}
	var source string
	var failures int64
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "source":
			source = a.Value.String()
		case "failures":
			failures = a.Value.Int64()
		}
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lines[source]++
	h.failures[source] += failures
	return nil
}

// tokenAttempt connects over plaintext TCP from local (nil: any), sends a
// token, and returns the identity welcomed or the refusal: an error
// frame's text, or the read error.
func tokenAttempt(t *testing.T, addr string, local net.IP, secret string) (identity, refusal string) {
	t.Helper()
	d := net.Dialer{Timeout: 3 * time.Second}
	if local != nil {
		d.LocalAddr = &net.TCPAddr{IP: local}
	}
	nc, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	// A connection refused at accept may be closed before the hello is
	// written: the refusal is read all the same.
	nc.Write(append(wire.Magic[:], wire.AppendHello(nil, &wire.Hello{
		Versions: []wire.Version{wire.Current}, AuthMethod: wire.AuthToken, Credential: []byte(secret), ClientName: []byte("auth-test"),
	})...))
	f, err := wire.NewReader(nc, 0).ReadFrame()
	if err != nil {
		return "", err.Error()
	}
	if f.Type == wire.TypeWelcome {
		w, _ := wire.ParseWelcome(f.Flags, f.Body)
		return string(w.Identity), ""
	}
	e, _ := wire.ParseError(f.Type, f.Flags, f.Body)
	return "", fmt.Sprintf("code %d: %s", e.Code, e.Text)
}

// Token guesses from one source are throttled after authBurst failures,
// and refused unchecked (even the right token); a client from another
// source is not slowed. The failures are logged at WARN, one line per
// source per authLogInterval.
func TestTokenGuessingThrottled(t *testing.T) {
	h := &countingHandler{lines: map[string]int{}, failures: map[string]int64{}}
	ep := startAll(t, Options{Auth: Auth{Tokens: testTokens}, Logger: slog.New(h)})
	attacker := net.IPv4(127, 0, 0, 2)
	start := time.Now()
	const guesses = 40
	throttled := 0
	for i := range guesses {
		id, refusal := tokenAttempt(t, ep.tcp, attacker, fmt.Sprintf("guess-%04d-0123456789abcdef0123456789", i))
		switch {
		case id != "":
			t.Fatalf("guess %d welcomed as %s", i, id)
		case strings.Contains(refusal, "too many failed authentications from 127.0.0.2: try again in"):
			throttled++
		case !strings.Contains(refusal, "not one this broker knows"):
			t.Fatalf("guess %d refused with %q", i, refusal)
		}
	}
	elapsed := time.Since(start)
	// At most authBurst guesses, plus one per authRefill elapsed, were
	// checked.
	if checked := guesses - throttled; checked > authBurst+int(elapsed/authRefill)+1 {
		t.Errorf("%d of %d guesses checked in %s; want at most %d plus one a second", checked, guesses, elapsed, authBurst)
	}
	if _, refusal := tokenAttempt(t, ep.tcp, attacker, opsSecret); !strings.Contains(refusal, "too many failed") && elapsed < authRefill {
		t.Errorf("the right token from a throttled source: %q, want refused unchecked", refusal)
	}
	// Another source is not slowed.
	for range 3 {
		if id, refusal := tokenAttempt(t, ep.tcp, net.IPv4(127, 0, 0, 1), opsSecret); id != "token:ops" {
			t.Fatalf("good client from 127.0.0.1: refused with %q", refusal)
		}
	}
	// The operator's peer credentials are never throttled.
	dial(t, ep.unix)

	elapsed = time.Since(start)
	st := ep.srv.Stats()
	if st.AuthFailures != guesses+1 || st.AuthThrottled == 0 {
		t.Errorf("stats: %d auth failures, %d throttled; want %d, some throttled", st.AuthFailures, st.AuthThrottled, guesses+1)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if n, max := h.lines["127.0.0.2"], 1+int(elapsed/authLogInterval); n < 1 || n > max {
		t.Errorf("%d WARN lines for 127.0.0.2 in %s, want 1 to %d", n, elapsed, max)
	}
	if h.lines["127.0.0.1"] != 0 {
		t.Errorf("%d WARN lines for the good client's source", h.lines["127.0.0.1"])
	}
}

// The guard's bucket and log limits, on a fake clock.
func TestAuthGuard(t *testing.T) {
	h := &countingHandler{lines: map[string]int{}, failures: map[string]int64{}}
	g := newAuthGuard(slog.New(h))
	now := time.Unix(1e9, 0)
	g.now = func() time.Time { return now }
	flushes := 0
	g.after = func(time.Duration, func()) *time.Timer { flushes++; return time.NewTimer(time.Hour) } // the test calls flush
	defer g.stop()
	why := errors.New("bad token")
	for i := range authBurst {
		if w := g.wait("a"); w != 0 {
			t.Fatalf("failure %d: wait %s, want 0 within the burst", i, w)
		}
		g.failed("a", true, false, why)
	}
	if w := g.wait("a"); w != authRefill {
		t.Fatalf("after %d failures: wait %s, want %s", authBurst, w, authRefill)
	}
	if w := g.wait("b"); w != 0 {
		t.Fatalf("another source waits %s", w)
	}
	now = now.Add(authRefill)
	if w := g.wait("a"); w != 0 {
		t.Fatalf("after %s: wait %s, want 0", authRefill, w)
	}
	// Peer or certificate failures (token false) take nothing.
	g.failed("a", false, false, why)
	if w := g.wait("a"); w != 0 {
		t.Fatalf("a non-token failure took from the bucket: wait %s", w)
	}
	if h.lines["a"] != 1 || h.failures["a"] != 1 {
		t.Fatalf("%d lines counting %d failures, want the first failure's line only", h.lines["a"], h.failures["a"])
	}
	now = now.Add(authLogInterval)
	g.failed("a", true, false, why)
	if h.lines["a"] != 2 || h.failures["a"] != authBurst+2 {
		t.Fatalf("%d lines counting %d failures, want 2 counting %d", h.lines["a"], h.failures["a"], authBurst+2)
	}
	// Failures that stop within the interval are logged when it ends.
	now = now.Add(time.Second)
	g.failed("a", true, false, why)
	g.failed("a", true, false, why)
	if h.lines["a"] != 2 || flushes == 0 {
		t.Fatalf("%d lines, %d flushes scheduled; want the failures held back and a flush scheduled", h.lines["a"], flushes)
	}
	now = now.Add(authLogInterval)
	g.flush()
	if h.lines["a"] != 3 || h.failures["a"] != authBurst+4 {
		t.Fatalf("after flush: %d lines counting %d failures, want 3 counting %d", h.lines["a"], h.failures["a"], authBurst+4)
	}
	// The table of sources is bounded: beyond it, sources share a bucket.
	for i := range 2 * maxAuthSources {
		g.failed(fmt.Sprint("10.0.", i/256, ".", i%256), true, false, why)
	}
	if n := len(g.sources); n > maxAuthSources+1 {
		t.Errorf("%d sources tracked, want at most %d", n, maxAuthSources+1)
	}
	if g.sources[sharedSource] == nil {
		t.Error("no shared bucket for the sources beyond the table")
	}
	// Sources idle long enough are forgotten to make room.
	now = now.Add(2 * authLogInterval)
	g.failed("fresh", true, false, why)
	if g.sources["fresh"] == nil || len(g.sources) > maxAuthSources+1 {
		t.Errorf("fresh source tracked: %v, %d sources; want idle ones forgotten to make room", g.sources["fresh"] != nil, len(g.sources))
	}
}

// A server refuses secrets that are too short or patterned, and says how
// to make a good one.
func TestShortTokenRefused(t *testing.T) {
	b, err := eventbus.New(eventbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, secret := range []string{"0123456789abcdef", "s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t-"} {
		_, err := New(Options{Broker: b, Auth: Auth{Tokens: []Token{{"ci", secret}}}})
		if !errors.Is(err, ErrAuthConfig) || !strings.Contains(err.Error(), "openssl rand -hex 32") {
			t.Errorf("New with secret %q: %v, want ErrAuthConfig with advice", secret, err)
		}
	}
}

// A stats reply fits the payload limit however many connections, topics
// and subscriptions there are, and however long their names.
func TestStatsEncodeFits(t *testing.T) {
	long := strings.Repeat("n", 4000)
	var full Stats
	for i := range 10000 {
		full.Connections = append(full.Connections, ConnStats{Session: fmt.Sprintf("%016x", i), Identity: "token:" + long, Client: long, Remote: "127.0.0.1:1234", Pending: i})
		full.Broker.Topics = append(full.Broker.Topics, eventbus.TopicStats{Topic: fmt.Sprint("events.t", i, long), Published: uint64(i)})
		full.Broker.Subscriptions = append(full.Broker.Subscriptions, eventbus.SubscriptionStats{Subscriber: long, Pattern: long, Delivered: uint64(i)})
	}
	for _, limit := range []int{1 << 20, 64 << 10, 4 << 10} {
		st := full
		st.Connections = append([]ConnStats(nil), full.Connections...)
		st.Broker.Topics = append([]eventbus.TopicStats(nil), full.Broker.Topics...)
		st.Broker.Subscriptions = append([]eventbus.SubscriptionStats(nil), full.Broker.Subscriptions...)
		body, err := st.encode(limit)
		if err != nil || len(body) > limit {
			t.Fatalf("limit %d: %d bytes, %v", limit, len(body), err)
		}
		var got Stats
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		if len(got.Connections)+got.ConnectionsOmitted != 10000 || len(got.Broker.Topics)+got.TopicsOmitted != 10000 ||
			len(got.Broker.Subscriptions)+got.SubscriptionsOmitted != 10000 {
			t.Errorf("limit %d: listed+omitted: %d+%d connections, %d+%d topics, %d+%d subscriptions; want 10000 each", limit,
				len(got.Connections), got.ConnectionsOmitted, len(got.Broker.Topics), got.TopicsOmitted, len(got.Broker.Subscriptions), got.SubscriptionsOmitted)
		}
		if len(got.Connections) > 0 && (got.Connections[0].Pending != 9999 || len(got.Connections[0].Client) > maxStatsString) {
			t.Errorf("limit %d: first connection %d pending, client %d bytes; want the busiest, cut", limit, got.Connections[0].Pending, len(got.Connections[0].Client))
		}
	}
	if _, err := (&Stats{}).encode(10); !errors.Is(err, ErrStatsTooLarge) {
		t.Errorf("encode within 10 bytes: %v, want ErrStatsTooLarge", err)
	}
}

func TestClientName(t *testing.T) {
	tests := []struct{ in, want string }{
		{"daemoneye-cli", "daemoneye-cli"},
		{"", ""},
		{"bell\a and \x1b[2J", "bell? and ?[2J"},
		{"bad \xff utf-8", "bad ? utf-8"},
		{strings.Repeat("x", 64), strings.Repeat("x", 64)},
		{strings.Repeat("x", 65), strings.Repeat("x", 61) + "…"},
		{strings.Repeat("é", 40), strings.Repeat("é", 30) + "…"},
	}
	for _, tt := range tests {
		if got := clientName([]byte(tt.in)); got != tt.want || len(got) > MaxClientName {
			t.Errorf("clientName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// Twenty clients with 60 KB names (over 1 MiB in all): the stats reply
// still comes, and lists the names cut to MaxClientName.
func TestStatsWithLongClientNames(t *testing.T) {
	path, _, _ := start(t, Options{})
	for i := range 20 {
		c := rawDial(t, path)
		c.send(wire.Magic[:])
		c.send(wire.AppendHello(nil, &wire.Hello{Versions: []wire.Version{wire.Current}, ClientName: []byte(fmt.Sprint(i, strings.Repeat("n", 60<<10)))}))
		if f := c.frame(); f.Type != wire.TypeWelcome {
			t.Fatalf("got %s, want welcome", f.Type)
		}
	}
	st, size := requestStats(t, path)
	if len(st.Connections) != 21 {
		t.Errorf("%d connections listed, want 21", len(st.Connections))
	}
	for _, c := range st.Connections {
		if len(c.Client) > MaxClientName {
			t.Errorf("client name of %d bytes listed", len(c.Client))
		}
	}
	t.Logf("stats reply: %d bytes", size)
}

// A client refused at accept that has already sent its hello still reads
// the error frame, rather than a connection reset.
func TestRefusalReadAfterHello(t *testing.T) {
	ep := startAll(t, Options{MaxPreAuth: 1, HandshakeTimeout: time.Minute, Auth: Auth{Tokens: testTokens}})
	rawDialTCP(t, ep.tcp) // silent: holds the one slot
	waitAccepted(t, ep.srv, 1)
	for i := range 50 {
		if _, refusal := tokenAttempt(t, ep.tcp, nil, opsSecret); !strings.Contains(refusal, "MaxPreAuth") {
			t.Fatalf("attempt %d: %q, want the MaxPreAuth refusal", i, refusal)
		}
	}
}

// socketPair returns the two ends of a connected UNIX socket pair.
func socketPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var ends [2]net.Conn
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		nc, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		ends[i] = nc
	}
	return ends[0], ends[1]
}

// ServeConn serves a connection as the identity it is given, without
// checking credentials and outside MaxConns; after Close it closes what
// it is handed.
func TestServeConn(t *testing.T) {
	ep := startAll(t, Options{MaxConns: 1, Auth: Auth{Tokens: testTokens}})
	full := rawDialTCP(t, ep.tcp)
	full.hello(wire.AuthToken, opsSecret)
	full.expectWelcome() // MaxConns is reached

	mine, theirs := socketPair(t)
	ep.srv.ServeConn(mine, "token:procmond")
	c := &client{t: t, nc: theirs, r: wire.NewReader(theirs, 0)}
	t.Cleanup(func() { theirs.Close() })
	c.hello(wire.AuthToken, "not checked")
	if id := c.expectWelcome(); id != "token:procmond" {
		t.Errorf("identity %q, want token:procmond", id)
	}
	c.sync()

	ep.srv.Close()
	mine, theirs = socketPair(t)
	defer theirs.Close()
	ep.srv.ServeConn(mine, "token:late")
	c = &client{t: t, nc: theirs, r: wire.NewReader(theirs, 0)}
	c.expectClosed()
}

// holdSilentChild runs in a child process (as another user): it opens
// connections to the socket at path until one fails or 100 are open,
// prints how many it holds, and holds them until its standard input ends.
func holdSilentChild(path string) int {
	var conns []net.Conn
	for len(conns) < 100 {
		nc, err := net.Dial("unix", path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			break
		}
		conns = append(conns, nc)
	}
	fmt.Println("holding", len(conns))
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// Silent UNIX connections of another user (a process of uid 65534, which
// the server does not even admit) take at most MaxPreAuth slots and none
// of MaxConns: the operator still gets through. As in the agent: MaxConns
// 64, held by 100 connections on main.
func TestOtherUsersSilentUnixConnections(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root, to run a process as another user")
	}
	raiseNoFile(t, 4096)
	dir, err := os.MkdirTemp("", "daemoneye-preauth-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The test binary and the socket, reachable by the other user.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "server.test")
	data, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := eventbus.New(eventbus.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Options{Broker: b, MaxConns: 64, HandshakeTimeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o777); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() { srv.Close(); <-served; b.Close() })

	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(), "DAEMONEYE_TEST_HOLD_SILENT="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })
	var held int
	if _, err := fmt.Fscanf(out, "holding %d\n", &held); err != nil || held != 100 {
		t.Fatalf("the other user's process holds %d connections (%v), want 100", held, err)
	}
	st := waitAccepted(t, srv, held)
	if st.Handshaking != DefaultMaxPreAuth || st.RefusedPreAuth != uint64(held-DefaultMaxPreAuth) {
		t.Errorf("handshaking %d, refused at MaxPreAuth %d; want %d and %d", st.Handshaking, st.RefusedPreAuth, DefaultMaxPreAuth, held-DefaultMaxPreAuth)
	}
	for range 5 {
		requestStats(t, path)
	}
}
