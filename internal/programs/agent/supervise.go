package agent

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/daemoneye/daemoneye/envelope"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/programs/agentapi"
	"github.com/daemoneye/daemoneye/topics"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Collector states and health values: see agentapi.
const (
	StateStarting   = agentapi.StateStarting
	StateRunning    = agentapi.StateRunning
	StateRestarting = agentapi.StateRestarting
	StateStopped    = agentapi.StateStopped
	StateFailed     = agentapi.StateFailed

	HealthUnknown   = agentapi.HealthUnknown
	HealthHealthy   = agentapi.HealthHealthy
	HealthDegraded  = agentapi.HealthDegraded
	HealthUnhealthy = agentapi.HealthUnhealthy
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
	reason       string // why it is failed, for the operator
	lastBeat     time.Time
	beatStatus   string
	beatInterval time.Duration
	counters     *eventbusv1.HeartbeatCounters
	shownHealth  string // the health last logged, for transitions
	restartReq   chan struct{}
	beat         chan struct{} // a heartbeat came: the supervisor moves its hang deadline
}

func newProc(spec CollectorSpec) (*proc, error) {
	return &proc{spec: spec, state: StateStarting, beatStatus: HealthUnknown, restartReq: make(chan struct{}, 1),
		beat: make(chan struct{}, 1)}, nil
}

// CollectorStatus is one collector as the agent sees it (agentapi's).
type CollectorStatus = agentapi.CollectorStatus

// unhealthyBeats is the unhealthy threshold: a collector that has missed
// this many heartbeat intervals is unhealthy, and its supervisor kills it
// and starts it again. Two missed intervals are degraded.
const unhealthyBeats = 3

// status reports the collector, its health judged from heartbeats: a
// collector that missed two heartbeats is degraded, three unhealthy.
func (p *proc) status(now time.Time) CollectorStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := CollectorStatus{ID: p.spec.ID, Kind: p.spec.Kind, State: p.state, Health: p.healthLocked(now), PID: p.pid,
		Restarts: p.restarts, Since: p.started, LastHeartbeat: p.lastBeat, LastExit: p.lastExit, Reason: p.reason}
	if p.counters != nil {
		st.Published, st.Dropped = p.counters.GetEventsPublished(), p.counters.GetEventsDropped()
		st.Detail = customDetail(p.counters.GetCustom())
	}
	return st
}

// customDetail turns a heartbeat's custom counters into a status's
// detail: "source.NAME": 1 becomes "source": NAME (procmond's event
// source), the others their decimal values. Nil for none.
func customDetail(custom map[string]uint64) map[string]string {
	if len(custom) == 0 {
		return nil
	}
	d := make(map[string]string, len(custom))
	for k, v := range custom {
		if name, ok := strings.CutPrefix(k, "source."); ok && v == 1 {
			d["source"] = name
			continue
		}
		d[k] = strconv.FormatUint(v, 10)
	}
	return d
}

func (p *proc) healthLocked(now time.Time) string {
	if p.state != StateRunning {
		return HealthUnknown
	}
	interval := p.intervalLocked()
	since := now.Sub(p.lastBeat)
	if p.lastBeat.IsZero() {
		since = now.Sub(p.started)
	}
	switch {
	case since > unhealthyBeats*interval:
		return HealthUnhealthy
	case since > 2*interval:
		return HealthDegraded
	case p.lastBeat.IsZero():
		return HealthUnknown
	}
	return p.beatStatus
}

// intervalLocked is the heartbeat interval the collector keeps: the one
// its heartbeats state, 5 s before the first.
func (p *proc) intervalLocked() time.Duration {
	if p.beatInterval <= 0 {
		return 5 * time.Second
	}
	return p.beatInterval
}

// hangDeadline is when the collector counts as hung if no heartbeat comes
// first: unhealthyBeats intervals after its last heartbeat or, before its
// first, startTimeout after its start. beaten says which.
func (p *proc) hangDeadline(startTimeout time.Duration) (deadline time.Time, beaten bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.lastBeat.IsZero() {
		return p.started.Add(startTimeout), false
	}
	return p.lastBeat.Add(unhealthyBeats * p.intervalLocked()), true
}

func (p *proc) heartbeat(hb *eventbusv1.Heartbeat, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == StateStarting {
		p.state = StateRunning // it is connected
	}
	select {
	case p.beat <- struct{}{}:
	default: // the supervisor has one to see already
	}
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
// when it exits or hangs, with exponential backoff (RestartBackoff doubling
// up to MaxRestartBackoff), and gives up (state failed, a collector-failed
// alert) after MaxRestarts crashes within RestartWindow. A collector hangs
// when its heartbeats stop for the unhealthy threshold (unhealthyBeats
// intervals): it is killed with SIGKILL, which works on a stopped process
// too, and that counts as a crash. One that sends no first heartbeat
// within StartTimeout (it cannot connect, or hangs before) is killed and
// started again without counting as a crash: the agent never gives up on
// a collector only because the bus was out of reach. A restart request
// (the admin service) stops it gracefully and starts it again at once.
func (a *Agent) supervise(ctx context.Context, p *proc) {
	backoff := a.opts.RestartBackoff
	var crashes []time.Time
	for {
		cmd, exited, err := a.spawn(p)
		if err != nil {
			a.giveUp(p, 0, fmt.Sprintf("cannot start it: %v", err), err.Error())
			if !a.awaitRestart(ctx, p) {
				return
			}
			crashes, backoff = nil, a.opts.RestartBackoff
			continue
		}
		p.set(func(p *proc) {
			if p.lastBeat.IsZero() {
				p.state = StateStarting // until its first heartbeat
			}
			p.reason = ""
		})
		a.log.Info("agent: collector started", "collector", p.spec.ID, "pid", cmd.Process.Pid)
		end := a.watch(ctx, p, cmd, exited)
		switch {
		case end.stopped:
			p.set(func(p *proc) { p.state, p.pid = StateStopped, 0 })
			return
		case end.restart:
			p.set(func(p *proc) { p.restarts++ })
			continue
		}
		p.set(func(p *proc) { p.state, p.pid, p.lastExit = StateRestarting, 0, end.why })
		now := time.Now()
		if now.Sub(p.status(now).Since) > a.opts.RestartWindow {
			backoff = a.opts.RestartBackoff // it ran well: start the backoff over
		}
		if end.crash {
			crashes = append(crashes, now)
			for len(crashes) > 0 && now.Sub(crashes[0]) > a.opts.RestartWindow {
				crashes = crashes[1:]
			}
		}
		if len(crashes) > a.opts.MaxRestarts {
			a.giveUp(p, cmd.Process.Pid, fmt.Sprintf("it ended %d times within %v (the limit is %d restarts), last: %s",
				len(crashes), a.opts.RestartWindow, a.opts.MaxRestarts, end.why), end.why)
			if !a.awaitRestart(ctx, p) {
				return
			}
			crashes, backoff = nil, a.opts.RestartBackoff
			p.set(func(p *proc) { p.restarts++ })
			continue
		}
		a.log.Warn("agent: collector exited; restarting", "collector", p.spec.ID, "reason", end.why, "in", backoff)
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
	}
}

// ending is how a collector's run ended.
type ending struct {
	why     string // what happened to it, for LastExit
	crash   bool   // it exited or hung: counts towards MaxRestarts
	restart bool   // an operator asked for a restart: it was stopped
	stopped bool   // the agent is stopping: so is the collector
}

// watch waits for the collector's process to end, and ends it when it
// hangs (see supervise), when a restart is requested or when ctx ends.
func (a *Agent) watch(ctx context.Context, p *proc, cmd *exec.Cmd, exited <-chan error) ending {
	deadline, _ := p.hangDeadline(a.opts.StartTimeout)
	hang := time.NewTimer(time.Until(deadline))
	defer hang.Stop()
	for {
		select {
		case err := <-exited:
			if ctx.Err() != nil {
				return ending{stopped: true}
			}
			return ending{why: exitReason(err), crash: true}
		case <-p.beat:
			deadline, _ := p.hangDeadline(a.opts.StartTimeout)
			hang.Reset(time.Until(deadline))
		case now := <-hang.C:
			deadline, beaten := p.hangDeadline(a.opts.StartTimeout)
			if now.Before(deadline) { // a heartbeat came meanwhile
				hang.Reset(deadline.Sub(now))
				continue
			}
			why := fmt.Sprintf("sent no heartbeat within %v of its start (it could not connect, or hung)", a.opts.StartTimeout)
			if beaten {
				p.mu.Lock()
				interval := p.intervalLocked()
				p.mu.Unlock()
				why = fmt.Sprintf("sent no heartbeat for %d intervals (%v): hung", unhealthyBeats, unhealthyBeats*interval)
			}
			a.log.Warn("agent: collector "+why+"; killing it", "collector", p.spec.ID, "pid", cmd.Process.Pid)
			kill(cmd)
			<-exited // SIGKILL cannot be ignored, nor held off by SIGSTOP
			return ending{why: why + "; killed by the agent with SIGKILL", crash: beaten}
		case <-p.restartReq:
			a.stop(p, cmd, exited)
			return ending{restart: true}
		case <-ctx.Done():
			a.stop(p, cmd, exited)
			return ending{stopped: true}
		}
	}
}

// kill sends SIGKILL to the collector's process group (it is its leader),
// so nothing it started outlives it; or to the process alone if it has no
// group of its own.
func kill(cmd *exec.Cmd) {
	if syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) != nil {
		cmd.Process.Kill()
	}
}

// giveUp marks the collector failed, says why in the log and in its
// status, and raises a collector-failed alert. pid is its last process, 0
// if none started; last is how that one ended.
func (a *Agent) giveUp(p *proc, pid int, why, last string) {
	reason := why + "; the agent gave up on it: fix the cause, then run daemoneye-cli collectors restart " + p.spec.ID
	p.set(func(p *proc) { p.state, p.reason = StateFailed, reason })
	a.log.Error("agent: a collector failed; giving up on it", "collector", p.spec.ID, "reason", reason)
	a.ownAlerts.Add(1)
	a.raise(&eventbusv1.Alert{
		AlertId:     envelope.NewID(),
		RuleId:      CollectorFailedRule,
		Title:       "collector " + p.spec.ID + " failed: " + last + "; its monitoring is off",
		Severity:    eventbusv1.AlertSeverity_ALERT_SEVERITY_HIGH,
		Description: "The agent stopped restarting collector " + p.spec.ID + " (" + p.spec.Kind + "): " + reason + ".",
		Process:     &eventbusv1.ProcessRecord{Pid: uint32(pid), ExecutablePath: a.opts.Exe},
		Timestamp:   timestamppb.Now(),
		Tags:        []string{"collector:" + p.spec.ID},
	}, nil)
}

// awaitRestart waits, for a failed collector, for a restart request
// (true) or the end of ctx (false).
func (a *Agent) awaitRestart(ctx context.Context, p *proc) bool {
	select {
	case <-ctx.Done():
		return false
	case <-p.restartReq:
		p.set(func(p *proc) { p.reason = "" })
		return true
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

// exitReason says how a collector's process ended, from Wait's error:
// "exited with status 2", "killed by signal 9 (killed)".
func exitReason(err error) string {
	if err == nil {
		return "exited with status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok {
			return waitReason(ws)
		}
		return fmt.Sprintf("exited with status %d", ee.ExitCode())
	}
	return err.Error()
}

// waitReason says what a wait status means, in words.
func waitReason(ws syscall.WaitStatus) string {
	switch {
	case ws.Exited():
		return fmt.Sprintf("exited with status %d", ws.ExitStatus())
	case ws.Signaled():
		why := fmt.Sprintf("killed by signal %d (%s)", int(ws.Signal()), ws.Signal())
		if ws.CoreDump() {
			why += ", core dumped"
		}
		return why
	case ws.Stopped():
		return fmt.Sprintf("stopped by signal %d (%s)", int(ws.StopSignal()), ws.StopSignal())
	}
	return fmt.Sprintf("ended with wait status %#x", uint32(ws))
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
	return strings.TrimPrefix(t, topics.HealthHeartbeat+".")
}
