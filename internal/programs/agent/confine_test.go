package agent

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/envelope"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/protocol/wire"
	"github.com/daemoneye/daemoneye/internal/testutil/testproc"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
	"github.com/daemoneye/daemoneye/rpc"
	"github.com/daemoneye/daemoneye/topics"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// The agent's default policy: operators watch everything and call
// services (the collectors' through the agent), but publish no events,
// alerts or heartbeats, and send nothing on control.collector.*; a collector publishes its own events and heartbeats, receives
// only its own topics and inbox; an ACL entry adds grants but cannot lift
// the agent's reserved topics.
func TestPolicy(t *testing.T) {
	specs := []CollectorSpec{{ID: "procmond", Kind: "procmond"}, {ID: "other", Kind: "procmond"}}
	p, err := newPolicy(specs, ACLFile{
		"uid:4242": {Publish: []string{"events.custom.#", "events.alert.#", "control.health.heartbeat.procmond", "control.collector.#"},
			Request: []string{"control.collector.#", "control.agent.#"}, Subscribe: []string{"control.inbox.abc.+"}},
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	self := "uid:" + strconv.Itoa(os.Getuid())
	const ownInbox = "control.inbox.collector-procmond-0123456789abcdef"
	type check struct {
		identity, op, topic string // op: pub, req (reply: the identity's inbox), sub
		ok                  bool
	}
	var checks []check
	for _, op := range []string{"uid:0", self, "uid:1000"} {
		checks = append(checks,
			check{op, "pub", "events.process.lifecycle", false},
			check{op, "pub", "events.alert.high", false},
			check{op, "pub", "control.health.heartbeat.procmond", false},
			check{op, "req", "control.health.heartbeat.procmond", false},
			check{op, "pub", "control.collector.lifecycle.procmond", false},
			check{op, "req", "control.collector.health.procmond", false},
			check{op, "req", topics.AgentForwardPrefix + "health.procmond", true},
			check{op, "req", "control.agent.collectors", true},
			check{op, "req", "control.broker.stats", true},
			check{op, "req", "events.process.lifecycle", false},
			check{op, "sub", "#", op != "uid:1000"},
		)
	}
	// Users other than root and the agent's watch events and health, and
	// their own inbox, not other identities' replies.
	checks = append(checks,
		check{"uid:1000", "sub", "events.#", true},
		check{"uid:1000", "sub", "control.health.#", true},
		check{"uid:1000", "sub", "control.inbox.#", false},
		check{"uid:1000", "sub", "control.inbox.uid-0-0123456789abcdef.+", false},
		check{"uid:1000", "sub", "control.inbox.uid-1000-0123456789abcdef.+", true},
	)
	checks = append(checks,
		check{"collector:procmond", "pub", "events.process.lifecycle", true},
		check{"collector:procmond", "pub", "events.process.anything.deep", true},
		check{"collector:procmond", "pub", "control.health.heartbeat.procmond", true},
		check{"collector:procmond", "req", "control.agent.coordination", true},
		check{"collector:procmond", "pub", "events.network.connections", false},
		check{"collector:procmond", "pub", "events.alert.high", false},
		check{"collector:procmond", "pub", "control.collector.lifecycle.procmond", false},
		check{"collector:procmond", "pub", "control.health.heartbeat.other", false},
		check{"collector:other", "pub", "control.health.heartbeat.procmond", false},
		check{"collector:procmond", "pub", "control.inbox.abc.7", false},
		check{"collector:procmond", "pub", ownInbox + ".7", false},
		check{"collector:procmond", "sub", "control.collector.+.procmond", true},
		check{"collector:procmond", "sub", "control.agent.tasks.procmond", true},
		check{"collector:procmond", "sub", ownInbox + ".+", true},
		check{"collector:procmond", "sub", "control.inbox.abc.+", false},
		check{"collector:procmond", "sub", "control.inbox.collector-other-0123456789abcdef.+", false},
		check{"collector:procmond", "sub", "control.inbox.+.+", false},
		check{"collector:procmond", "sub", "control.inbox.#", false},
		check{"collector:procmond", "sub", "control.#", false},
		check{"collector:procmond", "sub", "events.#", false},
		check{"collector:procmond", "sub", "control.collector.+.other", false},
		check{"uid:4242", "pub", "events.custom.thing", true},
		check{"uid:4242", "pub", "events.alert.high", false},
		check{"uid:4242", "pub", "control.health.heartbeat.procmond", false},
		check{"uid:4242", "pub", "control.collector.lifecycle.procmond", false},
		check{"uid:4242", "req", "control.collector.health.procmond", false},
		check{"uid:4242", "req", topics.AgentForwardPrefix + "health.procmond", true},
		check{"uid:4242", "sub", "events.#", false},
	)
	for _, c := range checks {
		var err error
		switch c.op {
		case "pub":
			err = p.AllowPublish(c.identity, c.topic)
		case "req":
			reply := topics.InboxPrefix + wire.InboxName(c.identity, "0123456789abcdef") + ".1" // its own inbox
			err = p.AllowRequest(c.identity, c.topic, reply)
		case "sub":
			err = p.AllowSubscribe(c.identity, c.topic)
		}
		if (err == nil) != c.ok {
			t.Errorf("%s %s %s: %v, want allowed=%v", c.identity, c.op, c.topic, err, c.ok)
		}
	}
	if p.ConfinedResponses("collector:procmond") == 0 || p.ConfinedResponses("uid:0") != 0 {
		t.Error("collectors answer only what they were asked; operators are not confined that way")
	}
	if _, err := newPolicy(specs, ACLFile{"root": {}}, 0); err == nil {
		t.Error("an ACL key that is not an identity was accepted")
	}
	if _, err := newPolicy(specs, ACLFile{"uid:1": {Subscribe: []string{"events.*"}}}, 0); err == nil {
		t.Error("an invalid pattern was accepted")
	}
}

// A heartbeat that claims a longer interval than the configured one is
// judged by the configured one: a hung collector cannot claim an hour.
func TestHeartbeatIntervalClamped(t *testing.T) {
	p, _ := newProc(CollectorSpec{ID: "c", Kind: "procmond", Heartbeat: time.Second})
	start := time.Now()
	p.state, p.started = StateRunning, start
	hb := &eventbusv1.Heartbeat{Status: eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY, Interval: durationpb.New(time.Hour)}
	p.heartbeat(clampInterval(hb, p.spec.Heartbeat), start)
	if h := p.status(start.Add(4 * time.Second)).Health; h != HealthUnhealthy {
		t.Errorf("4 s after a heartbeat claiming 1 h, with 1 s configured: %s, want unhealthy", h)
	}
	if hb.GetInterval().AsDuration() != time.Hour {
		t.Error("the shared heartbeat was modified")
	}
	short := &eventbusv1.Heartbeat{Interval: durationpb.New(500 * time.Millisecond)}
	if clampInterval(short, time.Second) != short {
		t.Error("an interval within the configured one was changed")
	}
}

// runRealAgent runs the agent with the real procmond until the test ends.
func runRealAgent(t *testing.T, opts Options) *Agent {
	t.Helper()
	agentBin, _, _ := binaries(t)
	opts.Exe = agentBin
	return runAgent(t, opts)
}

// Over the socket, an operator cannot forge process events, alerts or a
// collector's heartbeats, nor send a collector anything directly; each
// refusal is counted. Calls to a collector go through the agent.
func TestOperatorCannotForge(t *testing.T) {
	a := runRealAgent(t, Options{})
	c, err := client.Dial(t.Context(), a.Socket(), client.Options{NoReconnect: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if !strings.HasPrefix(c.Identity(), "uid:") {
		t.Fatalf("identity %q, want the operator's uid", c.Identity())
	}
	for i, topic := range []string{"events.process.lifecycle", "events.alert.high", "control.health.heartbeat.procmond", "control.collector.lifecycle.procmond"} {
		if err := c.Publish(topic, []byte("forged")); err != nil {
			t.Fatal(err)
		}
		c.Flush(t.Context())
		if err := c.AsyncErr(); err == nil || !strings.Contains(err.Error(), "forbidden") {
			t.Errorf("publishing to %s: %v, want forbidden", topic, err)
		}
		if n := a.srv.Stats().DeniedPublishes; n != uint64(i+1) {
			t.Errorf("after %s: %d denied publishes, want %d", topic, n, i+1)
		}
	}
	wait.Until(t, 15*time.Second, "procmond answering", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err := a.collectors.Health(ctx, "procmond", &eventbusv1.HealthCheckRequest{})
		return err == nil
	})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	// A request straight to procmond: forbidden, and counted.
	_, err = c.Request(ctx, "control.collector.health.procmond", nil)
	if !errors.Is(err, client.ErrRefused) || !strings.Contains(err.Error(), "forbidden") || !strings.Contains(err.Error(), topics.AgentForwardPrefix) {
		t.Errorf("an operator's request straight to procmond: %v, want forbidden, naming the agent's forwarder", err)
	}
	if n := a.srv.Stats().DeniedPublishes; n != 5 {
		t.Errorf("after the direct request: %d denied publishes, want 5", n)
	}
	// Through the agent: procmond's own answer, unchanged.
	rc := rpc.NewClient(c, rpc.ClientOptions{ID: "test"})
	resp, err := rc.Call(ctx, topics.AgentForwardPrefix+"health.procmond", &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_HealthCheck{HealthCheck: &eventbusv1.HealthCheckRequest{}}})
	if err != nil || resp.GetHealthCheck() == nil {
		t.Errorf("a health check through the agent: %v, %v", resp, err)
	}
}

// The agent forwards only to its own collectors and their operations,
// and answers every refusal or failure in the RPC error model, once.
func TestForwardRefusals(t *testing.T) {
	a := runRealAgent(t, Options{})
	c, err := client.Dial(t.Context(), a.Socket(), client.Options{NoReconnect: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	rc := rpc.NewClient(c, rpc.ClientOptions{ID: "test", BreakerFailures: -1})
	health := func() *eventbusv1.RpcRequest {
		return &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_HealthCheck{HealthCheck: &eventbusv1.HealthCheckRequest{}}}
	}
	for _, tc := range []struct {
		topic  string
		target error
		want   string
	}{
		{topics.AgentForwardPrefix + "health.nobody", rpc.ErrNotFound, `the agent runs no collector "nobody" (it runs procmond`},
		{topics.AgentForwardPrefix + "bogus.procmond", rpc.ErrInvalidArgument, "names no collector operation"},
		{topics.AgentForwardPrefix + "health.procmond.extra", rpc.ErrInvalidArgument, "names no collector operation"},
	} {
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		_, err := rc.Call(ctx, tc.topic, health())
		cancel()
		if !errors.Is(err, tc.target) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %v saying %q", tc.topic, err, tc.target, tc.want)
		}
	}
}

// A forward to a collector that is not answering (stopped, restarting)
// says so once, as a retryable UNAVAILABLE error.
func TestForwardNoResponders(t *testing.T) {
	a := runRealAgent(t, Options{})
	in := &client.Msg{Topic: topics.AgentForwardPrefix + "health.procmond", Reply: "control.inbox.test.1"}
	replies, err := a.conn.Subscribe(t.Context(), "control.inbox.test.1", 1)
	if err != nil {
		t.Fatal(err)
	}
	req := &eventbusv1.EventBusMessage{Payload: &eventbusv1.EventBusMessage_RpcRequest{RpcRequest: &eventbusv1.RpcRequestPayload{Request: &eventbusv1.RpcRequest{RequestId: "r1"}}}}
	// A target with no subscriber at all, as when procmond is down.
	a.forwardOne(t.Context(), in, req, "control.collector.health.absent", "absent")
	select {
	case m := <-replies.C():
		env := new(eventbusv1.EventBusMessage)
		if v, ok := envelope.FromValue(m.Value); ok {
			env = v
		} else if err := proto.Unmarshal(m.Payload, env); err != nil {
			t.Fatal(err)
		}
		resp := env.GetRpcResponse().GetResponse()
		e := &rpc.Error{Status: resp.GetStatus(), Detail: resp.GetError()}
		if resp.GetRequestId() != "r1" || !errors.Is(e, rpc.ErrUnavailable) || strings.Count(e.Error(), "no responders") != 1 || !resp.GetError().GetRetryable() {
			t.Errorf("answer %v (%v), want request r1, UNAVAILABLE, retryable, saying no responders once", resp, e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no answer within 10 s")
	}
}

// A connection with a collector's identity cannot read the replies to
// someone else's requests, nor answer a request it was not given; the
// agent ignores a heartbeat published on a collector's topic by anyone
// else.
func TestCollectorConnectionIsConfined(t *testing.T) {
	a := runRealAgent(t, Options{})
	mine, theirs := testproc.Socketpair(t)
	if err := a.srv.ServeConn(mine, CollectorIdentity("procmond")); err != nil {
		t.Fatal(err)
	}
	col, err := client.DialConn(t.Context(), theirs, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer col.Close()
	reqs, err := col.Subscribe(t.Context(), "control.collector.health.procmond", 16)
	if err != nil {
		t.Fatal(err)
	}
	op, err := client.Dial(t.Context(), a.Socket(), client.Options{NoReconnect: true})
	if err != nil {
		t.Fatal(err)
	}
	defer op.Close()
	wait.Until(t, 15*time.Second, "procmond answering", func() bool {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err := op.Request(ctx, topics.AgentForwardPrefix+"health.procmond", nil)
		return err == nil
	})
	m := <-reqs.C() // the agent's forward of the operator's request, seen by the impostor too
	inbox := m.Reply[:strings.LastIndexByte(m.Reply, '.')]
	for _, p := range []string{inbox + ".+", "control.inbox.#"} {
		if _, err := col.Subscribe(t.Context(), p, 1); err == nil || !strings.Contains(err.Error(), "forbidden") {
			t.Errorf("subscribing to %s: %v, want forbidden", p, err)
		}
	}
	if err := col.Publish(inbox+".999999", []byte("forged")); err != nil {
		t.Fatal(err)
	}
	col.Flush(t.Context())
	if err := col.AsyncErr(); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("a forged reply: %v, want forbidden", err)
	}

	// A heartbeat for procmond from another identity: refused, and the
	// agent's view of procmond does not move.
	other, otherEnd := testproc.Socketpair(t)
	if err := a.srv.ServeConn(other, CollectorIdentity("impostor")); err != nil {
		t.Fatal(err)
	}
	imp, err := client.DialConn(t.Context(), otherEnd, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer imp.Close()
	if err := imp.Publish("control.health.heartbeat.procmond", []byte("x")); err != nil {
		t.Fatal(err)
	}
	imp.Flush(t.Context())
	if err := imp.AsyncErr(); err == nil || !strings.Contains(err.Error(), "forbidden") {
		t.Errorf("a heartbeat from another identity: %v, want forbidden", err)
	}
}

// A process with a collector's credentials (its uid, gid and
// capabilities, read from the running procmond) cannot get a welcome on
// the agent's socket: it cannot reach the socket, and is not admitted by
// its peer credentials if it could.
func TestCollectorCredentialsCannotConnect(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the agent confines its collectors to another user only when it runs as root; run as root to test it")
	}
	agentBin, cli, _ := binaries(t)
	a := runAgent(t, Options{Exe: agentBin})
	var pid int
	wait.Until(t, 15*time.Second, "procmond running", func() bool {
		st := a.Statuses()[0]
		pid = st.PID
		return st.State == StateRunning && pid != 0 && st.LastHeartbeat.After(time.Time{})
	})
	cred, caps := procCreds(t, pid)
	if cred.Uid == 0 {
		t.Fatalf("procmond runs as root")
	}
	// The CLI, with the collector's credentials. Its binary lives in a
	// directory only root may search: execute it through a descriptor.
	exe, err := os.Open(cli)
	if err != nil {
		t.Fatal(err)
	}
	defer exe.Close()
	var out bytes.Buffer
	cmd := exec.Command("/proc/self/fd/3", "--socket", a.Socket(), "stats")
	cmd.ExtraFiles = []*os.File{exe}
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, AmbientCaps: caps}
	err = cmd.Run()
	if err == nil {
		t.Fatalf("with procmond's credentials (uid %d, capabilities %x), stats succeeded:\n%s", cred.Uid, caps, out.String())
	}
	if !strings.Contains(out.String(), "permission denied") && !strings.Contains(out.String(), "refused") {
		t.Errorf("the refusal does not say why: %s", out.String())
	}
}

// procCreds reads a process's uid, gid and effective capabilities.
func procCreds(t *testing.T, pid int) (*syscall.Credential, []uintptr) {
	t.Helper()
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cred := &syscall.Credential{Groups: []uint32{}}
	var caps []uintptr
	for sc := bufio.NewScanner(f); sc.Scan(); {
		k, v, _ := strings.Cut(sc.Text(), ":")
		fields := strings.Fields(v)
		switch k {
		case "Uid":
			n, _ := strconv.Atoi(fields[1])
			cred.Uid = uint32(n)
		case "Gid":
			n, _ := strconv.Atoi(fields[1])
			cred.Gid = uint32(n)
		case "CapEff":
			mask, _ := strconv.ParseUint(fields[0], 16, 64)
			for i := range 64 {
				if mask&(1<<i) != 0 {
					caps = append(caps, uintptr(i))
				}
			}
		}
	}
	return cred, caps
}

// The README's commands that call procmond work against the agent, through
// its forwarder: nothing is sent on control.collector.* from the socket.
func TestCLICallsCollectorsThroughAgent(t *testing.T) {
	agentBin, cli, _ := binaries(t)
	a := runAgent(t, Options{Exe: agentBin})
	// Healthy, not only answering: before its first scan procmond answers
	// "unhealthy", and the health commands below expect "healthy".
	wait.For(t, 15*time.Second, "procmond healthy", func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		h, err := a.collectors.Health(ctx, "procmond", &eventbusv1.HealthCheckRequest{})
		if err == nil && h.GetStatus() != eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY {
			err = fmt.Errorf("status %s", h.GetStatus())
		}
		return err
	})
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"call", "control.collector.health.procmond"}, 0, `"status": "RPC_STATUS_SUCCESS"`},
		{[]string{"call", "control.collector.capabilities.procmond"}, 0, `"status": "RPC_STATUS_SUCCESS"`},
		{[]string{"collectors", "health", "procmond"}, 0, "procmond: healthy"},
		{[]string{"collectors", "capabilities", "procmond"}, 0, "procmond"},
		{[]string{"collectors", "config", "procmond"}, 0, "procmond: configuration version"},
		{[]string{"ps"}, 0, "collector procmond --id procmond"},
		{[]string{"call", "control.collector.health.nobody"}, 1, `the agent runs no collector "nobody"`},
		{[]string{"collectors", "health", "nobody"}, 1, `the agent runs no collector "nobody"`},
	} {
		cmd := exec.Command(cli, append([]string{"--socket", a.Socket()}, tc.args...)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err := cmd.Run()
		code := 0
		if ee, ok := err.(*exec.ExitError); ok {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s", tc.args, code, tc.code, tc.want, out.String())
		}
		if strings.Count(out.String(), "no collector") > 2 { // the JSON detail and the error line
			t.Errorf("%v: the error is said more than once:\n%s", tc.args, out.String())
		}
	}
	if n := a.srv.Stats().DeniedPublishes; n != 0 {
		t.Errorf("%d denied publishes: the CLI tried control.collector.* directly", n)
	}
}

// procmond's capabilities follow its --source: CAP_BPF and CAP_PERFMON for
// ebpf, CAP_NET_ADMIN for connector, all three for auto (the default); and
// its seccomp filter lets bpf through for ebpf and auto only.
func TestKindCaps(t *testing.T) {
	read := []uintptr{capDACReadSearch, capSysPtrace}
	sense := []uintptr{capDACReadSearch, capSysPtrace, capBPF, capPerfmon}
	connect := []uintptr{capDACReadSearch, capSysPtrace, capNetAdmin}
	auto := []uintptr{capDACReadSearch, capSysPtrace, capBPF, capPerfmon, capNetAdmin}
	for _, tc := range []struct {
		args []string
		want []uintptr
		bpf  bool
	}{
		{nil, auto, true},
		{[]string{"--interval", "1s"}, auto, true},
		{[]string{"--source", "poll"}, read, false},
		{[]string{"--source=poll"}, read, false},
		{[]string{"-source", "poll"}, read, false},
		{[]string{"--source", "poll", "--source", "ebpf"}, sense, true},
		{[]string{"--source", "auto"}, auto, true},
		{[]string{"--source="}, auto, true},
		{[]string{"--no-hash", "--source=ebpf"}, sense, true},
		{[]string{"--source", "connector"}, connect, false},
		{[]string{"--source=ebpf", "-source=connector"}, connect, false},
		{[]string{"--", "--source", "poll"}, auto, true},
	} {
		if got := kindCaps("procmond", tc.args); !slices.Equal(got, tc.want) {
			t.Errorf("kindCaps(procmond, %q) = %v, want %v", tc.args, got, tc.want)
		}
		if got := procmondUsesBPF(tc.args); got != tc.bpf {
			t.Errorf("procmondUsesBPF(%q) = %v, want %v", tc.args, got, tc.bpf)
		}
	}
}
