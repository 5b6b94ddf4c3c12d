package filesystem

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/collector"
	"github.com/daemoneye/daemoneye/collector/filesystem/sensor"
	"github.com/daemoneye/daemoneye/envelope"
	"github.com/daemoneye/daemoneye/eventbus"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/rpc"
	"github.com/daemoneye/daemoneye/topics"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Defaults of Options.
const (
	DefaultID                = "fsmond"
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultResolveInterval   = 30 * time.Second
	// MinResolveInterval is the shortest resolve interval the configuration
	// accepts.
	MinResolveInterval = time.Second
	// resolveDelay is how long after an event that may have created a
	// watched path Run resolves the watches again (events in between
	// share one resolve).
	resolveDelay = time.Second
)

// ErrShutdown is what Run returns after a GRACEFUL_SHUTDOWN or
// FORCE_SHUTDOWN request: the process should exit.
var ErrShutdown = errors.New("filesystem: shutdown requested over RPC")

// Options configures a Collector. The zero value is usable.
type Options struct {
	// ID is the collector's id: its topics end with it. Default "fsmond".
	ID string
	// HeartbeatInterval between heartbeats on control.health.heartbeat.<id>.
	// Default 5 s.
	HeartbeatInterval time.Duration
	// ResolveInterval between resolutions of the watches (new home
	// directories, files a pattern matches). Default 30 s; at least 1 s.
	ResolveInterval time.Duration
	// Watches are the watched path sets; nil means sensor.DefaultWatches().
	Watches []sensor.Watch
	// RingBytes is the sensor's ring buffer size (sensor.Options.RingBytes);
	// 0 means sensor.DefaultRingBytes.
	RingBytes int
	// SoftwareVersion is reported in capabilities.
	SoftwareVersion string
	// Logger receives the collector's notices. Default: silent.
	Logger *slog.Logger
}

// Collector is fsmond: it publishes the sensor's events, answers the
// collector control operations (health, capabilities, configuration,
// shutdown) and sends heartbeats. While the broker is away the Conn
// buffers the events (bounded); what does not fit is counted, logged and
// reported in health and heartbeats, as are the sensor's losses.
type Collector struct {
	conn    *client.Conn
	opts    Options
	log     *slog.Logger
	cfg     *collector.Config
	started time.Time
	sensor  *sensor.Sensor // set by Run before its goroutines start
	conv    converter      // the sensor reader's

	mu          sync.Mutex
	state       eventbusv1.CollectorState
	sensorErr   error // the sensor's reader stopped with it
	resolved    sensor.Resolved
	resolvedAt  time.Time
	resolveErr  error
	shutdown    chan struct{} // closed by a shutdown request
	reconf      chan struct{} // a configuration change: re-read the intervals
	resolveSoon chan struct{} // an event may have created a watched path

	published, dropped, errs, handled, heartbeats atomic.Uint64
}

// New returns a Collector publishing on conn.
func New(conn *client.Conn, opts Options) (*Collector, error) {
	if opts.ID == "" {
		opts.ID = DefaultID
	}
	if err := collector.ValidateID(opts.ID); err != nil {
		return nil, err
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if opts.ResolveInterval <= 0 {
		opts.ResolveInterval = DefaultResolveInterval
	}
	if opts.ResolveInterval < MinResolveInterval {
		return nil, fmt.Errorf("filesystem: resolve interval %v is under the minimum of %v", opts.ResolveInterval, MinResolveInterval)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Collector{conn: conn, opts: opts, log: log, started: time.Now(), state: eventbusv1.CollectorState_COLLECTOR_STATE_STARTING,
		shutdown: make(chan struct{}), reconf: make(chan struct{}, 1), resolveSoon: make(chan struct{}, 1)}
	c.conv.init()
	initial, _ := structpb.NewStruct(map[string]any{
		"heartbeat_ms": float64(opts.HeartbeatInterval.Milliseconds()), "resolve_ms": float64(opts.ResolveInterval.Milliseconds()),
	})
	c.cfg = collector.NewConfig(initial, collector.ConfigOptions{Validate: validateConfig})
	return c, nil
}

func validateConfig(s *structpb.Struct) []*eventbusv1.FieldViolation {
	var vs []*eventbusv1.FieldViolation
	for k, v := range s.GetFields() {
		switch k {
		case "heartbeat_ms":
			if v.GetNumberValue() < 100 {
				vs = append(vs, &eventbusv1.FieldViolation{Field: k, Description: "must be a number of at least 100"})
			}
		case "resolve_ms":
			if v.GetNumberValue() < float64(MinResolveInterval.Milliseconds()) {
				vs = append(vs, &eventbusv1.FieldViolation{Field: k, Description: fmt.Sprintf("must be a number of at least %d", MinResolveInterval.Milliseconds())})
			}
		default:
			vs = append(vs, &eventbusv1.FieldViolation{Field: k, Description: "unknown key (heartbeat_ms, resolve_ms)"})
		}
	}
	return vs
}

// Run opens the sensor, serves the control operations and publishes events
// until ctx ends (it returns nil) or a shutdown is requested over RPC (it
// returns ErrShutdown). It flushes what it published before it returns. It
// returns an error wrapping sensor.ErrUnsupported when the sensor cannot
// run here. Run may be called once.
func (c *Collector) Run(ctx context.Context) error {
	s, err := sensor.Open(sensor.Options{Watches: c.opts.Watches, RingBytes: c.opts.RingBytes, Logger: c.log})
	if err != nil {
		return err
	}
	c.sensor = s
	c.mu.Lock()
	c.resolved, c.resolvedAt = c.currentResolved(), time.Now()
	c.mu.Unlock()
	srv := rpc.NewServer(c.conn, rpc.ServerOptions{ID: c.opts.ID, MaxConcurrent: 8, Logger: c.log})
	if err := collector.Serve(ctx, srv, c.opts.ID, c); err != nil {
		srv.Close()
		s.Close()
		return err
	}
	c.setState(eventbusv1.CollectorState_COLLECTOR_STATE_RUNNING)
	sctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := c.readSensor(sctx); err != nil {
			c.errs.Add(1)
			c.mu.Lock()
			c.sensorErr = err
			c.mu.Unlock()
			c.log.Error("fsmond: the eBPF filesystem sensor stopped; no file events are collected", "err", err)
		}
	})
	stopSensor := sync.OnceFunc(func() {
		cancel()
		if err := s.Close(); err != nil {
			c.log.Warn("fsmond: closing the eBPF filesystem sensor", "err", err)
		}
		wg.Wait()
	})
	defer stopSensor() // on a panic

	beat := time.NewTicker(c.heartbeatInterval())
	defer beat.Stop()
	resolve := time.NewTicker(c.resolveInterval())
	defer resolve.Stop()
	soon := time.NewTimer(time.Hour)
	soon.Stop()
	defer soon.Stop()
	c.heartbeat()
	var stopErr error
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-c.shutdown:
			stopErr = ErrShutdown
			break loop
		case <-beat.C:
			c.heartbeat()
		case <-resolve.C:
			c.resolve()
		case <-c.resolveSoon:
			soon.Reset(resolveDelay)
		case <-soon.C:
			c.resolve()
		case <-c.reconf:
			beat.Reset(c.heartbeatInterval())
			resolve.Reset(c.resolveInterval())
		}
	}
	c.setState(eventbusv1.CollectorState_COLLECTOR_STATE_STOPPING)
	stopSensor()
	fctx, fcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer fcancel()
	srv.Shutdown(fctx)
	if err := c.conn.Flush(fctx); err != nil {
		c.log.Warn("fsmond: events still buffered at exit were not confirmed by the broker", "err", err)
	}
	c.setState(eventbusv1.CollectorState_COLLECTOR_STATE_STOPPED)
	return stopErr
}

// currentResolved resolves once (Open resolved already; this reads the
// counts back without changing the maps when nothing changed).
func (c *Collector) currentResolved() sensor.Resolved {
	res, err := c.sensor.Resolve()
	if err != nil {
		c.log.Warn("fsmond: resolving the watched paths", "err", err)
	}
	return res
}

func (c *Collector) resolve() {
	res, err := c.sensor.Resolve()
	c.mu.Lock()
	c.resolved, c.resolvedAt, c.resolveErr = res, time.Now(), err
	c.mu.Unlock()
	if err != nil {
		c.errs.Add(1)
		c.log.Warn("fsmond: resolving the watched paths", "err", err)
	}
}

// readSensor publishes the sensor's events until ctx ends or the sensor is
// closed.
func (c *Collector) readSensor(ctx context.Context) error {
	err := c.sensor.Run(ctx, func(e *sensor.Event) error {
		c.publish(e)
		switch e.Op {
		case sensor.OpCreate, sensor.OpRename, sensor.OpLink, sensor.OpSymlink:
			select {
			case c.resolveSoon <- struct{}{}:
			default:
			}
		}
		return nil
	})
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, sensor.ErrClosed) {
		return nil
	}
	return err
}

// publish sends one event. It is called by the sensor's reader only.
func (c *Collector) publish(e *sensor.Event) {
	topic, data := c.conv.convert(e)
	now := time.Now()
	data.Filesystem.CollectionTime = timestamppb.New(now)
	msg := envelope.New(topic, now, &eventbusv1.CollectionEvent{Event: &eventbusv1.CollectionEvent_Filesystem{Filesystem: data}})
	msg.Metadata.SourceId = c.opts.ID
	prio := eventbus.PriorityNormal
	msg.Metadata.Priority = eventbusv1.Priority(prio)
	msg.Correlation = envelope.NewRoot()
	err := c.conn.PublishMsg(&client.Msg{Topic: topic, Priority: prio, Value: envelope.Lazy{M: msg}})
	switch {
	case err == nil:
		c.published.Add(1)
	case errors.Is(err, client.ErrBufferFull):
		if c.dropped.Add(1) == 1 || c.dropped.Load()%1000 == 0 {
			c.log.Warn("fsmond: the broker is unreachable and the send buffer is full; events are being dropped and counted",
				"dropped", c.dropped.Load())
		}
	default:
		c.errs.Add(1)
		c.log.Warn("fsmond: publish failed", "topic", topic, "err", err)
	}
}

func (c *Collector) setState(s eventbusv1.CollectorState) {
	c.mu.Lock()
	c.state = s
	c.mu.Unlock()
}

func (c *Collector) heartbeatInterval() time.Duration {
	cur, _ := c.cfg.Current()
	return time.Duration(cur.GetFields()["heartbeat_ms"].GetNumberValue()) * time.Millisecond
}

func (c *Collector) resolveInterval() time.Duration {
	cur, _ := c.cfg.Current()
	return time.Duration(cur.GetFields()["resolve_ms"].GetNumberValue()) * time.Millisecond
}

// heartbeat publishes the collector's liveness and counters, the sensor's
// among them: sensor_events, sensor_lost, sensor_calls (file system calls
// the kernel filter examined), sensor_matched, sensor_unresolved and
// watched_entries.
func (c *Collector) heartbeat() {
	c.mu.Lock()
	state, res := c.state, c.resolved
	c.mu.Unlock()
	hb := &eventbusv1.Heartbeat{
		CollectorId: c.opts.ID, Sequence: c.heartbeats.Add(1), Status: c.overall(), State: state,
		Uptime: durationpb.New(time.Since(c.started)), Interval: durationpb.New(c.heartbeatInterval()),
		Counters: &eventbusv1.HeartbeatCounters{
			EventsPublished: c.published.Load(), EventsDropped: c.dropped.Load(), Errors: c.errs.Load(),
			RpcRequestsHandled: c.handled.Load(), QueueDepth: uint64(c.conn.Stats().Buffered),
		},
	}
	st := c.sensor.Stats()
	hb.Counters.Custom = map[string]uint64{"sensor_events": st.Events, "sensor_lost": st.Lost, "sensor_calls": st.Calls,
		"sensor_matched": st.Matched, "sensor_unresolved": st.Unresolved, "watched_entries": uint64(res.Entries + res.Names)}
	topic := topics.HealthHeartbeat + "." + c.opts.ID
	msg := envelope.New(topic, time.Now(), hb)
	msg.Metadata.SourceId = c.opts.ID
	msg.Correlation = envelope.NewRoot()
	if err := c.conn.PublishMsg(&client.Msg{Topic: topic, Priority: eventbus.PriorityHigh, Value: envelope.Lazy{M: msg}}); err != nil {
		c.log.Debug("fsmond: heartbeat not sent", "err", err)
	}
}

// overall is the collector's health: unhealthy when the sensor stopped,
// degraded when events were dropped or lost, or resolving failed.
func (c *Collector) overall() eventbusv1.HealthStatus {
	c.mu.Lock()
	sensorErr, resolveErr := c.sensorErr, c.resolveErr
	c.mu.Unlock()
	switch {
	case sensorErr != nil:
		return eventbusv1.HealthStatus_HEALTH_STATUS_UNHEALTHY
	case c.dropped.Load() > 0, resolveErr != nil, c.sensor != nil && c.sensor.Stats().Lost > 0:
		return eventbusv1.HealthStatus_HEALTH_STATUS_DEGRADED
	}
	return eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY
}

// Health reports the sensor (events, losses, the kernel filter's
// counters, the watches) and the bus connection.
func (c *Collector) Health(_ context.Context, req *eventbusv1.HealthCheckRequest) (*eventbusv1.HealthCheckResponse, error) {
	c.handled.Add(1)
	now := time.Now()
	c.mu.Lock()
	state, sensorErr, resolveErr, res, at := c.state, c.sensorErr, c.resolveErr, c.resolved, c.resolvedAt
	c.mu.Unlock()
	var st sensor.Stats
	if c.sensor != nil {
		st = c.sensor.Stats()
	}
	sh := &eventbusv1.ComponentHealth{Name: "sensor", Status: eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY, LastCheck: timestamppb.New(at),
		Message: fmt.Sprintf("%d events, %d lost; the kernel examined %d file system calls and matched %d; %d entries, %d names and %d prefixes watched",
			st.Events, st.Lost, st.Calls, st.Matched, res.Entries, res.Names, res.Prefixes)}
	switch {
	case sensorErr != nil:
		sh.Status, sh.Message = eventbusv1.HealthStatus_HEALTH_STATUS_UNHEALTHY, sensorErr.Error()
	case resolveErr != nil:
		sh.Status, sh.Message = eventbusv1.HealthStatus_HEALTH_STATUS_DEGRADED, resolveErr.Error()
	case st.Lost > 0:
		sh.Status = eventbusv1.HealthStatus_HEALTH_STATUS_DEGRADED
	}
	if req.GetIncludeMetrics() {
		sh.Metrics = map[string]float64{"events": float64(st.Events), "lost": float64(st.Lost), "calls": float64(st.Calls),
			"matched": float64(st.Matched), "unresolved": float64(st.Unresolved), "malformed": float64(st.Malformed),
			"watched_entries": float64(res.Entries), "watched_names": float64(res.Names), "watched_prefixes": float64(res.Prefixes),
			"watch_skipped": float64(res.Skipped)}
	}
	cs := c.conn.Stats()
	bus := &eventbusv1.ComponentHealth{Name: "bus", Status: eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY, LastCheck: timestamppb.New(now),
		Message: fmt.Sprintf("%d events published, %d dropped", c.published.Load(), c.dropped.Load())}
	if c.dropped.Load() > 0 {
		bus.Status = eventbusv1.HealthStatus_HEALTH_STATUS_DEGRADED
	}
	if req.GetIncludeMetrics() {
		bus.Metrics = map[string]float64{"published": float64(c.published.Load()), "dropped": float64(c.dropped.Load()), "buffered_bytes": float64(cs.Buffered)}
	}
	comps := []*eventbusv1.ComponentHealth{sh, bus}
	if len(req.GetComponents()) > 0 {
		comps = slices.DeleteFunc(comps, func(h *eventbusv1.ComponentHealth) bool { return !slices.Contains(req.GetComponents(), h.GetName()) })
	}
	return &eventbusv1.HealthCheckResponse{Status: c.overall(), Components: comps, State: state,
		Uptime: durationpb.New(now.Sub(c.started)), CheckedAt: timestamppb.New(now)}, nil
}

// Capabilities describes fsmond.
func (c *Collector) Capabilities(context.Context, *eventbusv1.GetCapabilitiesRequest) (*eventbusv1.Capabilities, error) {
	c.handled.Add(1)
	return &eventbusv1.Capabilities{
		PublishedTopics:    []string{topics.FilesystemOperations + ".+", topics.FilesystemAccess + ".+", topics.HealthHeartbeat + "." + c.opts.ID},
		SubscribedPatterns: []string{topics.CollectorServices(c.opts.ID), topics.AgentTasksFor(c.opts.ID)},
		Features:           []string{"filesystem.operations", "filesystem.access", "filesystem.source.ebpf"},
		SoftwareVersion:    c.opts.SoftwareVersion,
	}, nil
}

// UpdateConfig validates, applies or rolls back heartbeat_ms and
// resolve_ms.
func (c *Collector) UpdateConfig(_ context.Context, req *eventbusv1.ConfigUpdateRequest) (*eventbusv1.ConfigUpdateResult, error) {
	c.handled.Add(1)
	res, err := c.cfg.Update(req)
	if err != nil || !res.GetApplied() {
		return res, err
	}
	select {
	case c.reconf <- struct{}{}:
	default:
	}
	return res, nil
}

// GracefulShutdown makes Run finish: it stops the sensor, sends what is
// buffered and returns ErrShutdown.
func (c *Collector) GracefulShutdown(context.Context, *eventbusv1.ShutdownRequest) (*eventbusv1.ShutdownResponse, error) {
	return c.stop(), nil
}

// ForceShutdown is GracefulShutdown: fsmond holds nothing a graceful
// shutdown would lose time on.
func (c *Collector) ForceShutdown(context.Context, *eventbusv1.ShutdownRequest) (*eventbusv1.ShutdownResponse, error) {
	return c.stop(), nil
}

func (c *Collector) stop() *eventbusv1.ShutdownResponse {
	c.handled.Add(1)
	c.mu.Lock()
	select {
	case <-c.shutdown:
	default:
		close(c.shutdown)
	}
	c.mu.Unlock()
	return &eventbusv1.ShutdownResponse{PendingMessages: uint64(c.conn.Stats().Buffered), Deadline: timestamppb.New(time.Now().Add(5 * time.Second))}
}
