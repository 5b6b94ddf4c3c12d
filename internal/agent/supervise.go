package agent

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/daemoneye/daemoneye/envelope"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
)

// Collector states, as `daemoneye-cli collectors list` shows them.
const (
	StateStarting   = "starting"
	StateRunning    = "running"
	StateRestarting = "restarting"
	StateStopped    = "stopped"
	StateFailed     = "failed"
)

// Health values derived from heartbeats.
const (
	HealthUnknown   = "unknown"
	HealthHealthy   = "healthy"
	HealthDegraded  = "degraded"
	HealthUnhealthy = "unhealthy"
)

// proc is one supervised collector.
type proc struct {
	spec CollectorSpec

	mu           sync.Mutex
	state        string
	pid          int
	restarts     int
	started      time.Time
	lastExit     string
	lastBeat     time.Time
	beatStatus   string
	beatInterval time.Duration
	counters     *eventbusv1.HeartbeatCounters
	shownHealth  string // the health last logged, for transitions
	restartReq   chan struct{}
}

func newProc(spec CollectorSpec) (*proc, error) {
	return &proc{spec: spec, state: StateStarting, beatStatus: HealthUnknown, restartReq: make(chan struct{}, 1)}, nil
}

// CollectorStatus is one collector as the agent sees it.
type CollectorStatus struct {
	ID            string            `json:"id"`
	Kind          string            `json:"kind"`
	State         string            `json:"state"`
	Health        string            `json:"health"`
	PID           int               `json:"pid,omitempty"`
	Restarts      int               `json:"restarts"`
	Since         time.Time         `json:"since,omitzero"`
	LastHeartbeat time.Time         `json:"last_heartbeat,omitzero"`
	LastExit      string            `json:"last_exit,omitempty"`
	Published     uint64            `json:"events_published"`
	Dropped       uint64            `json:"events_dropped"`
	Detail        map[string]string `json:"detail,omitempty"`
}

// status reports the collector, its health judged from heartbeats: a
// collector that missed two heartbeats is degraded, three unhealthy.
func (p *proc) status(now time.Time) CollectorStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := CollectorStatus{ID: p.spec.ID, Kind: p.spec.Kind, State: p.state, Health: p.healthLocked(now), PID: p.pid,
		Restarts: p.restarts, Since: p.started, LastHeartbeat: p.lastBeat, LastExit: p.lastExit}
	if p.counters != nil {
		st.Published, st.Dropped = p.counters.GetEventsPublished(), p.counters.GetEventsDropped()
	}
	return st
}

func (p *proc) healthLocked(now time.Time) string {
	if p.state != StateRunning {
		return HealthUnknown
	}
	interval := p.beatInterval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	since := now.Sub(p.lastBeat)
	if p.lastBeat.IsZero() {
		since = now.Sub(p.started)
	}
	switch {
	case since > 3*interval:
		return HealthUnhealthy
	case since > 2*interval:
		return HealthDegraded
	case p.lastBeat.IsZero():
		return HealthUnknown
	}
	return p.beatStatus
}

func (p *proc) heartbeat(hb *eventbusv1.Heartbeat, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastBeat = now
	p.beatInterval = hb.GetInterval().AsDuration()
	p.counters = hb.GetCounters()
	p.beatStatus = strings.ToLower(strings.TrimPrefix(hb.GetStatus().String(), "HEALTH_STATUS_"))
	if p.beatStatus == "unspecified" {
		p.beatStatus = HealthUnknown
	}
}

func (p *proc) set(f func(p *proc)) {
	p.mu.Lock()
	f(p)
	p.mu.Unlock()
}

// supervise runs the collector until ctx ends: it starts it, restarts it
// when it exits, with exponential backoff (RestartBackoff doubling up to
// MaxRestartBackoff), and gives up (state failed) after MaxRestarts
// crashes within RestartWindow. A restart request (the admin service)
// stops it gracefully and starts it again at once.
func (a *Agent) supervise(ctx context.Context, p *proc) {
	backoff := a.opts.RestartBackoff
	var crashes []time.Time
	for {
		cmd, exited, err := a.spawn(p)
		if err != nil {
			p.set(func(p *proc) { p.state, p.lastExit = StateFailed, err.Error() })
			a.log.Error("agent: cannot start a collector", "collector", p.spec.ID, "err", err)
			return
		}
		a.log.Info("agent: collector started", "collector", p.spec.ID, "pid", cmd.Process.Pid)
		select {
		case err := <-exited:
			why := exitReason(err)
			p.set(func(p *proc) { p.state, p.pid, p.lastExit = StateRestarting, 0, why })
			if ctx.Err() != nil {
				p.set(func(p *proc) { p.state = StateStopped })
				return
			}
			now := time.Now()
			if now.Sub(p.status(now).Since) > a.opts.RestartWindow {
				backoff = a.opts.RestartBackoff // it ran well: start the backoff over
			}
			crashes = append(crashes, now)
			for len(crashes) > 0 && now.Sub(crashes[0]) > a.opts.RestartWindow {
				crashes = crashes[1:]
			}
			if len(crashes) > a.opts.MaxRestarts {
				p.set(func(p *proc) { p.state = StateFailed })
				a.log.Error("agent: a collector keeps exiting; giving up (restart it with daemoneye-cli collectors restart)",
					"collector", p.spec.ID, "exits", len(crashes), "within", a.opts.RestartWindow, "last", why)
				select {
				case <-ctx.Done():
					return
				case <-p.restartReq:
					crashes, backoff = nil, a.opts.RestartBackoff
					continue
				}
			}
			a.log.Warn("agent: collector exited; restarting", "collector", p.spec.ID, "reason", why, "in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-ctx.Done():
				t.Stop()
				p.set(func(p *proc) { p.state = StateStopped })
				return
			case <-p.restartReq:
				t.Stop()
			case <-t.C:
			}
			backoff = min(2*backoff, a.opts.MaxRestartBackoff)
			p.set(func(p *proc) { p.restarts++ })
		case <-p.restartReq:
			a.stop(p, cmd, exited)
			p.set(func(p *proc) { p.restarts++ })
		case <-ctx.Done():
			a.stop(p, cmd, exited)
			p.set(func(p *proc) { p.state = StateStopped })
			return
		}
	}
}

// spawn starts the collector's process: this binary in collector mode,
// connected to the broker by a socketpair whose other end the agent serves
// as the collector's identity (see confine.go). The child dies with the
// agent (parent death signal) and has its own process group. exited
// receives Wait's result.
func (a *Agent) spawn(p *proc) (*exec.Cmd, <-chan error, error) {
	h, err := a.handover(p.spec)
	if err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", p.spec.ID, err)
	}
	args := append([]string{"collector", p.spec.Kind, "--id", p.spec.ID, "--conn-fd", "3",
		"--heartbeat", p.spec.Heartbeat.String()}, p.spec.Args...)
	if p.spec.Interval > 0 {
		args = append(args, "--interval", p.spec.Interval.String())
	}
	cmd := exec.Command(h.path, args...)
	cmd.Args[0] = a.opts.Exe
	cmd.ExtraFiles = h.files
	cmd.Stdout, cmd.Stderr = a.opts.Stderr, a.opts.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true, Credential: h.cred, AmbientCaps: h.caps}
	err = cmd.Start()
	h.close()
	if err != nil {
		h.conn.Close()
		return nil, nil, fmt.Errorf("start %s: %w", p.spec.ID, err)
	}
	exited := make(chan error, 1)
	a.wg.Go(func() { exited <- cmd.Wait() })
	if err := a.srv.ServeConn(h.conn, CollectorIdentity(p.spec.ID)); err != nil {
		// The agent is stopping: the collector finds its connection
		// closed and exits, and its exit arrives on exited.
		a.log.Debug("agent: cannot serve a collector's connection", "collector", p.spec.ID, "err", err)
	}
	p.set(func(p *proc) {
		p.state, p.pid, p.started, p.lastBeat, p.beatStatus = StateRunning, cmd.Process.Pid, time.Now(), time.Time{}, HealthUnknown
	})
	return cmd, exited, nil
}

// stop ends a collector: a graceful shutdown request over RPC, then
// SIGTERM, then SIGKILL to its process group, each after StopTimeout.
func (a *Agent) stop(p *proc, cmd *exec.Cmd, exited <-chan error) {
	ctx, cancel := context.WithTimeout(context.Background(), a.opts.StopTimeout)
	_, err := a.collectors.GracefulShutdown(ctx, p.spec.ID, &eventbusv1.ShutdownRequest{Reason: "the agent is stopping it"})
	cancel()
	if err != nil {
		a.log.Debug("agent: graceful shutdown request failed", "collector", p.spec.ID, "err", err)
	}
	for _, sig := range []syscall.Signal{0, syscall.SIGTERM, syscall.SIGKILL} {
		switch sig {
		case syscall.SIGTERM:
			cmd.Process.Signal(sig)
		case syscall.SIGKILL:
			// The whole process group (the collector is its leader), so
			// nothing it started outlives it.
			syscall.Kill(-cmd.Process.Pid, sig)
		}
		select {
		case <-exited:
			p.set(func(p *proc) { p.pid = 0 })
			a.log.Info("agent: collector stopped", "collector", p.spec.ID, "after", stopStep(sig))
			return
		case <-time.After(a.opts.StopTimeout):
		}
	}
	<-exited // SIGKILL cannot be ignored
}

func stopStep(sig syscall.Signal) string {
	if sig == 0 {
		return "shutdown request"
	}
	return sig.String()
}

func exitReason(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by " + ws.Signal().String()
		}
		return fmt.Sprintf("exit status %d", ee.ExitCode())
	}
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// watchHealth logs when a collector's heartbeats say it is degraded or
// unhealthy, and when it recovers, once per change.
func (a *Agent) watchHealth(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			for _, p := range a.procs {
				p.mu.Lock()
				h := p.healthLocked(now)
				changed := h != p.shownHealth && p.state == StateRunning
				if changed {
					p.shownHealth = h
				}
				p.mu.Unlock()
				if changed && (h == HealthDegraded || h == HealthUnhealthy) {
					a.log.Warn("agent: collector is "+h, "collector", p.spec.ID, "reason", "missed heartbeats or reported trouble")
				}
			}
		}
	}
}

// topicID returns the collector id at the end of a heartbeat topic.
func topicID(t string) string {
	return strings.TrimPrefix(t, envelope.TopicHealthHeartbeat+".")
}
