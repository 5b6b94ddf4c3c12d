package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/daemoneye/daemoneye/client"
	agentv1 "github.com/daemoneye/daemoneye/gen/daemoneye/agent/v1"
	"github.com/daemoneye/daemoneye/internal/programs/agentapi"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/rpc"
	"github.com/daemoneye/daemoneye/server"
	"github.com/daemoneye/daemoneye/topics"
)

// serveFakeAgent serves the agent's admin service for one collector,
// "demo", and a method of bytes on control.demo.raw, over a socket.
func serveFakeAgent(t *testing.T, path string) {
	t.Helper()
	conn, err := client.Dial(t.Context(), path, client.Options{Name: "agent"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	srv := rpc.NewServer(conn, rpc.ServerOptions{ID: "agent"})
	t.Cleanup(func() { srv.Close() })
	demo := &agentv1.CollectorStatus{Id: "demo", Kind: "procmond", State: agentapi.StateRunning, Health: agentapi.HealthHealthy, Pid: 42}
	find := func(id string) (*agentv1.CollectorStatus, error) {
		if id != "demo" {
			return nil, rpc.NotFound(agentapi.CodeUnknownCollector, "collector", id)
		}
		return demo, nil
	}
	mux := rpc.NewMux("the agent")
	rpc.Handle(mux, agentapi.ListCollectors, func(_ context.Context, req *agentv1.ListCollectorsRequest) (*agentv1.ListCollectorsResponse, error) {
		if req.GetId() == "" {
			return &agentv1.ListCollectorsResponse{Collectors: []*agentv1.CollectorStatus{demo}, Alerts: &agentv1.AlertStats{Rules: 3}}, nil
		}
		c, err := find(req.GetId())
		return &agentv1.ListCollectorsResponse{Collectors: []*agentv1.CollectorStatus{c}}, err
	})
	rpc.Handle(mux, agentapi.RestartCollector, func(_ context.Context, req *agentv1.RestartCollectorRequest) (*agentv1.RestartCollectorResponse, error) {
		c, err := find(req.GetId())
		return &agentv1.RestartCollectorResponse{Collector: c}, err
	})
	if err := srv.Handle(t.Context(), topics.AgentCollectors, mux); err != nil {
		t.Fatal(err)
	}
	raw := rpc.NewMux("the raw demo")
	rpc.HandleRaw(raw, "echo", func(_ context.Context, b []byte) ([]byte, error) { return b, nil })
	if err := srv.Handle(t.Context(), "control.demo.raw", raw); err != nil {
		t.Fatal(err)
	}
}

// collectors list, status and restart ask the agent's admin service over
// the general RPC; call reaches its methods, and methods of bytes, by
// name.
func TestAgentAdminCommands(t *testing.T) {
	path, _, _ := testbroker.Start(t, server.Options{})
	serveFakeAgent(t, path)
	cases := []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"collectors", "list"}, 0, []string{"demo", "procmond", "running", "healthy", "42", "3 rules"}},
		{[]string{"collectors", "status", "demo"}, 0, []string{"demo", "running"}},
		{[]string{"collectors", "status", "nope"}, 1, []string{`the agent: list_collectors on control.agent.collectors: not found: collector "nope" not found (code unknown_collector)`}},
		{[]string{"collectors", "restart", "demo"}, 0, []string{"restarting demo", "running"}},
		{[]string{"collectors", "restart", "nope"}, 1, []string{"not found", "unknown_collector"}},
		{[]string{"call", "control.agent.collectors", `{"method": "list_collectors", "message": {"@type": "type.googleapis.com/daemoneye.agent.v1.ListCollectorsRequest", "id": "demo"}}`}, 0,
			[]string{`"method": "list_collectors"`, `"@type": "type.googleapis.com/daemoneye.agent.v1.ListCollectorsResponse"`, `"id": "demo"`}},
		{[]string{"call", "control.agent.collectors", `{"method": "list_collectors", "message": {"@type": "type.googleapis.com/daemoneye.eventbus.v1.HealthCheckRequest"}}`}, 1,
			[]string{`"code": "wrong_type"`, "method list_collectors takes a daemoneye.agent.v1.ListCollectorsRequest, not a daemoneye.eventbus.v1.HealthCheckRequest"}},
		{[]string{"call", "control.agent.collectors", `{"method": "list_collectors", "message": {"@type": "type.googleapis.com/no.such.Type"}}`}, 2,
			[]string{"not an RpcRequest"}},
		{[]string{"call", "control.demo.raw", `{"method": "echo", "raw": "aGk="}`}, 0, []string{`"raw": "aGk="`}},
		{[]string{"call", "control.demo.raw", `{"method": "nope"}`}, 1, []string{"the raw demo does not support nope"}},
	}
	for _, tc := range cases {
		code, out, errOut := run(t, append([]string{"--socket", path}, tc.args...)...)
		for _, w := range tc.want {
			if code != tc.code || !strings.Contains(out+errOut, w) {
				t.Errorf("%v: exit %d, output %q %q; want exit %d with %q", tc.args, code, out, errOut, tc.code, w)
			}
		}
	}
	// --json keeps the field names scripts read.
	code, out, errOut := run(t, "--socket", path, "collectors", "list", "--json")
	var got agentapi.Collectors
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || len(got.Collectors) != 1 || got.Collectors[0].PID != 42 ||
		!strings.Contains(out, `"events_published"`) || got.Alerts.Rules != 3 {
		t.Errorf("collectors list --json: exit %d, %q %q (%v)", code, out, errOut, err)
	}
}
