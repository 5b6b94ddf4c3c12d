// Package agent is daemoneye-agent: it hosts the broker on the UNIX
// socket, spawns and supervises the collectors, confines them to their
// own topics, runs the detection rules on their events and delivers the
// alerts.
package agent

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/collector"
	"github.com/daemoneye/daemoneye/collector/process"
	"github.com/daemoneye/daemoneye/detect"
	"github.com/daemoneye/daemoneye/envelope"
	"github.com/daemoneye/daemoneye/eventbus"
	agentv1 "github.com/daemoneye/daemoneye/gen/daemoneye/agent/v1"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/programs/agentapi"
	"github.com/daemoneye/daemoneye/rpc"
	"github.com/daemoneye/daemoneye/server"
	"github.com/daemoneye/daemoneye/topics"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

// CollectorFailedRule is the rule id of the alert raised when the agent
// gives up on a collector (it kept exiting or hanging, or cannot be
// started): severity high, on the same path as detection alerts.
const CollectorFailedRule = "collector-failed"

// AlertTopic returns the topic an alert of that severity is published on:
// events.alert.<severity>.
func AlertTopic(s eventbusv1.AlertSeverity) string { return topics.Alert(detect.SeverityName(s)) }

// CollectorSpec is one collector to run.
type CollectorSpec struct {
	// ID names it; its topics end with it.
	ID string `yaml:"id"`
	// Kind is the collector program: procmond, or another of the kinds
	// the agent knows (see defaultCollectors).
	Kind string `yaml:"kind"`
	// Interval between its scans (procmond's --interval); 0: its default.
	// Only procmond scans: for the other kinds it must be 0.
	Interval time.Duration `yaml:"-"`
	// Heartbeat is the interval between its heartbeats (default
	// process.DefaultHeartbeatInterval, 5 s). The agent judges its health
	// by it: a heartbeat claiming a longer interval is taken as claiming
	// this one, so a hung collector cannot excuse its silence.
	Heartbeat time.Duration `yaml:"-"`
	// Args are extra flags for it.
	Args []string `yaml:"args"`
}

// Options configures the agent. Zero values take the defaults.
type Options struct {
	// Socket is the broker's UNIX socket. Default: server.DefaultSocketPath.
	Socket string
	// Collectors to run. Default: procmond, and the kernel-sensor
	// collectors where the agent is root on a kernel with BTF.
	Collectors []CollectorSpec
	// Rules are the detection rules. Nil: the built-in rules.
	Rules []*detect.Rule
	// RepeatWindow: see detect.Options.
	RepeatWindow time.Duration
	// Alerts go to Stdout (one line each, or JSON with AlertsJSON; nil:
	// not at all), to AlertFile (JSON lines), to syslog, and to Webhook
	// (HTTP POST with WebhookRetries retries).
	Stdout         io.Writer
	AlertsJSON     bool
	AlertFile      string
	Syslog         bool
	Webhook        string
	WebhookRetries int
	// Exe is the binary run in collector mode. Default: this one.
	Exe string
	// Stderr receives the collectors' logs. Default os.Stderr.
	Stderr io.Writer
	// Supervision: restart backoff (1 s doubling to 30 s), at most
	// MaxRestarts (5) exits or hangs within RestartWindow (10 min) before
	// giving up, and StopTimeout (5 s) per step of a stop. A collector
	// that sends no first heartbeat within StartTimeout (1 min) of its
	// start is killed and started again, not counted against MaxRestarts.
	RestartBackoff, MaxRestartBackoff, RestartWindow, StopTimeout, StartTimeout time.Duration
	MaxRestarts                                                                 int
	// Limits of the agent's server, as daemoneye-broker's (0: the
	// default): MaxConns authenticated connections (DefaultMaxConns),
	// MaxPreAuth connections not yet authenticated (32), MaxSubscriptions
	// per connection (4096), HandshakeTimeout from accept to hello (2 s),
	// IdleTimeout for a silent connection (2 min). Collectors are served
	// on their own socketpairs and count against none of these.
	MaxConns, MaxPreAuth, MaxSubscriptions int
	HandshakeTimeout, IdleTimeout          time.Duration
	// Peers admits local users on the socket besides the agent's user and
	// root.
	Peers server.PeerPolicy
	// ACL overrides the default grants by identity (see OperatorGrant;
	// "*" is everyone not named). Collectors' grants are their own topics.
	// Whatever it says, no identity on the socket publishes alerts or
	// plain control.collector.* messages, nor another collector's
	// heartbeats.
	ACL ACLFile
	// ResponseTTL bounds how long a collector may answer a request
	// delivered to it (default server.DefaultResponseTTL).
	ResponseTTL time.Duration
	// CollectorUID and CollectorGID are the user and group the collectors
	// run as when the agent is root (default 65534 for both: nobody).
	// Ignored otherwise.
	CollectorUID, CollectorGID uint32
	// Logger receives the agent's notices. Default: silent.
	Logger *slog.Logger
}

func (o *Options) defaults() error {
	if o.Socket == "" {
		o.Socket = server.DefaultSocketPath()
	}
	if o.Collectors == nil {
		o.Collectors = defaultCollectors()
	}
	for _, c := range o.Collectors {
		if err := collector.ValidateID(c.ID); err != nil {
			return err
		}
		if _, ok := kinds[c.Kind]; !ok {
			return fmt.Errorf("agent: collector %s: unknown kind %q (the kinds are %s)", c.ID, c.Kind, kindNames())
		}
		if c.Interval > 0 && c.Kind != "procmond" {
			return fmt.Errorf("agent: collector %s: %s does not scan: remove its interval", c.ID, c.Kind)
		}
	}
	for i := range o.Collectors {
		if o.Collectors[i].Heartbeat <= 0 {
			o.Collectors[i].Heartbeat = process.DefaultHeartbeatInterval
		}
	}
	if o.CollectorUID == 0 {
		o.CollectorUID = DefaultCollectorUID
	}
	if o.CollectorGID == 0 {
		o.CollectorGID = DefaultCollectorGID
	}
	if o.Rules == nil {
		rules, err := detect.Builtin()
		if err != nil {
			return err
		}
		o.Rules = rules
	}
	if o.Exe == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("agent: find this binary to run the collectors: %w", err)
		}
		o.Exe = exe
	}
	if o.Stderr == nil {
		o.Stderr = os.Stderr
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.RestartBackoff, time.Second)
	def(&o.MaxRestartBackoff, 30*time.Second)
	def(&o.RestartWindow, 10*time.Minute)
	def(&o.StopTimeout, 5*time.Second)
	def(&o.StartTimeout, time.Minute)
	if o.MaxConns <= 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.MaxRestarts <= 0 {
		o.MaxRestarts = 5
	}
	if o.WebhookRetries <= 0 {
		o.WebhookRetries = 3
	}
	return nil
}

// The agent's subscriptions in its own broker: eventQueue process events
// may wait in the broker's queue for the rules, eventChan more in the
// subscription's channel; beatChan heartbeats, which arrive every few
// seconds per collector, in the heartbeats' channel. The queue grows with
// a burst and gives the memory back after it; a channel is allocated
// whole (about 100 bytes a message) and, being a ring, ends up resident
// whole: 65,536 messages in the channel held 6.5 MiB of the agent's heap,
// 12 MiB of its resident memory with the GC's headroom.
const (
	eventQueue = 1 << 16
	eventChan  = 256
	beatChan   = 16
)

// DefaultMaxConns is the agent's default connection limit: its
// collectors, the CLI and a few subscribers.
const DefaultMaxConns = 64

// Agent is a running daemoneye-agent.
type Agent struct {
	opts       Options
	log        *slog.Logger
	sock       string
	broker     *eventbus.Broker
	srv        *server.Server
	conn       *client.Conn // in process
	collectors *collector.Client
	engine     *detect.Engine
	alerts     *dispatcher
	procs      []*proc
	wg         sync.WaitGroup // collector Wait goroutines
	fwd        forwarder      // collector calls forwarded for operators
	admin      *rpc.Server    // the admin service (agentapi)
	// ownAlerts counts the alerts the agent raised itself (collector-failed).
	ownAlerts atomic.Uint64
}

// Run runs the agent until ctx ends, then stops the collectors (graceful
// shutdown request, SIGTERM, SIGKILL), drains the clients and removes the
// socket. ready, if not nil, is called once the broker listens and the
// collectors are being started.
func Run(ctx context.Context, opts Options, ready func(*Agent)) error {
	if err := opts.defaults(); err != nil {
		return err
	}
	a := &Agent{opts: opts, log: opts.Logger, sock: opts.Socket, fwd: forwarder{sem: make(chan struct{}, maxForwards)}}
	for _, spec := range opts.Collectors {
		p, err := newProc(spec)
		if err != nil {
			return err
		}
		a.procs = append(a.procs, p)
	}
	pol, err := newPolicy(opts.Collectors, opts.ACL, opts.ResponseTTL)
	if err != nil {
		return err
	}
	if a.broker, err = eventbus.New(eventbus.Options{}); err != nil {
		return err
	}
	defer a.broker.Close()
	if a.srv, err = server.New(server.Options{Broker: a.broker, Auth: server.Auth{Peers: opts.Peers},
		Authorizer: pol, Logger: a.log,
		MaxConns: opts.MaxConns, MaxPreAuth: opts.MaxPreAuth, MaxSubscriptions: opts.MaxSubscriptions, HandshakeTimeout: opts.HandshakeTimeout, IdleTimeout: opts.IdleTimeout}); err != nil {
		return err
	}
	l, err := server.ListenUnix(a.sock)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	served := make(chan error, 1)
	go func() { served <- a.srv.Serve(l) }()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a.srv.Shutdown(sctx)
		<-served
	}()
	if a.conn, err = client.Connect(a.broker, client.Options{Name: "agent"}); err != nil {
		return err
	}
	defer a.conn.Close()
	a.collectors = collector.NewClient(rpc.NewClient(a.conn, rpc.ClientOptions{ID: "agent", BreakerFailures: -1}))
	a.engine = detect.NewEngine(opts.Rules, detect.Options{RepeatWindow: opts.RepeatWindow})

	sinks, closers, err := a.openSinks()
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	sinkCtx, cancelSinks := context.WithCancel(context.Background())
	a.alerts = newDispatcher(sinkCtx, sinks, a.log)
	defer func() {
		// Give the sinks a moment for what is queued, then cut them off.
		t := time.AfterFunc(5*time.Second, cancelSinks)
		a.alerts.close()
		t.Stop()
		cancelSinks()
	}()

	var bg sync.WaitGroup
	defer bg.Wait()
	runCtx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	a.admin = rpc.NewServer(a.conn, rpc.ServerOptions{ID: "agent"})
	defer a.admin.Close()
	if err := a.serveAdmin(runCtx); err != nil {
		return err
	}
	defer func() { stopAll(); a.fwd.close() }() // the forwards in flight end with runCtx
	if err := a.serveForward(runCtx); err != nil {
		return err
	}
	// A burst waits in the broker's queue, not in the channel (see
	// eventQueue).
	events, err := a.conn.SubscribeWith(runCtx, topics.AllProcess, client.SubscribeOptions{Buffer: eventChan, MaxMessages: eventQueue})
	if err != nil {
		return err
	}
	bg.Go(func() { a.detect(events) })
	beats, err := a.conn.SubscribeWith(runCtx, topics.HealthHeartbeat+".+", client.SubscribeOptions{Buffer: beatChan})
	if err != nil {
		return err
	}
	bg.Go(func() { a.heartbeats(beats) })
	bg.Go(func() { a.watchHealth(runCtx) })
	a.log.Info("agent: listening", "socket", a.sock, "rules", len(opts.Rules), "collectors", len(a.procs))
	if os.Geteuid() == 0 {
		a.log.Info("agent: collectors run confined", "uid", opts.CollectorUID, "gid", opts.CollectorGID, "connection", "socketpair")
	} else {
		a.log.Info("agent: not root: collectors run as this user, confined only by the ACL on their connection")
	}
	if ready != nil {
		ready(a)
	}
	var sup sync.WaitGroup
	for _, p := range a.procs {
		sup.Go(func() { a.supervise(runCtx, p) })
	}
	<-ctx.Done()
	a.log.Info("agent: stopping")
	sup.Wait() // the collectors are stopped
	a.wg.Wait()
	stopAll()
	events.Unsubscribe()
	beats.Unsubscribe()
	return nil
}

func (a *Agent) openSinks() ([]sink, []io.Closer, error) {
	var sinks []sink
	var closers []io.Closer
	if a.opts.Stdout != nil {
		sinks = append(sinks, &writerSink{label: "stdout", w: a.opts.Stdout, json: a.opts.AlertsJSON})
	}
	if a.opts.AlertFile != "" {
		s, c, err := openFileSink(a.opts.AlertFile)
		if err != nil {
			return nil, nil, fmt.Errorf("agent: %w", err)
		}
		sinks, closers = append(sinks, s), append(closers, c)
	}
	if a.opts.Syslog {
		s, c, err := openSyslogSink()
		if err != nil {
			return nil, closers, fmt.Errorf("agent: %w", err)
		}
		sinks, closers = append(sinks, s), append(closers, c)
	}
	if a.opts.Webhook != "" {
		sinks = append(sinks, &webhookSink{url: a.opts.Webhook, client: &http.Client{Timeout: 5 * time.Second},
			retries: a.opts.WebhookRetries, backoff: 500 * time.Millisecond})
	}
	return sinks, closers, nil
}

// detect evaluates the rules on every process event and raises the
// alerts: published on events.alert.<severity> and handed to the sinks.
func (a *Agent) detect(events *client.Subscription) {
	for m := range events.C() {
		e, ok := envelope.FromValue(m.Value)
		if !ok {
			e = new(eventbusv1.EventBusMessage)
			if err := proto.Unmarshal(m.Payload, e); err != nil {
				a.log.Debug("agent: an undecodable event", "topic", m.Topic, "err", err)
				continue
			}
		}
		if a.own(e) {
			continue
		}
		for _, alert := range a.engine.Evaluate(e, time.Now()) {
			a.raise(alert, e.GetCorrelation())
		}
	}
}

// raise publishes an alert on events.alert.<severity>, in the workflow of
// cause (nil: a new one), and hands it to the sinks.
func (a *Agent) raise(alert *eventbusv1.Alert, cause *eventbusv1.CorrelationMetadata) {
	topic := AlertTopic(alert.GetSeverity())
	msg := envelope.New(topic, alert.GetTimestamp().AsTime(), alert)
	msg.Metadata.SourceId = "agent"
	msg.Correlation = envelope.Child(cause)
	if msg.Correlation == nil {
		msg.Correlation = envelope.NewRoot()
	}
	if err := a.conn.PublishMsg(&client.Msg{Topic: topic, Priority: eventbus.PriorityHigh, Value: envelope.Lazy{M: msg}}); err != nil {
		a.log.Warn("agent: could not publish an alert", "rule", alert.GetRuleId(), "err", err)
	}
	a.alerts.dispatch(alert)
}

// own reports whether a process event is about the agent itself or a
// collector it runs (the same binary, with the pid of one of them): run
// with go run, they live under /tmp and would alert on themselves.
func (a *Agent) own(e *eventbusv1.EventBusMessage) bool {
	p := e.GetCollectionEvent().GetProcess().GetProcess()
	if p == nil || p.GetExecutablePath() != a.opts.Exe {
		return false
	}
	if int(p.GetPid()) == os.Getpid() {
		return true
	}
	for _, c := range a.procs {
		c.mu.Lock()
		pid := c.pid
		c.mu.Unlock()
		if pid != 0 && int(p.GetPid()) == pid {
			return true
		}
	}
	return false
}

// heartbeats records each collector's heartbeats.
func (a *Agent) heartbeats(sub *client.Subscription) {
	for m := range sub.C() {
		e, ok := envelope.FromValue(m.Value)
		if !ok {
			e = new(eventbusv1.EventBusMessage)
			if proto.Unmarshal(m.Payload, e) != nil {
				continue
			}
		}
		hb := e.GetHeartbeat()
		id := topicID(m.Topic)
		if hb == nil || hb.GetCollectorId() != id || m.Reply != "" {
			// A heartbeat names the collector whose topic it is on; the
			// policy lets only that collector's connection publish there
			// (and a request is no heartbeat).
			continue
		}
		for _, p := range a.procs {
			if p.spec.ID == id {
				p.heartbeat(clampInterval(hb, p.spec.Heartbeat), time.Now())
			}
		}
	}
}

// clampInterval bounds the interval a heartbeat claims by the configured
// one: a collector that claims a longer interval (or none) is judged by
// the configured interval, so it cannot excuse a long silence. hb may be
// shared with other subscribers: a clamped heartbeat is a copy.
func clampInterval(hb *eventbusv1.Heartbeat, configured time.Duration) *eventbusv1.Heartbeat {
	if d := hb.GetInterval().AsDuration(); d > 0 && d <= configured {
		return hb
	}
	hb = proto.CloneOf(hb)
	hb.Interval = durationpb.New(configured)
	return hb
}

// Statuses returns every collector's status.
func (a *Agent) Statuses() []CollectorStatus {
	now := time.Now()
	out := make([]CollectorStatus, 0, len(a.procs))
	for _, p := range a.procs {
		out = append(out, p.status(now))
	}
	return out
}

// Socket returns the socket the broker listens on.
func (a *Agent) Socket() string { return a.sock }

// serveAdmin serves the admin service (agentapi.ListCollectors and
// agentapi.RestartCollector) on topics.AgentCollectors with a.admin. Both
// methods are quick (they read the supervisors' state, or ask one for a
// restart without waiting), so they run inline.
func (a *Agent) serveAdmin(ctx context.Context) error {
	mux := rpc.NewMux("the agent")
	rpc.Handle(mux, agentapi.ListCollectors, func(_ context.Context, req *agentv1.ListCollectorsRequest) (*agentv1.ListCollectorsResponse, error) {
		all := a.Statuses()
		if req.GetId() != "" {
			_, one, err := a.find(req.GetId(), all)
			if err != nil {
				return nil, err
			}
			return &agentv1.ListCollectorsResponse{Collectors: []*agentv1.CollectorStatus{one.ToProto()}}, nil
		}
		out := &agentv1.ListCollectorsResponse{Collectors: make([]*agentv1.CollectorStatus, 0, len(all))}
		for _, st := range all {
			out.Collectors = append(out.Collectors, st.ToProto())
		}
		st := a.engine.Stats()
		out.Alerts = (&agentapi.AlertStats{Rules: len(a.engine.Rules()), Fired: st.Fired + a.ownAlerts.Load(), Silenced: st.Silenced, Sinks: a.alerts.stats()}).ToProto()
		return out, nil
	}, rpc.Inline())
	rpc.Handle(mux, agentapi.RestartCollector, func(_ context.Context, req *agentv1.RestartCollectorRequest) (*agentv1.RestartCollectorResponse, error) {
		p, one, err := a.find(req.GetId(), a.Statuses())
		if err != nil {
			return nil, err
		}
		select {
		case p.restartReq <- struct{}{}:
		default: // one is pending already
		}
		return &agentv1.RestartCollectorResponse{Collector: one.ToProto()}, nil
	}, rpc.Inline())
	return a.admin.Handle(ctx, topics.AgentCollectors, mux)
}

// find returns collector id's supervisor and its status among all (the
// Statuses, in the same order), or a NOT_FOUND error for the caller.
func (a *Agent) find(id string, all []CollectorStatus) (*proc, CollectorStatus, error) {
	for i, p := range a.procs {
		if p.spec.ID == id {
			return p, all[i], nil
		}
	}
	e := rpc.NotFound(agentapi.CodeUnknownCollector, "collector", id)
	e.Detail.Message = fmt.Sprintf("the agent runs no collector %q (it runs %s): see daemoneye-cli collectors list", id, strings.Join(a.collectorIDs(), ", "))
	return nil, CollectorStatus{}, e
}
