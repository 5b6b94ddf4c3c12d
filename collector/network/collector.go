package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/collector"
	"github.com/daemoneye/daemoneye/collector/network/sensor"
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
	DefaultID                = "netmond"
	DefaultHeartbeatInterval = 5 * time.Second
)

// The topics netmond publishes events on (see the package documentation).
const (
	TopicOpened    = topics.NetworkConnections + ".opened"
	TopicAccepted  = topics.NetworkConnections + ".accepted"
	TopicListening = topics.NetworkConnections + ".listening"
	TopicUDP       = topics.NetworkConnections + ".udp"
)

// ErrShutdown is what Run returns after a GRACEFUL_SHUTDOWN or
// FORCE_SHUTDOWN request: the process should exit.
var ErrShutdown = errors.New("network: shutdown requested over RPC")

// ErrSensor is returned by Run when the eBPF network sensor cannot run
// here; it wraps the sensor's error, which says what is missing.
var ErrSensor = errors.New("network: the eBPF network sensor is unavailable")

// Options configures a Collector. The zero value is usable.
type Options struct {
	// ID is the collector's id: its topics end with it. Default "netmond".
	ID string
	// HeartbeatInterval between heartbeats. Default 5 s.
	HeartbeatInterval time.Duration
	// SoftwareVersion is reported in capabilities.
	SoftwareVersion string
	// Logger receives the collector's notices. Default: silent.
	Logger *slog.Logger
	// ProcRoot is the proc filesystem. Default /proc.
	ProcRoot string
	// SensorRingBytes is sensor.Options.RingBytes; 0 for its default.
	SensorRingBytes int
}

// Collector is netmond. Create it with New and run it with Run; its
// control operations are safe for concurrent use.
type Collector struct {
	conn    *client.Conn
	opts    Options
	log     *slog.Logger
	cfg     *collector.Config
	started time.Time
	procs   procCache // the sensor reader's

	mu        sync.Mutex
	state     eventbusv1.CollectorState
	sensor    *sensor.Sensor
	sensorErr error
	shutdown  chan struct{}
	reconf    chan struct{}

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
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &Collector{conn: conn, opts: opts, log: log, started: time.Now(), state: eventbusv1.CollectorState_COLLECTOR_STATE_STARTING,
		shutdown: make(chan struct{}), reconf: make(chan struct{}, 1), procs: procCache{root: opts.ProcRoot}}
	initial, _ := structpb.NewStruct(map[string]any{"heartbeat_ms": float64(opts.HeartbeatInterval.Milliseconds())})
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
		default:
			vs = append(vs, &eventbusv1.FieldViolation{Field: k, Description: "unknown key (heartbeat_ms)"})
		}
	}
	return vs
}

// Run opens the sensor, serves the control operations and publishes
// events until ctx ends (it returns nil) or a shutdown is requested (it
// returns ErrShutdown). It fails with an error wrapping ErrSensor when the
// sensor cannot run.
func (c *Collector) Run(ctx context.Context) error {
	s, err := sensor.Open(sensor.Options{RingBytes: c.opts.SensorRingBytes, Logger: c.log})
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSensor, err)
	}
	c.mu.Lock()
	c.sensor = s
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
		err := s.Run(sctx, func(e *sensor.Event) error {
			c.publish(e)
			return nil
		})
		if err != nil && sctx.Err() == nil && !errors.Is(err, sensor.ErrClosed) {
			c.errs.Add(1)
			c.mu.Lock()
			c.sensorErr = err
			c.mu.Unlock()
			c.log.Error("netmond: the eBPF network sensor stopped; no network events are collected now", "err", err)
		}
	})
	stopSensor := sync.OnceFunc(func() {
		cancel()
		if err := s.Close(); err != nil {
			c.log.Warn("netmond: closing the eBPF network sensor", "err", err)
		}
		wg.Wait()
	})
	defer stopSensor() // on a panic
	beat := time.NewTicker(c.heartbeatInterval())
	defer beat.Stop()
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
		case <-c.reconf:
			beat.Reset(c.heartbeatInterval())
		}
	}
	c.setState(eventbusv1.CollectorState_COLLECTOR_STATE_STOPPING)
	stopSensor()
	fctx, fcancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer fcancel()
	srv.Shutdown(fctx)
	if err := c.conn.Flush(fctx); err != nil {
		c.log.Warn("netmond: events still buffered at exit were not confirmed by the broker", "err", err)
	}
	c.setState(eventbusv1.CollectorState_COLLECTOR_STATE_STOPPED)
	return stopErr
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

// publish sends one event's envelope.
func (c *Collector) publish(e *sensor.Event) {
	topic, msg := c.envelope(e)
	err := c.conn.PublishMsg(&client.Msg{Topic: topic, Priority: eventbus.PriorityNormal, Value: envelope.Lazy{M: msg}})
	switch {
	case err == nil:
		c.published.Add(1)
	case errors.Is(err, client.ErrBufferFull):
		if c.dropped.Add(1) == 1 || c.dropped.Load()%1000 == 0 {
			c.log.Warn("netmond: the broker is unreachable and the send buffer is full; events are being dropped and counted",
				"dropped", c.dropped.Load())
		}
	default:
		c.errs.Add(1)
		c.log.Warn("netmond: publish failed", "topic", topic, "err", err)
	}
}

// envelope builds the topic and envelope of an event. It is called by the
// sensor reader only (it uses the process cache).
func (c *Collector) envelope(e *sensor.Event) (string, *eventbusv1.EventBusMessage) {
	at := timestamppb.New(e.Time)
	rec := &eventbusv1.NetworkRecord{
		LocalPort: uint32(e.Local.Port()), RemotePort: uint32(e.Remote.Port()),
		Pid: e.PID, Uid: e.UID, CgroupId: e.CgroupID, CollectionTime: at,
	}
	switch e.Protocol {
	case sensor.ProtocolTCP:
		rec.Protocol = eventbusv1.NetworkProtocol_NETWORK_PROTOCOL_TCP
	case sensor.ProtocolUDP, 136: // UDP-Lite
		rec.Protocol = eventbusv1.NetworkProtocol_NETWORK_PROTOCOL_UDP
	}
	rec.IpVersion = 4
	if e.Family == sensor.FamilyIPv6 {
		rec.IpVersion = 6
	}
	rec.LocalAddress = e.Local.Addr().String()
	if e.Kind != sensor.KindListen {
		rec.RemoteAddress = e.Remote.Addr().String()
	}
	if e.PID != 0 {
		p := c.procs.get(e)
		rec.ProcessName, rec.ExecutablePath, rec.ContainerId, rec.ProcessStartTime = p.name, p.exe, p.container, p.start
	}
	data := &eventbusv1.NetworkEventData{Network: rec, Subtype: eventbusv1.NetworkEventSubtype_NETWORK_EVENT_SUBTYPE_CONNECTION_OPENED,
		ConnectionMetadata: &eventbusv1.NetworkConnectionMetadata{FirstSeen: at}}
	var topic string
	switch e.Kind {
	case sensor.KindConnect:
		topic = TopicOpened
		rec.State = eventbusv1.ConnectionState_CONNECTION_STATE_ESTABLISHED
		if e.Result != 0 {
			rec.State = eventbusv1.ConnectionState_CONNECTION_STATE_CLOSED
			data.Subtype = eventbusv1.NetworkEventSubtype_NETWORK_EVENT_SUBTYPE_STATE_CHANGED
		}
	case sensor.KindAccept:
		topic = TopicAccepted
		rec.State = eventbusv1.ConnectionState_CONNECTION_STATE_ESTABLISHED
		data.ConnectionMetadata.Inbound = true
	case sensor.KindListen:
		topic = TopicListening
		rec.State = eventbusv1.ConnectionState_CONNECTION_STATE_LISTEN
		data.Subtype = eventbusv1.NetworkEventSubtype_NETWORK_EVENT_SUBTYPE_LISTEN_STARTED
	default:
		topic = TopicUDP
	}
	msg := envelope.New(topic, e.Time, &eventbusv1.CollectionEvent{Event: &eventbusv1.CollectionEvent_Network{Network: data}})
	msg.Metadata.SourceId = c.opts.ID
	msg.Metadata.Priority = eventbusv1.Priority(eventbus.PriorityNormal)
	msg.Correlation = envelope.NewRoot()
	return topic, msg
}

// heartbeat publishes the collector's liveness and counters, the sensor's
// among them.
func (c *Collector) heartbeat() {
	c.mu.Lock()
	state, s := c.state, c.sensor
	c.mu.Unlock()
	hb := &eventbusv1.Heartbeat{
		CollectorId: c.opts.ID, Sequence: c.heartbeats.Add(1), Status: c.overall(), State: state,
		Uptime: durationpb.New(time.Since(c.started)), Interval: durationpb.New(c.heartbeatInterval()),
		Counters: &eventbusv1.HeartbeatCounters{
			EventsPublished: c.published.Load(), EventsDropped: c.dropped.Load(), Errors: c.errs.Load(),
			RpcRequestsHandled: c.handled.Load(), QueueDepth: uint64(c.conn.Stats().Buffered),
		},
	}
	if s != nil {
		st := s.Stats()
		hb.Counters.Custom = map[string]uint64{"source.ebpf": 1, "sensor_events": st.Events, "sensor_lost": st.Lost,
			"sensor_lost_connect": st.LostConnect, "sensor_lost_accept": st.LostAccept, "sensor_lost_listen": st.LostListen,
			"sensor_lost_udp_send": st.LostUDPSend, "sensor_malformed": st.Malformed}
	}
	topic := topics.HealthHeartbeat + "." + c.opts.ID
	msg := envelope.New(topic, time.Now(), hb)
	msg.Metadata.SourceId = c.opts.ID
	msg.Correlation = envelope.NewRoot()
	if err := c.conn.PublishMsg(&client.Msg{Topic: topic, Priority: eventbus.PriorityHigh, Value: envelope.Lazy{M: msg}}); err != nil {
		c.log.Debug("netmond: heartbeat not sent", "err", err)
	}
}

// overall is the collector's health: unhealthy when the sensor stopped
// or is not open, degraded when it lost events or events were dropped.
func (c *Collector) overall() eventbusv1.HealthStatus {
	c.mu.Lock()
	s, serr := c.sensor, c.sensorErr
	c.mu.Unlock()
	switch {
	case s == nil || serr != nil:
		return eventbusv1.HealthStatus_HEALTH_STATUS_UNHEALTHY
	case c.dropped.Load() > 0 || s.Stats().Lost > 0:
		return eventbusv1.HealthStatus_HEALTH_STATUS_DEGRADED
	}
	return eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY
}

// Health reports the sensor and the bus connection.
func (c *Collector) Health(_ context.Context, req *eventbusv1.HealthCheckRequest) (*eventbusv1.HealthCheckResponse, error) {
	c.handled.Add(1)
	now := time.Now()
	c.mu.Lock()
	state, s, serr := c.state, c.sensor, c.sensorErr
	c.mu.Unlock()
	sh := &eventbusv1.ComponentHealth{Name: "sensor", Status: eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY, LastCheck: timestamppb.New(now)}
	switch {
	case s == nil:
		sh.Status, sh.Message = eventbusv1.HealthStatus_HEALTH_STATUS_UNHEALTHY, "the eBPF network sensor is not open yet"
	case serr != nil:
		sh.Status, sh.Message = eventbusv1.HealthStatus_HEALTH_STATUS_UNHEALTHY, serr.Error()
	default:
		st := s.Stats()
		sh.Message = fmt.Sprintf("eBPF: %d events, %d lost", st.Events, st.Lost)
		if st.Lost > 0 {
			sh.Status = eventbusv1.HealthStatus_HEALTH_STATUS_DEGRADED
		}
		if req.GetIncludeMetrics() {
			sh.Metrics = map[string]float64{"events": float64(st.Events), "lost": float64(st.Lost), "lost_connect": float64(st.LostConnect),
				"lost_accept": float64(st.LostAccept), "lost_listen": float64(st.LostListen), "lost_udp_send": float64(st.LostUDPSend),
				"malformed": float64(st.Malformed)}
		}
	}
	st := c.conn.Stats()
	bus := &eventbusv1.ComponentHealth{Name: "bus", Status: eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY, LastCheck: timestamppb.New(now),
		Message: fmt.Sprintf("%d events published, %d dropped", c.published.Load(), c.dropped.Load())}
	if c.dropped.Load() > 0 {
		bus.Status = eventbusv1.HealthStatus_HEALTH_STATUS_DEGRADED
	}
	if req.GetIncludeMetrics() {
		bus.Metrics = map[string]float64{"published": float64(c.published.Load()), "dropped": float64(c.dropped.Load()), "buffered_bytes": float64(st.Buffered)}
	}
	comps := []*eventbusv1.ComponentHealth{sh, bus}
	if len(req.GetComponents()) > 0 {
		comps = slices.DeleteFunc(comps, func(h *eventbusv1.ComponentHealth) bool { return !slices.Contains(req.GetComponents(), h.GetName()) })
	}
	return &eventbusv1.HealthCheckResponse{Status: c.overall(), Components: comps, State: state,
		Uptime: durationpb.New(now.Sub(c.started)), CheckedAt: timestamppb.New(now)}, nil
}

// Capabilities describes netmond.
func (c *Collector) Capabilities(context.Context, *eventbusv1.GetCapabilitiesRequest) (*eventbusv1.Capabilities, error) {
	c.handled.Add(1)
	return &eventbusv1.Capabilities{
		PublishedTopics:    []string{topics.NetworkConnections + ".+", topics.HealthHeartbeat + "." + c.opts.ID},
		SubscribedPatterns: []string{topics.CollectorServices(c.opts.ID)},
		Features:           []string{"network.connections", "network.source.ebpf"},
		SoftwareVersion:    c.opts.SoftwareVersion,
	}, nil
}

// UpdateConfig validates, applies or rolls back heartbeat_ms.
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

// ForceShutdown is GracefulShutdown.
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

// procKey identifies a process: pid and start time since boot.
type procKey struct {
	pid   uint32
	start time.Duration
}

// procInfo is what /proc said of a process at its first event.
type procInfo struct {
	name, exe, container string
	start                *timestamppb.Timestamp // shared by the process's records; never modified
}

// maxProcs bounds the process cache.
const maxProcs = 4096

// procCache caches procInfo by procKey. It is not safe for concurrent
// use: the sensor reader owns it.
type procCache struct {
	root   string
	m      map[procKey]*procInfo
	boot   time.Time // wall time at boot, for start times
	misses uint64
}

// get returns the process of e, reading /proc the first time.
func (pc *procCache) get(e *sensor.Event) *procInfo {
	k := procKey{e.PID, e.Start}
	if p, ok := pc.m[k]; ok {
		return p
	}
	if pc.m == nil || len(pc.m) >= maxProcs {
		pc.m = make(map[procKey]*procInfo, 64)
	}
	if pc.boot.IsZero() {
		pc.boot = bootTime(pc.root)
	}
	pc.misses++
	dir := pc.root + "/" + strconv.FormatUint(uint64(e.PID), 10)
	p := &procInfo{}
	if !pc.boot.IsZero() && e.Start > 0 {
		p.start = timestamppb.New(pc.boot.Add(e.Start))
	}
	if exe, err := os.Readlink(dir + "/exe"); err == nil {
		p.exe = exe
	}
	if b, err := os.ReadFile(dir + "/comm"); err == nil {
		p.name = string(bytes.TrimRight(b, "\n"))
	} else {
		p.name = string(e.CommBytes())
	}
	if b, err := os.ReadFile(dir + "/cgroup"); err == nil {
		p.container = containerID(b)
	}
	pc.m[k] = p
	return p
}

// bootTime returns the wall time at boot from CLOCK_BOOTTIME's view: now
// minus the time since boot (/proc/uptime is CLOCK_BOOTTIME).
func bootTime(root string) time.Time {
	b, err := os.ReadFile(root + "/uptime")
	if err != nil {
		return time.Time{}
	}
	f := bytes.Fields(b)
	if len(f) == 0 {
		return time.Time{}
	}
	up, err := strconv.ParseFloat(string(f[0]), 64)
	if err != nil {
		return time.Time{}
	}
	return time.Now().Add(-time.Duration(up * float64(time.Second)))
}

// containerID returns the first run of exactly 64 hexadecimal digits in a
// /proc/<pid>/cgroup file (docker-<id>.scope, /docker/<id>,
// cri-containerd-<id>.scope, libpod-<id>.scope), or "".
func containerID(cgroup []byte) string {
	run := 0
	for i := 0; i <= len(cgroup); i++ {
		if i < len(cgroup) && isHex(cgroup[i]) {
			run++
			continue
		}
		if run == 64 {
			return string(cgroup[i-64 : i])
		}
		run = 0
	}
	return ""
}

func isHex(b byte) bool {
	return '0' <= b && b <= '9' || 'a' <= b && b <= 'f'
}
