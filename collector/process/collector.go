package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/collector"
	"github.com/daemoneye/daemoneye/collector/process/sensor"
	"github.com/daemoneye/daemoneye/envelope"
	"github.com/daemoneye/daemoneye/eventbus"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/rpc"
	"github.com/daemoneye/daemoneye/topics"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Defaults of Options.
const (
	DefaultID                = "procmond"
	DefaultInterval          = 2 * time.Second
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultPageSize          = 500
	// MinInterval is the shortest scan interval the configuration accepts.
	MinInterval = 100 * time.Millisecond
)

// ErrShutdown is what Run returns after a GRACEFUL_SHUTDOWN or
// FORCE_SHUTDOWN request: the process should exit.
var ErrShutdown = errors.New("process: shutdown requested over RPC")

// Options configures a Collector. The zero value is usable.
type Options struct {
	// ID is the collector's id: its topics end with it. Default "procmond".
	ID string
	// Interval between scans. Default 2 s; at least 100 ms.
	Interval time.Duration
	// HeartbeatInterval between heartbeats on control.health.heartbeat.<id>.
	// Default 5 s.
	HeartbeatInterval time.Duration
	// NoHash turns executable hashing off.
	NoHash bool
	// ProcRoot is the proc filesystem. Default /proc.
	ProcRoot string
	// SoftwareVersion is reported in capabilities.
	SoftwareVersion string
	// Logger receives the collector's notices. Default: silent.
	Logger *slog.Logger
	// Source is where new and ended processes are learnt of: SourceAuto
	// (the default), SourceEBPF, SourceConnector or SourcePoll.
	Source Source
	// SensorRingBytes is the size of the eBPF sensor's ring buffer
	// (sensor.Options.RingBytes: a power of two, a multiple of the page
	// size); 0 means sensor.DefaultRingBytes, 256 KiB. A smaller ring loses
	// events sooner when procmond falls behind; the losses are counted in
	// health and heartbeats. Tests make it tiny to cause losses.
	SensorRingBytes int
	// Health, when set, adds a component to each health report (procmond
	// adds its security sensor's). It is called from RPC goroutines.
	Health func(now time.Time, metrics bool) *eventbusv1.ComponentHealth

	connector connectorOptions // tests: the process connector's buffer and subscription
}

// Collector is procmond: it scans the processes every interval, publishes
// what changed as typed envelopes under events.process., answers the
// collector control operations (health, capabilities, configuration,
// snapshot, shutdown) and sends heartbeats. While the broker is away the
// Conn buffers the events (bounded); what does not fit is counted, logged
// and reported in health and heartbeats.
type Collector struct {
	conn    *client.Conn
	opts    Options
	log     *slog.Logger
	scanner *Scanner    // Run's, from its start to its end
	hashes  *HashCache  // used while hashOn
	cgroups cgroupCache // the sensor's cgroup ids resolved to paths
	cfg     *collector.Config
	started time.Time

	mu        sync.Mutex
	cur       map[Key]*eventbusv1.ProcessRecord
	lastScan  time.Time
	scanTook  time.Duration
	scanErr   error
	state     eventbusv1.CollectorState
	warnedAcc bool
	hashOn    bool
	shutdown  chan struct{} // closed by a shutdown request
	reconf    chan struct{} // a configuration change: re-read the intervals

	// The source (source.go). sensor, source and sourceNote are set by
	// Run before it starts the sensor's reader, and not changed after.
	sensor     *sensor.Sensor // nil: polling only
	source     Source
	sourceNote string
	bootTime   time.Time         // the scanner's, for start times
	users      map[uint32]string // the sensor reader's user names
	// Under mu: what the sensor published that the scan may not know yet,
	// the processes whose exit it published, the latest scan by pid, the
	// number of scans, and the scan's events left out as already
	// published.
	sensorRecs  map[Key]sensorRec
	sensorByPID map[uint32]*eventbusv1.ProcessRecord
	exited      map[Key]struct{}
	byPID       map[uint32]*eventbusv1.ProcessRecord
	scans       uint64
	resynced    uint64
	sensorErr   error // the sensor's or the connector's reader stopped with it

	cn     *connector    // the process connector (connector.go); nil unless it is the source
	rescan chan struct{} // a scan asked for now (requestScan)

	published, dropped, errs, handled, heartbeats atomic.Uint64
	// The sensor's events published, and exec events whose process could
	// not be read in /proc any more (published with accessible=false).
	sensorCreated, sensorTerminated, enrichMissed atomic.Uint64
}

// New returns a Collector publishing on conn.
func New(conn *client.Conn, opts Options) (*Collector, error) {
	if opts.ID == "" {
		opts.ID = DefaultID
	}
	if err := collector.ValidateID(opts.ID); err != nil {
		return nil, err
	}
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Interval < MinInterval {
		return nil, fmt.Errorf("process: interval %v is under the minimum of %v", opts.Interval, MinInterval)
	}
	if opts.HeartbeatInterval <= 0 {
		opts.HeartbeatInterval = DefaultHeartbeatInterval
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	src, err := ParseSource(string(opts.Source))
	if err != nil {
		return nil, err
	}
	opts.Source = src
	c := &Collector{conn: conn, opts: opts, log: log, started: time.Now(), state: eventbusv1.CollectorState_COLLECTOR_STATE_STARTING,
		shutdown: make(chan struct{}), reconf: make(chan struct{}, 1), rescan: make(chan struct{}, 1), users: map[uint32]string{},
		sensorRecs: map[Key]sensorRec{}, sensorByPID: map[uint32]*eventbusv1.ProcessRecord{}, exited: map[Key]struct{}{}}
	c.hashes, c.hashOn = &HashCache{}, !opts.NoHash
	if opts.ProcRoot == "" {
		opts.ProcRoot = "/proc"
	}
	if _, err := os.Stat(filepath.Join(opts.ProcRoot, "stat")); err != nil {
		return nil, fmt.Errorf("process: %s is not a proc filesystem: %w", opts.ProcRoot, err)
	}
	c.opts.ProcRoot = opts.ProcRoot
	initial, _ := structpb.NewStruct(map[string]any{
		"interval_ms": float64(opts.Interval.Milliseconds()), "heartbeat_ms": float64(opts.HeartbeatInterval.Milliseconds()), "hash": !opts.NoHash,
	})
	c.cfg = collector.NewConfig(initial, collector.ConfigOptions{Validate: validateConfig})
	return c, nil
}

func validateConfig(s *structpb.Struct) []*eventbusv1.FieldViolation {
	var vs []*eventbusv1.FieldViolation
	for k, v := range s.GetFields() {
		switch k {
		case "interval_ms":
			if v.GetNumberValue() < float64(MinInterval.Milliseconds()) {
				vs = append(vs, &eventbusv1.FieldViolation{Field: k, Description: fmt.Sprintf("must be a number of at least %d", MinInterval.Milliseconds())})
			}
		case "heartbeat_ms":
			if v.GetNumberValue() < 100 {
				vs = append(vs, &eventbusv1.FieldViolation{Field: k, Description: "must be a number of at least 100"})
			}
		case "hash":
			if _, ok := v.GetKind().(*structpb.Value_BoolValue); !ok {
				vs = append(vs, &eventbusv1.FieldViolation{Field: k, Description: "must be true or false"})
			}
		default:
			vs = append(vs, &eventbusv1.FieldViolation{Field: k, Description: "unknown key (interval_ms, heartbeat_ms, hash)"})
		}
	}
	return vs
}

// Run serves the control operations and scans until ctx ends (it returns
// nil) or a shutdown is requested over RPC (it returns ErrShutdown). It
// flushes what it published before it returns. With SourceEBPF or
// SourceConnector it fails with an error wrapping ErrSource when the
// source cannot be opened.
// Run may be called once.
func (c *Collector) Run(ctx context.Context) error {
	var err error
	if c.scanner, err = NewScanner(ScannerOptions{ProcRoot: c.opts.ProcRoot}); err != nil {
		return err
	}
	defer c.scanner.Close()
	c.bootTime = c.scanner.bootTime
	if err := c.openSource(); err != nil {
		return err
	}
	srv := rpc.NewServer(c.conn, rpc.ServerOptions{ID: c.opts.ID, MaxConcurrent: 8, Logger: c.log})
	if err := collector.Serve(ctx, srv, c.opts.ID, c); err != nil {
		srv.Close()
		if c.sensor != nil {
			c.sensor.Close()
		}
		if c.cn != nil {
			c.closeConnector()
		}
		return err
	}
	c.setState(eventbusv1.CollectorState_COLLECTOR_STATE_RUNNING)
	stopSensor := func() {}
	if c.sensor != nil {
		// The sensor's reader, from before the first scan so that nothing
		// started in between is missed; stopped below.
		sctx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := c.readSensor(sctx); err != nil {
				c.errs.Add(1)
				c.mu.Lock()
				c.sensorErr = err
				c.mu.Unlock()
				c.log.Error("procmond: the eBPF process sensor stopped; only the /proc scan runs now", "err", err)
			}
		})
		// Stopped before the final flush, so that what it published is
		// flushed too.
		stopSensor = sync.OnceFunc(func() {
			cancel()
			if err := c.sensor.Close(); err != nil {
				c.log.Warn("procmond: closing the eBPF process sensor", "err", err)
			}
			wg.Wait()
		})
		defer stopSensor() // on a panic
	}
	if c.cn != nil {
		stopSensor = c.startConnector(ctx)
		defer stopSensor()
	}
	c.scanOnce(time.Now())
	scan := time.NewTicker(c.interval())
	defer scan.Stop()
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
		case now := <-scan.C:
			c.scanOnce(now)
		case <-c.rescan:
			c.scanOnce(time.Now())
		case <-beat.C:
			c.heartbeat()
		case <-c.reconf:
			scan.Reset(c.interval())
			beat.Reset(c.heartbeatInterval())
		}
	}
	c.setState(eventbusv1.CollectorState_COLLECTOR_STATE_STOPPING)
	stopSensor()
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	if err := c.conn.Flush(sctx); err != nil {
		c.log.Warn("procmond: events still buffered at exit were not confirmed by the broker", "err", err)
	}
	c.setState(eventbusv1.CollectorState_COLLECTOR_STATE_STOPPED)
	return stopErr
}

func (c *Collector) setState(s eventbusv1.CollectorState) {
	c.mu.Lock()
	c.state = s
	c.mu.Unlock()
}

func (c *Collector) interval() time.Duration {
	cur, _ := c.cfg.Current()
	return time.Duration(cur.GetFields()["interval_ms"].GetNumberValue()) * time.Millisecond
}

func (c *Collector) heartbeatInterval() time.Duration {
	cur, _ := c.cfg.Current()
	return time.Duration(cur.GetFields()["heartbeat_ms"].GetNumberValue()) * time.Millisecond
}

// scanOnce scans, publishes the changes and keeps the scan for snapshots.
func (c *Collector) scanOnce(now time.Time) {
	c.mu.Lock()
	c.scanner.hashes = nil
	if c.hashOn {
		c.scanner.hashes = c.hashes
	}
	c.mu.Unlock()
	start := time.Now()
	cur, err := c.scanner.Scan(now)
	took := time.Since(start)
	if err != nil {
		c.mu.Lock()
		c.scanTook, c.scanErr = took, err
		c.mu.Unlock()
		c.errs.Add(1)
		c.log.Warn("procmond: scan failed", "err", err)
		return
	}
	c.noteInaccessible(cur)
	changes := Diff(c.cur, cur) // c.cur is written only here: no lock to read it
	var byPID map[uint32]*eventbusv1.ProcessRecord
	if len(changes) > 0 || c.sensor != nil || c.cn != nil {
		byPID = make(map[uint32]*eventbusv1.ProcessRecord, len(cur))
		for _, r := range cur {
			byPID[r.GetPid()] = r
		}
	}
	c.mu.Lock()
	c.scanTook, c.scanErr = took, nil
	c.cur, c.lastScan, c.byPID = cur, now, byPID
	c.scans++
	changes = c.resyncLocked(changes, cur)
	c.noteScanCreatedLocked(changes, now)
	c.mu.Unlock()
	for _, ch := range changes {
		c.publish(ch, byPID, now)
	}
}

// noteInaccessible says once why records are incomplete without root.
func (c *Collector) noteInaccessible(cur map[Key]*eventbusv1.ProcessRecord) {
	if c.warnedAcc || os.Geteuid() == 0 {
		return
	}
	n := 0
	for _, r := range cur {
		if !r.GetAccessible() {
			n++
		}
	}
	if n > 0 {
		c.warnedAcc = true
		c.log.Warn("procmond: some processes cannot be fully read with this user and its capabilities (a root agent runs procmond as an unprivileged user with CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH); their records are marked accessible=false",
			"uid", os.Geteuid(), "inaccessible", n, "processes", len(cur))
	}
}

// topicOf is where an event of that subtype is published.
func topicOf(st eventbusv1.ProcessEventSubtype) (string, eventbus.Priority) {
	if st == eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_OBSERVED {
		return envelope.ProcessTopic(st), eventbus.PriorityLow
	}
	return envelope.ProcessTopic(st), eventbus.PriorityNormal
}

func (c *Collector) publish(ch Change, byPID map[uint32]*eventbusv1.ProcessRecord, now time.Time) {
	c.publishAt(ch, treeOf(ch.Record, byPID), now)
}

// publishAt publishes one change with its parent's context (nil: none).
// It is safe for concurrent use.
func (c *Collector) publishAt(ch Change, parent *eventbusv1.ProcessTreeContext, now time.Time) {
	m := c.message(ch, parent, now)
	c.counted(m, c.conn.PublishMsg(m))
}

// publishAll publishes ms as one batch (client.Conn.PublishMsgs): the
// events of one read from the kernel cost one write to the broker.
func (c *Collector) publishAll(ms []*client.Msg) {
	for len(ms) > 0 {
		n, err := c.conn.PublishMsgs(ms)
		c.published.Add(uint64(n))
		ms = ms[n:]
		if err != nil {
			c.counted(ms[0], err)
			ms = ms[1:]
		}
	}
}

// message is the envelope of one change, with its parent's context.
func (c *Collector) message(ch Change, parent *eventbusv1.ProcessTreeContext, now time.Time) *client.Msg {
	topic, prio := topicOf(ch.Subtype)
	data := &eventbusv1.ProcessEventData{Process: ch.Record, Subtype: ch.Subtype, TreeContext: parent}
	if len(ch.Changed) > 0 {
		data.ChangedFields = &fieldmaskpb.FieldMask{Paths: ch.Changed}
	}
	ch.fill(data)
	msg := envelope.New(topic, now, &eventbusv1.CollectionEvent{Event: &eventbusv1.CollectionEvent_Process{Process: data}})
	msg.Metadata.SourceId = c.opts.ID
	msg.Metadata.Priority = eventbusv1.Priority(prio)
	msg.Correlation = envelope.NewRoot()
	return &client.Msg{Topic: topic, Priority: prio, Value: envelope.Lazy{M: msg}}
}

// counted counts the outcome of publishing m.
func (c *Collector) counted(m *client.Msg, err error) {
	switch {
	case err == nil:
		c.published.Add(1)
	case errors.Is(err, client.ErrBufferFull):
		if c.dropped.Add(1) == 1 || c.dropped.Load()%1000 == 0 {
			c.log.Warn("procmond: the broker is unreachable and the send buffer is full; events are being dropped and counted",
				"dropped", c.dropped.Load())
		}
	default:
		c.errs.Add(1)
		c.log.Warn("procmond: publish failed", "topic", m.Topic, "err", err)
	}
}

// treeOf finds a process's parent in the same scan.
func treeOf(r *eventbusv1.ProcessRecord, byPID map[uint32]*eventbusv1.ProcessRecord) *eventbusv1.ProcessTreeContext {
	if p, ok := byPID[r.GetPpid()]; ok {
		return &eventbusv1.ProcessTreeContext{ParentName: p.GetName(), ParentExecutablePath: p.GetExecutablePath()}
	}
	return nil
}

// heartbeat publishes the collector's liveness and counters.
func (c *Collector) heartbeat() {
	c.mu.Lock()
	state := c.state
	c.mu.Unlock()
	hb := &eventbusv1.Heartbeat{
		CollectorId: c.opts.ID, Sequence: c.heartbeats.Add(1), Status: c.overall(), State: state,
		Uptime: durationpb.New(time.Since(c.started)), Interval: durationpb.New(c.heartbeatInterval()),
		Counters: &eventbusv1.HeartbeatCounters{
			EventsPublished: c.published.Load(), EventsDropped: c.dropped.Load(), Errors: c.errs.Load(),
			RpcRequestsHandled: c.handled.Load(), QueueDepth: uint64(c.conn.Stats().Buffered),
		},
	}
	// "source.<source>": 1 names the active source (the agent shows it
	// in daemoneye-cli collectors list).
	hb.Counters.Custom = map[string]uint64{"source." + string(c.source): 1}
	if c.sensor != nil {
		st := c.sensor.Stats()
		hb.Counters.Custom["sensor_events"], hb.Counters.Custom["sensor_lost"] = st.Events, st.Lost
		hb.Counters.Custom["sensor_unenriched"] = c.enrichMissed.Load()
	}
	c.connectorCounters(hb.Counters.Custom)
	topic := topics.HealthHeartbeat + "." + c.opts.ID
	msg := envelope.New(topic, time.Now(), hb)
	msg.Metadata.SourceId = c.opts.ID
	msg.Correlation = envelope.NewRoot()
	if err := c.conn.PublishMsg(&client.Msg{Topic: topic, Priority: eventbus.PriorityHigh, Value: envelope.Lazy{M: msg}}); err != nil {
		c.log.Debug("procmond: heartbeat not sent", "err", err)
	}
}

// overall is the collector's health: unhealthy when the last scan
// failed, degraded when events were dropped, or the eBPF sensor lost
// events or stopped.
func (c *Collector) overall() eventbusv1.HealthStatus {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.scanErr != nil || c.cur == nil:
		return eventbusv1.HealthStatus_HEALTH_STATUS_UNHEALTHY
	case c.dropped.Load() > 0, c.sourceDegradedLocked():
		return eventbusv1.HealthStatus_HEALTH_STATUS_DEGRADED
	}
	return eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY
}

// Health reports the scanner and the bus connection.
func (c *Collector) Health(_ context.Context, req *eventbusv1.HealthCheckRequest) (*eventbusv1.HealthCheckResponse, error) {
	c.handled.Add(1)
	now := time.Now()
	c.mu.Lock()
	scanner := &eventbusv1.ComponentHealth{Name: "scanner", Status: eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY, LastCheck: timestamppb.New(c.lastScan),
		Message: fmt.Sprintf("%d processes, last scan took %v", len(c.cur), c.scanTook.Round(time.Microsecond))}
	if c.scanErr != nil {
		scanner.Status, scanner.Message = eventbusv1.HealthStatus_HEALTH_STATUS_UNHEALTHY, c.scanErr.Error()
	}
	inaccessible := 0
	for _, r := range c.cur {
		if !r.GetAccessible() {
			inaccessible++
		}
	}
	if req.GetIncludeMetrics() {
		scanner.Metrics = map[string]float64{"processes": float64(len(c.cur)), "inaccessible": float64(inaccessible), "scan_seconds": c.scanTook.Seconds()}
	}
	state := c.state
	c.mu.Unlock()
	st := c.conn.Stats()
	bus := &eventbusv1.ComponentHealth{Name: "bus", Status: eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY, LastCheck: timestamppb.New(now),
		Message: fmt.Sprintf("%d events published, %d dropped", c.published.Load(), c.dropped.Load())}
	if d := c.dropped.Load(); d > 0 {
		bus.Status = eventbusv1.HealthStatus_HEALTH_STATUS_DEGRADED
	}
	if req.GetIncludeMetrics() {
		bus.Metrics = map[string]float64{"published": float64(c.published.Load()), "dropped": float64(c.dropped.Load()), "buffered_bytes": float64(st.Buffered)}
	}
	comps := []*eventbusv1.ComponentHealth{scanner, bus, c.sourceHealth(now, req.GetIncludeMetrics())}
	if c.opts.Health != nil {
		comps = append(comps, c.opts.Health(now, req.GetIncludeMetrics()))
	}
	if len(req.GetComponents()) > 0 {
		comps = slices.DeleteFunc(comps, func(h *eventbusv1.ComponentHealth) bool { return !slices.Contains(req.GetComponents(), h.GetName()) })
	}
	return &eventbusv1.HealthCheckResponse{Status: c.overall(), Components: comps, State: state,
		Uptime: durationpb.New(now.Sub(c.started)), CheckedAt: timestamppb.New(now)}, nil
}

// Capabilities describes procmond.
func (c *Collector) Capabilities(context.Context, *eventbusv1.GetCapabilitiesRequest) (*eventbusv1.Capabilities, error) {
	c.handled.Add(1)
	features := []string{"process.lifecycle", "process.tree", "process.source." + string(c.source)}
	c.mu.Lock()
	if c.hashOn {
		features = append(features, "process.hash")
	}
	c.mu.Unlock()
	return &eventbusv1.Capabilities{
		PublishedTopics: []string{topics.ProcessEnumeration + ".+", topics.ProcessLifecycle + ".+", topics.ProcessMetadata + ".+",
			topics.HealthHeartbeat + "." + c.opts.ID},
		SubscribedPatterns: []string{topics.CollectorServices(c.opts.ID), topics.AgentTasksFor(c.opts.ID)},
		Features:           features, SoftwareVersion: c.opts.SoftwareVersion,
	}, nil
}

// UpdateConfig validates, applies or rolls back interval_ms, heartbeat_ms
// and hash.
func (c *Collector) UpdateConfig(_ context.Context, req *eventbusv1.ConfigUpdateRequest) (*eventbusv1.ConfigUpdateResult, error) {
	c.handled.Add(1)
	res, err := c.cfg.Update(req)
	if err != nil || !res.GetApplied() {
		return res, err
	}
	cur, _ := c.cfg.Current()
	hash := cur.GetFields()["hash"].GetBoolValue()
	c.mu.Lock()
	c.hashOn = hash
	c.mu.Unlock()
	select {
	case c.reconf <- struct{}{}:
	default:
	}
	return res, nil
}

// Snapshot returns the processes of the latest scan, by pid, a page at a
// time.
func (c *Collector) Snapshot(_ context.Context, req *eventbusv1.SnapshotRequest) (*eventbusv1.ProcessSnapshot, error) {
	c.handled.Add(1)
	c.mu.Lock()
	all := make([]*eventbusv1.ProcessRecord, 0, len(c.cur))
	inaccessible := 0
	for _, r := range c.cur {
		if len(req.GetPids()) > 0 && !slices.Contains(req.GetPids(), r.GetPid()) {
			continue
		}
		if !r.GetAccessible() {
			inaccessible++
		}
		all = append(all, r)
	}
	at, took := c.lastScan, c.scanTook
	c.mu.Unlock()
	if at.IsZero() {
		return nil, rpc.Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNAVAILABLE, "no_scan_yet", "procmond has not finished its first scan; retry in a moment")
	}
	slices.SortFunc(all, func(a, b *eventbusv1.ProcessRecord) int { return int(a.GetPid()) - int(b.GetPid()) })
	offset := 0
	if t := req.GetPageToken(); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 0 || n > len(all) {
			return nil, rpc.InvalidArgument("invalid_page_token", "the page token is not one this snapshot gave",
				&eventbusv1.FieldViolation{Field: "get_snapshot.page_token", Description: "use next_page_token of the previous page"})
		}
		offset = n
	}
	size := int(req.GetPageSize())
	if size <= 0 {
		size = DefaultPageSize
	}
	end := min(len(all), offset+size)
	snap := &eventbusv1.ProcessSnapshot{Processes: all[offset:end], CollectedAt: timestamppb.New(at), CollectionDuration: durationpb.New(took),
		CollectorId: c.opts.ID, TotalCount: uint32(len(all)), InaccessibleCount: uint32(inaccessible)}
	if end < len(all) {
		snap.NextPageToken = strconv.Itoa(end)
	}
	return snap, nil
}

// GracefulShutdown makes Run finish: it stops scanning, sends what is
// buffered and returns ErrShutdown.
func (c *Collector) GracefulShutdown(context.Context, *eventbusv1.ShutdownRequest) (*eventbusv1.ShutdownResponse, error) {
	return c.stop(), nil
}

// ForceShutdown is GracefulShutdown: procmond holds nothing a graceful
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
