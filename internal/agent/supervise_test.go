package agent

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
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
func runAgent(t *testing.T, opts Options) *Agent {
	t.Helper()
	opts.Socket = filepath.Join(t.TempDir(), "eventbus.sock")
	opts.Stderr = io.Discard
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *Agent, 1)
	done := make(chan error, 1)
	go func() { done <- Run(ctx, opts, func(a *Agent) { ready <- a }) }()
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
	case a := <-ready:
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
// on: failed, with its exits counted.
func TestRestartLimit(t *testing.T) {
	a := runAgent(t, Options{Exe: script(t, "exit 3"), RestartBackoff: 10 * time.Millisecond, MaxRestarts: 2})
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := a.Statuses()[0]
		if st.State == StateFailed {
			if st.Restarts != 2 || st.LastExit != "exit status 3" {
				t.Errorf("failed after %d restarts, last exit %q; want 2 and exit status 3", st.Restarts, st.LastExit)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still %+v after 10 s", st)
		}
		time.Sleep(10 * time.Millisecond)
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
		for deadline := time.Now().Add(5 * time.Second); child != 0 && !gone(child) && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		if child == 0 || !gone(child) {
			t.Errorf("the collector's child (pid %q) survived the agent by 5 s", b)
		}
	})
	body := "trap '' TERM\nsleep 300 &\necho $! > " + childFile + "\nwhile :; do sleep 1; done"
	a := runAgent(t, Options{Exe: script(t, body), StopTimeout: 200 * time.Millisecond})
	for deadline := time.Now().Add(5 * time.Second); pid == 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the collector did not start")
		}
		pid = a.Statuses()[0].PID
	}
}
