package detect

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/daemoneye/daemoneye/envelope"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// DefaultRepeatWindow is how long an alert for one rule and one process
// silences the next ones, by default.
const DefaultRepeatWindow = time.Hour

// maxSilenced bounds the (rule, process) pairs remembered for rate
// limiting; beyond it the oldest are forgotten.
const maxSilenced = 65536

// Engine evaluates rules on process events. It is safe for concurrent use.
type Engine struct {
	rules  []*Rule
	window time.Duration

	mu       sync.Mutex
	last     map[silenceKey]time.Time // when each (rule, process) last alerted
	fired    uint64
	silenced uint64
	failed   uint64
}

type silenceKey struct {
	rule  string
	pid   uint32
	start int64 // the process's start time, so a reused pid is another process
}

// Options configures an Engine.
type Options struct {
	// RepeatWindow: after an alert for a rule and a process, the same rule
	// does not alert for the same process again within this window (the
	// silenced alerts are counted). Default 1 h; negative: never silence.
	RepeatWindow time.Duration
}

// NewEngine returns an Engine for rules.
func NewEngine(rules []*Rule, opts Options) *Engine {
	if opts.RepeatWindow == 0 {
		opts.RepeatWindow = DefaultRepeatWindow
	}
	return &Engine{rules: rules, window: opts.RepeatWindow, last: map[silenceKey]time.Time{}}
}

// Rules returns the engine's rules.
func (e *Engine) Rules() []*Rule { return e.rules }

// Stats counts what the engine did.
type Stats struct {
	Fired    uint64 // alerts raised
	Silenced uint64 // alerts held back by the repeat window
	Failed   uint64 // rule evaluations that failed (an error, not false)
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	e.mu.Lock()
	defer e.mu.Unlock()
	return Stats{Fired: e.fired, Silenced: e.silenced, Failed: e.failed}
}

// Evaluate runs every rule on a process event (the envelope of a
// CollectionEvent with process data) and returns an alert for each rule
// that holds and is not silenced. Events of other kinds give nothing. now
// stamps the alerts and drives the repeat window.
func (e *Engine) Evaluate(m *eventbusv1.EventBusMessage, now time.Time) []*eventbusv1.Alert {
	data := m.GetCollectionEvent().GetProcess()
	if data == nil || data.GetProcess() == nil {
		return nil
	}
	p := data.GetProcess()
	parent := data.GetTreeContext()
	if parent == nil {
		parent = &eventbusv1.ProcessTreeContext{}
	}
	vars := map[string]any{
		"process": p,
		"parent":  parent,
		"event":   subtypeName(data.GetSubtype()),
		"changed": data.GetChangedFields().GetPaths(),
		// The kernel's side of the event (see newEnv).
		"kernel_event":   kernelEventName(data.GetKernelEvent()),
		"image_replaced": data.GetImageReplaced(),
		"exit_code":      int64(-1),
		"exit_signal":    int64(data.GetExitSignal()),
	}
	if data.ExitCode != nil {
		vars["exit_code"] = int64(data.GetExitCode())
	}
	if vars["changed"] == nil {
		vars["changed"] = []string{}
	}
	var alerts []*eventbusv1.Alert
	for _, r := range e.rules {
		out, _, err := r.prg.Eval(vars)
		if err != nil {
			e.mu.Lock()
			e.failed++
			e.mu.Unlock()
			continue
		}
		if hit, _ := out.Value().(bool); !hit {
			continue
		}
		if !e.admit(r.ID, p, now) {
			continue
		}
		alerts = append(alerts, &eventbusv1.Alert{
			AlertId: envelope.NewID(), RuleId: r.ID, Title: r.Title, Severity: r.Severity,
			Description: describe(r, p), Process: p,
			TriggeringCorrelationId: m.GetCorrelation().GetCorrelationId(),
			Timestamp:               timestamppb.New(now),
			Tags:                    []string{"rule:" + r.ID, "event:" + subtypeName(data.GetSubtype())},
		})
	}
	return alerts
}

// admit applies the repeat window.
func (e *Engine) admit(rule string, p *eventbusv1.ProcessRecord, now time.Time) bool {
	k := silenceKey{rule: rule, pid: p.GetPid(), start: p.GetStartTime().AsTime().UnixNano()}
	e.mu.Lock()
	defer e.mu.Unlock()
	if at, ok := e.last[k]; ok && e.window > 0 && now.Sub(at) < e.window {
		e.silenced++
		return false
	}
	if len(e.last) >= maxSilenced {
		for k2, at := range e.last { // forget what is past the window first
			if now.Sub(at) >= e.window {
				delete(e.last, k2)
			}
		}
		for k2 := range e.last {
			if len(e.last) < maxSilenced {
				break
			}
			delete(e.last, k2)
		}
	}
	e.last[k] = now
	e.fired++
	return true
}

// describe is the alert's description: the rule's, then what the process
// is. Strings from the operating system are arbitrary bytes: they are
// made valid UTF-8 for the alert's proto3 strings.
func describe(r *Rule, p *eventbusv1.ProcessRecord) string {
	var b strings.Builder
	if r.Description != "" {
		b.WriteString(r.Description)
		b.WriteString(" ")
	}
	fmt.Fprintf(&b, "pid %d (%s), executable %q", p.GetPid(), p.GetName(), p.GetExecutablePath())
	if p.GetUserName() != "" {
		fmt.Fprintf(&b, ", user %s", p.GetUserName())
	}
	return strings.ToValidUTF8(b.String(), "\uFFFD")
}

func subtypeName(s eventbusv1.ProcessEventSubtype) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "PROCESS_EVENT_SUBTYPE_"))
}

// kernelEventName is a rule's name of a kernel event: "exec", "exit",
// "fork", or "" for none (an event a /proc scan found).
func kernelEventName(k eventbusv1.ProcessKernelEvent) string {
	switch k {
	case eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_EXEC:
		return "exec"
	case eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_EXIT:
		return "exit"
	case eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_FORK:
		return "fork"
	case eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_UNSPECIFIED:
		return ""
	}
	return strings.ToLower(strings.TrimPrefix(k.String(), "PROCESS_KERNEL_EVENT_"))
}
