package agent

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/client"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/programs/agentapi"
	"github.com/daemoneye/daemoneye/internal/testutil/testproc"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
	"github.com/daemoneye/daemoneye/rpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

func TestHealthFromHeartbeats(t *testing.T) {
	p, err := newProc(CollectorSpec{ID: "c", Kind: "procmond"})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	p.state, p.started = StateRunning, start
	if h := p.status(start.Add(time.Second)).Health; h != HealthUnknown {
		t.Errorf("before any heartbeat: %s", h)
	}
	p.heartbeat(&eventbusv1.Heartbeat{Status: eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY, Interval: durationpb.New(time.Second)}, start)
	for _, tc := range []struct {
		after time.Duration
		want  string
	}{{500 * time.Millisecond, HealthHealthy}, {2500 * time.Millisecond, HealthDegraded}, {3500 * time.Millisecond, HealthUnhealthy}} {
		if h := p.status(start.Add(tc.after)).Health; h != tc.want {
			t.Errorf("%v after the last heartbeat: %s, want %s", tc.after, h, tc.want)
		}
	}
	p.heartbeat(&eventbusv1.Heartbeat{Status: eventbusv1.HealthStatus_HEALTH_STATUS_DEGRADED, Interval: durationpb.New(time.Second)}, start.Add(4*time.Second))
	if h := p.status(start.Add(4 * time.Second)).Health; h != HealthDegraded {
		t.Errorf("a heartbeat that says degraded: %s", h)
	}
}

// runAgent runs an agent whose collector is exe, until the test ends.
func runAgent(t *testing.T, opts Options) *Agent { return runAgentWith(t, opts, nil) }

// runAgentWith is runAgent, calling ready (if not nil) once the agent
// listens, before its collectors start.
func runAgentWith(t *testing.T, opts Options, ready func(*Agent)) *Agent {
	t.Helper()
	if opts.Socket == "" {
		opts.Socket = filepath.Join(t.TempDir(), "eventbus.sock")
	}
	if opts.Collectors == nil {
		// These tests supervise one collector; the default set (netmond
		// and fsmond too, as root) is tested through the binary.
		opts.Collectors = []CollectorSpec{{ID: "procmond", Kind: "procmond"}}
	}
	if opts.Stderr == nil {
		opts.Stderr = io.Discard
	}
	ctx, cancel := context.WithCancel(context.Background())
	readyCh := make(chan *Agent, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, opts, func(a *Agent) {
			if ready != nil {
				ready(a)
			}
			readyCh <- a
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("Run did not return")
		}
	})
	select {
	case a := <-readyCh:
		return a
	case err := <-done:
		t.Fatalf("Run = %v", err)
	}
	return nil
}

func script(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "collector.sh")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// A collector that keeps crashing is restarted with backoff, then given up
// on: failed, with its exits counted and the reason in its status, and a
// collector-failed alert of severity high on the alert path: published on
// events.alert.high (seen here by a subscriber over the socket) and
// handed to the sinks (the alert file).
func TestRestartLimit(t *testing.T) {
	alertFile := filepath.Join(t.TempDir(), "alerts.jsonl")
	var watch *client.Conn
	var alerts *client.Subscription
	a := runAgentWith(t, Options{Exe: script(t, "exit 3"), RestartBackoff: 10 * time.Millisecond, MaxRestarts: 2, AlertFile: alertFile},
		func(a *Agent) {
			var err error
			if watch, err = client.Dial(t.Context(), a.Socket(), client.Options{Name: "watch", NoReconnect: true}); err != nil {
				t.Error(err)
				return
			}
			if alerts, err = watch.Subscribe(t.Context(), "events.alert.#", 16); err != nil {
				t.Error(err)
			}
		})
	if alerts == nil {
		t.FailNow()
	}
	defer watch.Close()
	var st CollectorStatus
	wait.Until(t, 15*time.Second, "the collector failed", func() bool { st = a.Statuses()[0]; return st.State == StateFailed })
	if st.Restarts != 2 || st.LastExit != "exited with status 3" {
		t.Errorf("failed after %d restarts, last exit %q; want 2 and exited with status 3", st.Restarts, st.LastExit)
	}
	if !strings.Contains(st.Reason, "ended 3 times within 10m0s") || !strings.Contains(st.Reason, "daemoneye-cli collectors restart procmond") {
		t.Errorf("reason %q: want the count and what to do", st.Reason)
	}

	select {
	case m := <-alerts.C():
		var e eventbusv1.EventBusMessage
		if err := proto.Unmarshal(m.Payload, &e); err != nil {
			t.Fatal(err)
		}
		al := e.GetAlert()
		if m.Topic != "events.alert.high" || al.GetRuleId() != CollectorFailedRule || al.GetSeverity() != eventbusv1.AlertSeverity_ALERT_SEVERITY_HIGH ||
			!strings.Contains(al.GetTitle(), "collector procmond failed: exited with status 3") {
			t.Errorf("alert on %s: %v", m.Topic, al)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("no alert on events.alert.# within 15 s of giving up")
	}
	wait.Until(t, 15*time.Second, "the alert in the alert file", func() bool {
		b, _ := os.ReadFile(alertFile)
		return strings.Contains(string(b), `"rule_id":"collector-failed"`) && strings.Contains(string(b), `"severity":"ALERT_SEVERITY_HIGH"`)
	})

	// The admin service (what collectors list asks) shows it failed, with why.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	list, err := agentapi.List(ctx, rpc.NewClient(watch, rpc.ClientOptions{}), "")
	if err != nil {
		t.Fatal(err)
	}
	reply := agentapi.CollectorsFromProto(list)
	if len(reply.Collectors) != 1 {
		t.Fatalf("list: %v", list)
	}
	if c := reply.Collectors[0]; c.State != StateFailed || c.Reason != st.Reason {
		t.Errorf("list: state %s, reason %q; want failed, %q", c.State, c.Reason, st.Reason)
	}
}

// A collector whose heartbeats stop (SIGSTOP: hung) is killed with SIGKILL
// after the unhealthy threshold and started again, with the restart
// counted and the reason in its status.
func TestHungCollectorIsRestarted(t *testing.T) {
	agentBin, _, _ := binaries(t)
	a := runAgent(t, Options{Exe: agentBin, RestartBackoff: 10 * time.Millisecond,
		Collectors: []CollectorSpec{{ID: "procmond", Kind: "procmond", Heartbeat: 300 * time.Millisecond, Args: []string{"--no-hash"}}}})
	var st CollectorStatus
	wait.Until(t, 15*time.Second, "procmond running and healthy", func() bool {
		st = a.Statuses()[0]
		return st.State == StateRunning && st.Health == HealthHealthy
	})
	hung := st.PID
	if err := syscall.Kill(hung, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(hung, syscall.SIGKILL) // if it survived
	wait.Until(t, 15*time.Second, "procmond restarted after it hung", func() bool {
		st = a.Statuses()[0]
		return st.State == StateRunning && st.PID != hung && st.Health == HealthHealthy
	})
	// At least one restart: a loaded machine may delay a heartbeat past
	// the threshold before the SIGSTOP too.
	if st.Restarts < 1 || !strings.Contains(st.LastExit, "no heartbeat for 3 intervals (900ms): hung; killed by the agent with SIGKILL") {
		t.Errorf("%d restarts, last exit %q; want 1 and no heartbeat for 3 intervals", st.Restarts, st.LastExit)
	}
	wait.Until(t, 15*time.Second, "the hung procmond gone", func() bool { return gone(hung) })
}

// A collector that sends no first heartbeat (it cannot connect, or hangs
// while starting) is killed after StartTimeout and started again, but
// never counted as a crash: however often that happens, the agent does not
// give up on it.
func TestNoFirstHeartbeatIsNotACrash(t *testing.T) {
	a := runAgent(t, Options{Exe: script(t, "exec sleep 300"), StartTimeout: 100 * time.Millisecond, StopTimeout: 100 * time.Millisecond,
		RestartBackoff: 10 * time.Millisecond, MaxRestartBackoff: 10 * time.Millisecond, MaxRestarts: 1})
	var st CollectorStatus
	wait.Until(t, 15*time.Second, "restarted 4 times", func() bool {
		st = a.Statuses()[0]
		if st.State == StateFailed {
			t.Fatalf("given up: %+v", st)
		}
		return st.Restarts >= 4
	})
	if !strings.Contains(st.LastExit, "sent no heartbeat within 100ms of its start") {
		t.Errorf("last exit %q", st.LastExit)
	}
}

// A collector that answers no shutdown request and ignores SIGTERM is
// killed, and the agent still stops.
func TestStopEscalatesToSIGKILL(t *testing.T) {
	var pid int
	dir := t.TempDir()
	os.Chmod(dir, 0o777) // a root agent runs its collectors as nobody
	childFile := filepath.Join(dir, "child.pid")
	// Cleanups run last-in first-out: this one runs after the agent stops.
	t.Cleanup(func() {
		if pid != 0 && !gone(pid) {
			t.Errorf("the collector (pid %d) survived the agent", pid)
		}
		b, err := os.ReadFile(childFile)
		if err != nil {
			t.Fatalf("the collector's child: %v", err)
		}
		// The kill is delivered to the whole group at once, but nobody
		// waits for the child (init reaps it): give it time to die.
		child, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if child == 0 {
			t.Fatalf("the collector's child: pid %q", b)
		}
		wait.Until(t, 5*time.Second, fmt.Sprintf("the collector's child (pid %d) to die with the agent", child), func() bool { return gone(child) })
	})
	body := "trap '' TERM\nsleep 300 &\necho $! > " + childFile + "\nwhile :; do sleep 1; done"
	a := runAgent(t, Options{Exe: script(t, body), StopTimeout: 200 * time.Millisecond})
	wait.Until(t, 5*time.Second, "the collector to start", func() bool {
		pid = a.Statuses()[0].PID
		return pid != 0
	})
}

// Exit reasons are words: the status a collector exited with, or the
// signal that killed it, by number and name.
func TestExitReason(t *testing.T) {
	for _, tc := range []struct {
		ws   syscall.WaitStatus
		want string
	}{
		{0, "exited with status 0"},
		{2 << 8, "exited with status 2"},
		{255 << 8, "exited with status 255"},
		{syscall.WaitStatus(syscall.SIGKILL), "killed by signal 9 (killed)"},
		{syscall.WaitStatus(syscall.SIGTERM), "killed by signal 15 (terminated)"},
		{syscall.WaitStatus(syscall.SIGSEGV) | 0x80, "killed by signal 11 (segmentation fault), core dumped"},
		{0x7f | syscall.WaitStatus(syscall.SIGSTOP)<<8, "stopped by signal 19 (stopped (signal))"},
	} {
		if got := waitReason(tc.ws); got != tc.want {
			t.Errorf("wait status %#x: %q, want %q", uint32(tc.ws), got, tc.want)
		}
	}
	// The same through real processes and exec's errors.
	for _, tc := range []struct{ script, want string }{
		{"exit 0", "exited with status 0"},
		{"exit 2", "exited with status 2"},
		{"kill -KILL $$", "killed by signal 9 (killed)"},
		{"kill -TERM $$", "killed by signal 15 (terminated)"},
	} {
		if got := exitReason(exec.Command("sh", "-c", tc.script).Run()); got != tc.want {
			t.Errorf("sh -c %q: %q, want %q", tc.script, got, tc.want)
		}
	}
	if got := exitReason(exec.Command("/nonexistent/collector").Run()); !strings.Contains(got, "no such file") {
		t.Errorf("a binary that is not there: %q", got)
	}
}

// With the agent's connection limit reached (here by connections the test
// holds), a restarted procmond that dials the socket cannot connect: it
// retries, saying why, and the agent neither counts that as crashes nor
// gives up on it; once the connections go, it connects and is healthy. (A
// collector handed a connected socket is not held back at all: then it is
// simply running again.)
func TestCollectorRetriesAtTheConnectionLimit(t *testing.T) {
	agentBin, _, _ := binaries(t)
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(); r.Close() }) // after the agent stopped
	logs := testproc.Lines(r)
	a := runAgent(t, Options{Exe: agentBin, Stderr: w, RestartBackoff: 3 * time.Second, MaxRestarts: 1, MaxConns: 3, StopTimeout: time.Second,
		Collectors: []CollectorSpec{{ID: "procmond", Kind: "procmond", Heartbeat: 500 * time.Millisecond, Args: []string{"--no-hash"}}}})
	var st CollectorStatus
	wait.Until(t, 15*time.Second, "procmond running and healthy", func() bool {
		st = a.Statuses()[0]
		return st.State == StateRunning && st.Health == HealthHealthy
	})
	var held []*client.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	hold := func() bool {
		c, err := client.Dial(t.Context(), a.Socket(), client.Options{Name: "held", NoReconnect: true})
		if err == nil {
			held = append(held, c)
		}
		return err == nil
	}
	wait.Until(t, 15*time.Second, "two connections held beside procmond's", func() bool { return len(held) == 2 || hold() && len(held) == 2 })
	first := st.PID
	if err := syscall.Kill(first, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 15*time.Second, "the killed procmond's slot held before its restart (in 3 s)", hold)

	retrying := false
	wait.Until(t, 15*time.Second, "the restarted procmond retrying, or running", func() bool {
		for len(logs) > 0 {
			if l := <-logs; strings.Contains(l, "cannot reach the broker; retrying") && strings.Contains(l, "limit of 3 connections") {
				retrying = true
			}
		}
		st = a.Statuses()[0]
		if st.State == StateFailed {
			t.Fatalf("the agent gave up on procmond: %+v", st)
		}
		return retrying || st.State == StateRunning && st.PID != first
	})
	if retrying {
		if st.State != StateStarting || st.Restarts != 1 {
			t.Errorf("while procmond retries: %+v; want starting, 1 restart", st)
		}
		for _, c := range held {
			c.Close()
		}
		held = nil
	}
	wait.Until(t, 15*time.Second, "procmond connected and healthy", func() bool {
		st = a.Statuses()[0]
		if st.State == StateFailed {
			t.Fatalf("the agent gave up on procmond: %+v", st)
		}
		return st.State == StateRunning && st.Health == HealthHealthy && st.PID != first
	})
	if st.Restarts != 1 {
		t.Errorf("%d restarts, want 1 (the SIGKILL)", st.Restarts)
	}
}

// End to end with the binaries: a procmond that keeps exiting (its
// configuration is refused) is given up on; the agent prints the
// collector-failed alert like any other, and daemoneye-cli collectors list
// shows it failed, with why and what to do.
func TestCollectorFailedEndToEnd(t *testing.T) {
	agentBin, cli, dir := binaries(t)
	sock := filepath.Join(dir, "run", "eventbus.sock")
	cfg := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfg, []byte("supervision:\n  restart_backoff: 10ms\n  max_restarts: 2\n"+
		"collectors:\n  - id: procmond\n    kind: procmond\n    args: [--interval, 1ms]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ag := exec.Command(agentBin, "--config", cfg, "--socket", sock)
	stdout, _ := ag.StdoutPipe()
	ag.Stderr = io.Discard
	if err := ag.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ag.Process.Kill(); ag.Wait() })
	line := testproc.ExpectLine(t, testproc.Lines(stdout), "the agent's alerts", "collector-failed")
	if !strings.Contains(line, "HIGH") || !strings.Contains(line, "collector procmond failed: exited with status 2; its monitoring is off") {
		t.Errorf("alert line %q", line)
	}
	out, err := exec.Command(cli, "--socket", sock, "collectors", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("collectors list: %v\n%s", err, out)
	}
	for _, want := range []string{" failed ", "exited with status 2",
		"procmond is failed: it ended 3 times within 10m0s (the limit is 2 restarts)",
		"then run daemoneye-cli collectors restart procmond", "1 alerts raised"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("collectors list does not say %q:\n%s", want, out)
		}
	}
}
