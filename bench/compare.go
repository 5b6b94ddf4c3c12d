package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Versions of the NATS modules this package embeds; go.mod pins them.
const (
	NATSServerVersion = "v2.15.2"
	NATSClientVersion = "v1.55.0"
)

// Defaults for Config.
const (
	DefaultMsgs         = 200_000
	DefaultCount        = 1
	DefaultStallTimeout = 3 * time.Second
	DefaultTrialTimeout = 60 * time.Second
	// DefaultReqPayload is the payload of a request and of its reply.
	DefaultReqPayload = 64
)

// Kind is what a scenario measures.
type Kind string

// Kinds of scenario.
const (
	PubSub   Kind = "pubsub"
	ReqReply Kind = "reqreply"
	// RPC is a health-check call in the DaemonEye envelope: DaemonEye's
	// rpc package against the same envelopes over nats.go request/reply.
	RPC Kind = "rpc"
)

// calls reports whether k is measured in calls (request/reply, RPC).
func (k Kind) calls() bool { return k == ReqReply || k == RPC }

// Transport is the pair of transports a scenario compares.
type Transport string

// Transports compared.
const (
	// Socket is DaemonEye over its UNIX socket against NATS over loopback
	// TCP: what a user of each would pick for local processes.
	Socket Transport = "socket"
	// InProc is DaemonEye's in-process client (client.Connect) against
	// NATS's in-process connection (nats.InProcessServer, a net.Pipe).
	InProc Transport = "inproc"
	// MTLS is both over loopback TCP with mutual TLS.
	MTLS Transport = "mtls"
)

// Scenario is one comparison.
type Scenario struct {
	ID        string    `json:"id"`    // stable, e.g. "pubsub/1:10/socket/128B"
	Title     string    `json:"title"` // for the table
	Kind      Kind      `json:"kind"`
	Transport Transport `json:"transport"`
	Subs      int       `json:"subscribers,omitempty"` // pub/sub only
	Size      int       `json:"payload_bytes"`
}

// Scenarios returns every scenario, in the order they run.
func Scenarios() []Scenario {
	var out []Scenario
	add := func(kind Kind, tr Transport, subs, size int) {
		title := map[Transport]string{Socket: "UNIX vs TCP", InProc: "inproc vs in-process", MTLS: "mTLS vs mTLS"}[tr]
		sc := Scenario{Kind: kind, Transport: tr, Subs: subs, Size: size}
		if kind == PubSub {
			sc.ID = fmt.Sprintf("pubsub/1:%d/%s/%dB", subs, tr, size)
			sc.Title = fmt.Sprintf("pub/sub 1:%d, %s", subs, title)
		} else if kind == ReqReply {
			sc.ID = fmt.Sprintf("reqreply/%s/%dB", tr, size)
			sc.Title = "req/reply, " + title
		} else {
			sc.ID = fmt.Sprintf("rpc/%s", tr)
			sc.Title = "RPC health check, " + title
		}
		out = append(out, sc)
	}
	for _, tr := range []Transport{Socket, InProc} {
		for _, subs := range []int{1, 10} {
			for _, size := range []int{16, 128, 1024} {
				add(PubSub, tr, subs, size)
			}
		}
	}
	add(ReqReply, Socket, 0, DefaultReqPayload)
	add(ReqReply, InProc, 0, DefaultReqPayload)
	add(RPC, Socket, 0, 0)
	add(RPC, InProc, 0, 0)
	add(PubSub, MTLS, 1, 128)
	return out
}

// Select returns the scenarios whose ID or Title contains filter, case
// insensitively; all of them for an empty filter.
func Select(filter string) []Scenario {
	f := strings.ToLower(filter)
	var out []Scenario
	for _, sc := range Scenarios() {
		if f == "" || strings.Contains(strings.ToLower(sc.ID), f) || strings.Contains(strings.ToLower(sc.Title), f) {
			out = append(out, sc)
		}
	}
	return out
}

// Config configures Run. Zero values mean the defaults.
type Config struct {
	// Msgs is the number of measured messages each pub/sub trial publishes
	// (default 200,000); each of N subscribers receives all of them.
	Msgs int
	// Requests is the number of measured sequential requests of a
	// request/reply trial (default Msgs/40, at least 1,000).
	Requests int
	// Count repeats each scenario, both systems alternately, and reports
	// the median (default 1).
	Count int
	// FlushEvery makes pub/sub publishers flush (a round trip to the
	// server) after every FlushEvery messages as well as at the end; 0
	// flushes only at the end. Both systems get the same.
	FlushEvery int
	// Filter selects scenarios (see Select).
	Filter string
	// StallTimeout cuts a trial short when no subscriber has received
	// anything for this long (default 3 s).
	StallTimeout time.Duration
	// TrialTimeout bounds one trial, setup and teardown excluded (default
	// 60 s).
	TrialTimeout time.Duration
	// Progress, if set, receives one line per trial.
	Progress io.Writer
}

func (c *Config) normalize() {
	if c.Msgs <= 0 {
		c.Msgs = DefaultMsgs
	}
	if c.Requests <= 0 {
		c.Requests = max(1000, c.Msgs/40)
	}
	if c.Count <= 0 {
		c.Count = DefaultCount
	}
	if c.StallTimeout <= 0 {
		c.StallTimeout = DefaultStallTimeout
	}
	if c.TrialTimeout <= 0 {
		c.TrialTimeout = DefaultTrialTimeout
	}
}

// Trial is one run of one system in one scenario.
type Trial struct {
	Seconds float64 `json:"seconds"` // first measured publish (or request) to the end
	// Pub/sub: Msgs messages published, Expected = Msgs × subscribers.
	Msgs             int     `json:"msgs,omitempty"`
	Expected         uint64  `json:"expected_deliveries,omitempty"`
	Delivered        uint64  `json:"delivered,omitempty"`
	PublishSeconds   float64 `json:"publish_seconds,omitempty"` // until the final flush returned
	MsgsPerSec       float64 `json:"msgs_per_sec,omitempty"`    // Msgs / Seconds
	DeliveriesPerSec float64 `json:"deliveries_per_sec,omitempty"`
	// Request/reply.
	Calls       int     `json:"calls,omitempty"`
	CallsPerSec float64 `json:"calls_per_sec,omitempty"`
	P50us       float64 `json:"p50_us,omitempty"`
	P99us       float64 `json:"p99_us,omitempty"`
	// Losses: messages known dropped (client and server side) and
	// connections lost (a server closing a slow consumer).
	Dropped     uint64 `json:"dropped"`
	Disconnects uint64 `json:"disconnects"`
	// Complete is false when the trial stalled before every subscriber
	// had every message; the rates then count what arrived.
	Complete bool   `json:"complete"`
	Err      string `json:"error,omitempty"`
}

// rate is the figure the comparison ranks by.
func (t *Trial) rate(k Kind) float64 {
	if k.calls() {
		return t.CallsPerSec
	}
	return t.MsgsPerSec
}

// Measurement is one system's trials in one scenario.
type Measurement struct {
	System    string `json:"system"`
	Transport string `json:"transport"` // "unix", "tcp", "inproc", "in-process (net.Pipe)", "tls"
	// Skipped says why the system did not run.
	Skipped string  `json:"skipped,omitempty"`
	Trials  []Trial `json:"trials,omitempty"`
	// Median holds each figure's median over the trials; Dropped and
	// Disconnects are totals, Complete is true only if every trial was,
	// and Err is the first error.
	Median Trial `json:"median"`
}

func (m *Measurement) ok() bool { return m.Skipped == "" && len(m.Trials) > 0 && m.Median.Err == "" }

// Result is one scenario compared.
type Result struct {
	Scenario
	DaemonEye Measurement `json:"daemoneye"`
	NATS      Measurement `json:"nats"`
	// Ratio is DaemonEye's rate over NATS's (msgs/s or calls/s); 0 when
	// either did not run.
	Ratio float64 `json:"ratio"`
}

// Report is the whole comparison.
type Report struct {
	GoVersion    string    `json:"go_version"`
	GOOS         string    `json:"goos"`
	GOARCH       string    `json:"goarch"`
	NumCPU       int       `json:"num_cpu"`
	GOMAXPROCS   int       `json:"gomaxprocs"`
	NATSServer   string    `json:"nats_server"`
	NATSClient   string    `json:"nats_go"`
	Msgs         int       `json:"msgs"`
	Requests     int       `json:"requests"`
	Count        int       `json:"count"`
	FlushEvery   int       `json:"flush_every"`
	StallTimeout string    `json:"stall_timeout"`
	Started      time.Time `json:"started"`
	Seconds      float64   `json:"seconds"`
	Results      []Result  `json:"results"`
}

// system is one side of the comparison.
type system struct {
	name  string
	start func(ctx context.Context, tr Transport, p *pki) (env, error)
}

var (
	daemonEyeSystem = system{"DaemonEye", startDaemonEye}
	natsSystem      = system{"NATS", startNATS}
)

// errSkip marks an environment that cannot run in this build (DaemonEye
// without a TLS client).
var errSkip = errors.New("skipped")

// Run runs the selected scenarios and returns the report. It returns an
// error only if ctx ended or nothing was selected; failures of single
// trials are in the report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg.normalize()
	scs := Select(cfg.Filter)
	if len(scs) == 0 {
		return nil, fmt.Errorf("bench: no scenario matches %q; the scenarios are %s", cfg.Filter, scenarioIDs())
	}
	rep := &Report{
		GoVersion: runtime.Version(), GOOS: runtime.GOOS, GOARCH: runtime.GOARCH,
		NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		NATSServer: NATSServerVersion, NATSClient: NATSClientVersion,
		Msgs: cfg.Msgs, Requests: cfg.Requests, Count: cfg.Count, FlushEvery: cfg.FlushEvery,
		StallTimeout: cfg.StallTimeout.String(), Started: time.Now(),
	}
	var p *pki
	for _, sc := range scs {
		if sc.Transport == MTLS && p == nil {
			var err error
			if p, err = newPKI(); err != nil {
				return nil, err
			}
		}
		res := Result{Scenario: sc}
		for rep := range cfg.Count {
			order := []*Measurement{&res.DaemonEye, &res.NATS}
			systems := []system{daemonEyeSystem, natsSystem}
			if rep%2 == 1 {
				slices.Reverse(order)
				slices.Reverse(systems)
			}
			for i, sys := range systems {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				m := order[i]
				m.System = sys.name
				if m.Skipped != "" {
					continue
				}
				tr, err := runTrial(ctx, sys, sc, &cfg, p, m)
				if errors.Is(err, errSkip) {
					m.Skipped = err.Error()
					progress(&cfg, "%-32s %-9s skipped: %v", sc.ID, sys.name, err)
					continue
				}
				if err != nil {
					tr.Err = err.Error()
				}
				m.Trials = append(m.Trials, tr)
				progress(&cfg, "%-32s %-9s %s", sc.ID, sys.name, trialLine(sc.Kind, &tr))
			}
		}
		for _, m := range []*Measurement{&res.DaemonEye, &res.NATS} {
			m.Median = median(m.Trials)
		}
		if res.DaemonEye.ok() && res.NATS.ok() {
			if n := res.NATS.Median.rate(sc.Kind); n > 0 {
				res.Ratio = res.DaemonEye.Median.rate(sc.Kind) / n
			}
		}
		rep.Results = append(rep.Results, res)
	}
	rep.Seconds = time.Since(rep.Started).Seconds()
	return rep, nil
}

func scenarioIDs() string {
	var ids []string
	for _, sc := range Scenarios() {
		ids = append(ids, sc.ID)
	}
	return strings.Join(ids, ", ")
}

func progress(cfg *Config, format string, args ...any) {
	if cfg.Progress != nil {
		fmt.Fprintf(cfg.Progress, format+"\n", args...)
	}
}

func trialLine(k Kind, t *Trial) string {
	var s string
	if k.calls() {
		s = fmt.Sprintf("%s calls/s  p50 %.1f µs  p99 %.1f µs", si(t.CallsPerSec), t.P50us, t.P99us)
	} else {
		s = fmt.Sprintf("%s msgs/s  %s deliveries/s  %.3fs  dropped %d", si(t.MsgsPerSec), si(t.DeliveriesPerSec), t.Seconds, t.Dropped)
	}
	if !t.Complete {
		s += "  INCOMPLETE"
	}
	if t.Disconnects > 0 {
		s += fmt.Sprintf("  disconnects %d", t.Disconnects)
	}
	if t.Err != "" {
		s += "  error: " + t.Err
	}
	return s
}

// runTrial starts a fresh environment for sys, runs one trial of sc in it,
// and shuts it down.
func runTrial(ctx context.Context, sys system, sc Scenario, cfg *Config, p *pki, m *Measurement) (Trial, error) {
	runtime.GC()
	e, err := sys.start(ctx, sc.Transport, p)
	if err != nil {
		return Trial{}, err
	}
	defer e.close()
	m.Transport = e.transport()
	tctx, cancel := context.WithTimeout(ctx, cfg.TrialTimeout)
	defer cancel()
	if sc.Kind.calls() {
		return reqReplyTrial(tctx, e, sc, cfg)
	}
	return pubSubTrial(tctx, e, sc, cfg)
}

// median returns each figure's median over ts (see Measurement.Median).
func median(ts []Trial) Trial {
	if len(ts) == 0 {
		return Trial{}
	}
	med := func(f func(*Trial) float64) float64 {
		v := make([]float64, 0, len(ts))
		for i := range ts {
			if ts[i].Err == "" {
				v = append(v, f(&ts[i]))
			}
		}
		if len(v) == 0 {
			return 0
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	m := Trial{
		Seconds:          med(func(t *Trial) float64 { return t.Seconds }),
		Msgs:             ts[0].Msgs,
		Expected:         ts[0].Expected,
		Delivered:        uint64(med(func(t *Trial) float64 { return float64(t.Delivered) })),
		PublishSeconds:   med(func(t *Trial) float64 { return t.PublishSeconds }),
		MsgsPerSec:       med(func(t *Trial) float64 { return t.MsgsPerSec }),
		DeliveriesPerSec: med(func(t *Trial) float64 { return t.DeliveriesPerSec }),
		Calls:            ts[0].Calls,
		CallsPerSec:      med(func(t *Trial) float64 { return t.CallsPerSec }),
		P50us:            med(func(t *Trial) float64 { return t.P50us }),
		P99us:            med(func(t *Trial) float64 { return t.P99us }),
		Complete:         true,
	}
	for i := range ts {
		m.Dropped += ts[i].Dropped
		m.Disconnects += ts[i].Disconnects
		m.Complete = m.Complete && ts[i].Complete
		if m.Err == "" {
			m.Err = ts[i].Err
		}
	}
	return m
}
