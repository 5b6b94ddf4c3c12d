// Package agentapi is what programs that talk to daemoneye-agent share
// with it, without linking the agent: its admin service (the methods on
// topics.AgentCollectors, their typed calls and the collector status they
// return), the collector states, and the one-line form of an alert that
// the agent's sinks write and daemoneye-cli prints. daemoneye-cli depends
// on this package, not on the agent (which links the rule engine).
//
// The wire schema is public: gen/daemoneye/agent/v1 (agent.proto), served
// with package rpc's general methods, so a program outside this module
// calls the admin service with rpc.Call and the same Method names. This
// package is internal because its Go helpers are the programs' own.
package agentapi

import (
	"context"
	"fmt"
	"strings"
	"time"

	agentv1 "github.com/daemoneye/daemoneye/gen/daemoneye/agent/v1"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/rpc"
	"github.com/daemoneye/daemoneye/topics"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The admin service's methods, on topics.AgentCollectors. An unknown
// collector id is answered with category NOT_FOUND (rpc.ErrNotFound), code
// CodeUnknownCollector.
var (
	// ListCollectors lists the agent's collectors (all, with the alert
	// counters, or the one named).
	ListCollectors = rpc.Method[*agentv1.ListCollectorsRequest, *agentv1.ListCollectorsResponse]{Name: "list_collectors", Idempotent: true}
	// RestartCollector has the agent's supervisor restart one collector.
	// Not retried: a second restart would follow the first.
	RestartCollector = rpc.Method[*agentv1.RestartCollectorRequest, *agentv1.RestartCollectorResponse]{Name: "restart_collector"}
)

// CodeUnknownCollector is the error code for an id the agent runs no
// collector by.
const CodeUnknownCollector = "unknown_collector"

// List asks the agent on c for its collectors: all of them (and the alert
// counters) when id is empty, else the one named. Errors are rpc.Call's.
func List(ctx context.Context, c rpc.Caller, id string) (*agentv1.ListCollectorsResponse, error) {
	return rpc.Call(ctx, c, topics.AgentCollectors, ListCollectors, &agentv1.ListCollectorsRequest{Id: id})
}

// Restart asks the agent on c to restart collector id and returns the
// collector as it was when the restart was requested.
func Restart(ctx context.Context, c rpc.Caller, id string) (*agentv1.CollectorStatus, error) {
	r, err := rpc.Call(ctx, c, topics.AgentCollectors, RestartCollector, &agentv1.RestartCollectorRequest{Id: id})
	return r.GetCollector(), err
}

// Collector states, as `daemoneye-cli collectors list` shows them. A
// collector is starting from its spawn to its first heartbeat (it is
// connecting to the bus), then running; restarting between an exit and the
// next start; failed once the agent gave up on it (CollectorStatus.Reason
// says why; a collector-failed alert was raised); stopped with the agent.
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

// CollectorStatus is one collector as the agent sees it, in Go: the form
// the agent keeps and `daemoneye-cli collectors list --json` prints (its
// JSON field names are stable). The wire form is agentv1.CollectorStatus.
type CollectorStatus struct {
	ID            string    `json:"id"`
	Kind          string    `json:"kind"`
	State         string    `json:"state"`
	Health        string    `json:"health"`
	PID           int       `json:"pid,omitempty"`
	Restarts      int       `json:"restarts"`
	Since         time.Time `json:"since,omitzero"`
	LastHeartbeat time.Time `json:"last_heartbeat,omitzero"`
	LastExit      string    `json:"last_exit,omitempty"`
	// Reason says why the collector is failed, and what to do.
	Reason    string `json:"reason,omitempty"`
	Published uint64 `json:"events_published"`
	Dropped   uint64 `json:"events_dropped"`
	// Detail is what the collector's last heartbeat reported of itself
	// (its custom counters): for procmond, "source" (ebpf or poll) and
	// the eBPF sensor's "sensor_events", "sensor_lost" and
	// "sensor_unenriched".
	Detail map[string]string `json:"detail,omitempty"`
}

// AlertStats counts the detection engine's work and the sinks'. Fired
// includes the agent's own alerts (collector-failed).
type AlertStats struct {
	Rules    int         `json:"rules"`
	Fired    uint64      `json:"fired"`
	Silenced uint64      `json:"silenced"`
	Sinks    []SinkStats `json:"sinks"`
}

// SinkStats counts one sink's alerts.
type SinkStats struct {
	Sink    string `json:"sink"`
	Sent    uint64 `json:"sent"`
	Failed  uint64 `json:"failed"`
	Dropped uint64 `json:"dropped"`
}

// Collectors is a ListCollectorsResponse in Go, as `daemoneye-cli
// collectors list --json` prints it.
type Collectors struct {
	Collectors []CollectorStatus `json:"collectors,omitempty"`
	Alerts     *AlertStats       `json:"alerts,omitempty"`
}

// ToProto is s on the wire.
func (s CollectorStatus) ToProto() *agentv1.CollectorStatus {
	return &agentv1.CollectorStatus{
		Id: s.ID, Kind: s.Kind, State: s.State, Health: s.Health, Pid: int64(s.PID), Restarts: uint32(s.Restarts),
		Since: timestamp(s.Since), LastHeartbeat: timestamp(s.LastHeartbeat), LastExit: s.LastExit, Reason: s.Reason,
		EventsPublished: s.Published, EventsDropped: s.Dropped, Detail: s.Detail,
	}
}

// StatusFromProto is p in Go.
func StatusFromProto(p *agentv1.CollectorStatus) CollectorStatus {
	return CollectorStatus{
		ID: p.GetId(), Kind: p.GetKind(), State: p.GetState(), Health: p.GetHealth(), PID: int(p.GetPid()), Restarts: int(p.GetRestarts()),
		Since: asTime(p.GetSince()), LastHeartbeat: asTime(p.GetLastHeartbeat()), LastExit: p.GetLastExit(), Reason: p.GetReason(),
		Published: p.GetEventsPublished(), Dropped: p.GetEventsDropped(), Detail: p.GetDetail(),
	}
}

// ToProto is a on the wire.
func (a *AlertStats) ToProto() *agentv1.AlertStats {
	if a == nil {
		return nil
	}
	out := &agentv1.AlertStats{Rules: uint32(a.Rules), Fired: a.Fired, Silenced: a.Silenced}
	for _, s := range a.Sinks {
		out.Sinks = append(out.Sinks, &agentv1.SinkStats{Sink: s.Sink, Sent: s.Sent, Failed: s.Failed, Dropped: s.Dropped})
	}
	return out
}

// CollectorsFromProto is r in Go.
func CollectorsFromProto(r *agentv1.ListCollectorsResponse) Collectors {
	var out Collectors
	for _, c := range r.GetCollectors() {
		out.Collectors = append(out.Collectors, StatusFromProto(c))
	}
	if a := r.GetAlerts(); a != nil {
		out.Alerts = &AlertStats{Rules: int(a.GetRules()), Fired: a.GetFired(), Silenced: a.GetSilenced(), Sinks: []SinkStats{}}
		for _, s := range a.GetSinks() {
			out.Alerts.Sinks = append(out.Alerts.Sinks, SinkStats{Sink: s.GetSink(), Sent: s.GetSent(), Failed: s.GetFailed(), Dropped: s.GetDropped()})
		}
	}
	return out
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func asTime(t *timestamppb.Timestamp) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.AsTime().Local()
}

// FormatAlert is the one-line, human-readable form of an alert: time,
// severity, rule, pid, executable, title. The agent's stdout and file
// sinks write it; daemoneye-cli alerts prints it.
func FormatAlert(a *eventbusv1.Alert) string {
	p := a.GetProcess()
	line := fmt.Sprintf("%s ALERT %-8s %s pid=%d exe=%q user=%s: %s",
		a.GetTimestamp().AsTime().Local().Format(time.DateTime), strings.ToUpper(SeverityName(a.GetSeverity())),
		a.GetRuleId(), p.GetPid(), p.GetExecutablePath(), orDash(p.GetUserName()), a.GetTitle())
	return strings.ToValidUTF8(line, "\uFFFD")
}

// SeverityName is a severity as rules and topics spell it: "high".
func SeverityName(s eventbusv1.AlertSeverity) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "ALERT_SEVERITY_"))
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
