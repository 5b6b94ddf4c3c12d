package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/daemoneye/daemoneye/collector"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/programs/agentapi"
	"github.com/daemoneye/daemoneye/rpc"
	"github.com/daemoneye/daemoneye/topics"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// runAgentAdmin asks the agent's admin service (agentapi) and prints the
// answer: collectors list, status ID, restart ID.
func runAgentAdmin(ctx context.Context, g *global, op string, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("collectors "+op, stderr, "collectors list | status ID | restart ID: ask the agent about its collectors")
	asJSON := fs.Bool("json", false, "print the agent's answer as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	id := ""
	switch {
	case op == "list" && fs.NArg() == 0:
	case op != "list" && fs.NArg() == 1:
		id = fs.Arg(0)
	default:
		return fmt.Errorf("%w: collectors list takes no argument; status and restart take a collector id", errUsage)
	}
	c, err := g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	rc := rpc.NewClient(c, rpc.ClientOptions{ID: cliID(c), BreakerFailures: -1})
	var reply agentapi.Collectors
	if op == "restart" {
		st, err := agentapi.Restart(rctx, rc, id)
		if err != nil {
			return agentError(err)
		}
		reply.Collectors = []agentapi.CollectorStatus{agentapi.StatusFromProto(st)}
	} else {
		list, err := agentapi.List(rctx, rc, id)
		if err != nil {
			return agentError(err)
		}
		reply = agentapi.CollectorsFromProto(list)
	}
	if *asJSON {
		b, err := json.Marshal(reply)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stdout, "%s\n", b)
		return err
	}
	if op == "restart" {
		fmt.Fprintf(stdout, "restarting %s\n", id)
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "COLLECTOR\tKIND\tSOURCE\tSTATE\tHEALTH\tPID\tRESTARTS\tUP\tLAST HEARTBEAT\tEVENTS\tDROPPED\tLAST EXIT\n")
	now := time.Now()
	for _, s := range reply.Collectors {
		up, beat := "-", "-"
		if !s.Since.IsZero() && s.State == agentapi.StateRunning {
			up = now.Sub(s.Since).Round(time.Second).String()
		}
		if !s.LastHeartbeat.IsZero() {
			beat = now.Sub(s.LastHeartbeat).Round(100*time.Millisecond).String() + " ago"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%d\t%d\t%s\n", s.ID, s.Kind, orDash(s.Detail["source"]), s.State, s.Health, s.PID, s.Restarts, up, beat,
			s.Published, s.Dropped, orDash(s.LastExit))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range reply.Collectors {
		if s.Reason != "" {
			fmt.Fprintf(stdout, "\n%s is %s: %s\n", s.ID, s.State, s.Reason)
		}
	}
	if a := reply.Alerts; a != nil {
		fmt.Fprintf(stdout, "\n%d rules; %d alerts raised, %d repeats held back\n", a.Rules, a.Fired, a.Silenced)
		for _, s := range a.Sinks {
			fmt.Fprintf(stdout, "  %s: %d sent, %d failed, %d dropped\n", s.Sink, s.Sent, s.Failed, s.Dropped)
		}
	}
	return nil
}

// agentError says what went wrong asking the agent: its own answer (such
// as an unknown collector) as it gave it, or that no agent answered.
func agentError(err error) error {
	var e *rpc.Error
	if errors.As(err, &e) {
		return fmt.Errorf("the agent: %w", err)
	}
	return fmt.Errorf("ask the agent (is daemoneye-agent running on this socket?): %w", err)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// runPs prints procmond's current snapshot.
func runPs(ctx context.Context, g *global, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("ps", stderr, "ps [--json] [--collector ID]: the processes procmond sees now")
	asJSON := fs.Bool("json", false, "print the snapshot as protobuf JSON")
	id := fs.String("collector", "procmond", "the process collector to ask")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: ps takes no arguments", errUsage)
	}
	c, err := g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	cc := collector.NewClientVia(newCollectorCaller(c))
	var all []*eventbusv1.ProcessRecord
	var first *eventbusv1.ProcessSnapshot
	token := ""
	for {
		rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		snap, err := cc.Snapshot(rctx, *id, &eventbusv1.SnapshotRequest{PageToken: token})
		cancel()
		if err != nil {
			return callError(stdout, err)
		}
		if first == nil {
			first = snap
		}
		all = append(all, snap.GetProcesses()...)
		if token = snap.GetNextPageToken(); token == "" {
			break
		}
	}
	if *asJSON {
		out := proto.Clone(first).(*eventbusv1.ProcessSnapshot)
		out.Processes, out.NextPageToken = all, ""
		return printProto(stdout, out)
	}
	tw := tabwriter.NewWriter(stdout, 2, 8, 2, ' ', 0)
	fmt.Fprintf(tw, "PID\tPPID\tUSER\tTTY\tCPU%%\tRSS\tSTARTED\tCOMMAND\n")
	for _, p := range all {
		cpu, rss := "-", "-"
		if p.CpuPercent != nil {
			cpu = fmt.Sprintf("%.1f", p.GetCpuPercent())
		}
		if p.MemoryRssBytes != nil {
			rss = fmt.Sprintf("%dM", p.GetMemoryRssBytes()>>20)
		}
		cmd := strings.Join(p.GetCommandLine(), " ")
		if cmd == "" {
			cmd = "[" + p.GetName() + "]"
		}
		switch {
		case p.GetExecutableMemfd():
			cmd += "  (executable in memory: memfd)"
		case p.GetExecutableDeleted():
			cmd += "  (executable deleted)"
		}
		if p.GetContainerId() != "" {
			cmd += "  (container " + p.GetContainerId()[:12] + ")"
		}
		user := p.GetUserName()
		if user == "" && p.Uid != nil {
			user = fmt.Sprint(p.GetUid())
		}
		tty := p.GetTty()
		if tty == "" {
			tty = "?"
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", p.GetPid(), p.GetPpid(), orDash(user), strings.ToValidUTF8(tty, "?"), cpu, rss,
			p.GetStartTime().AsTime().Local().Format(time.TimeOnly), strings.ToValidUTF8(truncate(cmd, 120), "?"))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n%d processes (%d not fully readable), collected %s in %v\n", first.GetTotalCount(), first.GetInaccessibleCount(),
		first.GetCollectedAt().AsTime().Local().Format(time.TimeOnly), first.GetCollectionDuration().AsDuration().Round(time.Millisecond))
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// runAlerts prints alerts as the agent raises them.
func runAlerts(ctx context.Context, g *global, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("alerts", stderr, "alerts --follow [--json] [--count N]: print alerts as the agent raises them")
	follow := fs.Bool("follow", false, "keep printing alerts as they come (until Ctrl-C)")
	asJSON := fs.Bool("json", false, "one JSON object per alert")
	count := fs.Int("count", 0, "exit after N alerts")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if !*follow && *count <= 0 {
		return fmt.Errorf("%w: alerts are a stream: use --follow, or --count N", errUsage)
	}
	c, err := g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	sub, err := c.Subscribe(ctx, topics.AllAlerts, 4096)
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, "daemoneye-cli: waiting for alerts (Ctrl-C to stop)")
	for n := 0; *count <= 0 || n < *count; {
		select {
		case <-ctx.Done():
			return nil
		case m, ok := <-sub.C():
			if !ok {
				return sub.Err()
			}
			e := new(eventbusv1.EventBusMessage)
			if err := proto.Unmarshal(m.Payload, e); err != nil || e.GetAlert() == nil {
				fmt.Fprintf(stderr, "daemoneye-cli: skipped a message on %s that is not an alert\n", m.Topic)
				continue
			}
			if *asJSON {
				b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(e.GetAlert())
				if err != nil {
					return err
				}
				fmt.Fprintf(stdout, "%s\n", b)
			} else {
				fmt.Fprintln(stdout, agentapi.FormatAlert(e.GetAlert()))
			}
			n++
		}
	}
	return nil
}
