package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/collector"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/internal/testutil/testproc"
	"github.com/daemoneye/daemoneye/rpc"
	"github.com/daemoneye/daemoneye/server"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
)

// demo is a collector for the tests: healthy, configurable, and slow when
// asked for the component "slow" (it then reports its cancellation on
// events.test.cancelled).
type demo struct {
	instance string
	conn     *client.Conn
	started  time.Time
	cfg      *collector.Config
}

func newDemo(instance string, conn *client.Conn) *demo {
	initial, _ := structpb.NewStruct(map[string]any{"interval_ms": 2000})
	return &demo{instance: instance, conn: conn, started: time.Now(), cfg: collector.NewConfig(initial, collector.ConfigOptions{
		Validate: func(s *structpb.Struct) []*eventbusv1.FieldViolation {
			if v, ok := s.GetFields()["interval_ms"]; ok && v.GetNumberValue() < 100 {
				return []*eventbusv1.FieldViolation{{Field: "interval_ms", Description: "must be at least 100"}}
			}
			return nil
		},
	})}
}

func (d *demo) Health(ctx context.Context, req *eventbusv1.HealthCheckRequest) (*eventbusv1.HealthCheckResponse, error) {
	if slices.Contains(req.GetComponents(), "slow") {
		<-ctx.Done()
		d.conn.Publish("events.test.cancelled", []byte(ctx.Err().Error()))
		d.conn.Flush(context.Background())
		return nil, ctx.Err()
	}
	if slices.Contains(req.GetComponents(), "busy") {
		// Kept: a handler slow on purpose, so that calls overlap.
		time.Sleep(2 * time.Millisecond)
	}
	return &eventbusv1.HealthCheckResponse{
		Status: eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY, State: eventbusv1.CollectorState_COLLECTOR_STATE_RUNNING,
		Uptime:     durationpb.New(time.Since(d.started)),
		Components: []*eventbusv1.ComponentHealth{{Name: "instance", Status: eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY, Message: d.instance}},
	}, nil
}

func (d *demo) Capabilities(context.Context, *eventbusv1.GetCapabilitiesRequest) (*eventbusv1.Capabilities, error) {
	return &eventbusv1.Capabilities{Features: []string{"demo"}, SoftwareVersion: "test", PublishedTopics: []string{"events.test.cancelled"}}, nil
}

func (d *demo) UpdateConfig(_ context.Context, req *eventbusv1.ConfigUpdateRequest) (*eventbusv1.ConfigUpdateResult, error) {
	return d.cfg.Update(req)
}

// serveDemo serves the demo collector on conn, in queue group "demo".
func serveDemo(ctx context.Context, conn *client.Conn, instance string) (*rpc.Server, error) {
	srv := rpc.NewServer(conn, rpc.ServerOptions{ID: instance, QueueGroup: "demo"})
	if err := collector.Serve(ctx, srv, "demo", newDemo(instance, conn)); err != nil {
		srv.Close()
		return nil, err
	}
	return srv, nil
}

// runDemoProcess is the demo collector as a process of its own: the test
// binary started with DAEMONEYE_TEST_COLLECTOR set to the socket. It
// prints "serving" when ready and runs until signalled or killed.
func runDemoProcess(sock, instance string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	conn, err := client.Dial(ctx, sock, client.Options{Name: "demo-" + instance})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer conn.Close()
	srv, err := serveDemo(ctx, conn, instance)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("serving")
	<-ctx.Done()
	srv.Shutdown(context.Background())
	return 0
}

// startDemo starts a demo collector process on sock.
func startDemo(t *testing.T, sock, instance string) *exec.Cmd {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), "DAEMONEYE_TEST_COLLECTOR="+sock, "DAEMONEYE_TEST_INSTANCE="+instance)
	cmd.Stderr = os.Stderr
	testproc.ExpectLine(t, testproc.Lines(testproc.Start(t, cmd, cmd.StdoutPipe)), "demo collector "+instance, "serving")
	return cmd
}

// processes builds the broker and the CLI and starts the broker.
func processes(t *testing.T) (sock, cli string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds binaries and runs processes")
	}
	dir := t.TempDir()
	broker := testproc.Build(t, dir, "github.com/daemoneye/daemoneye/cmd/daemoneye-broker")
	cli = testproc.Build(t, dir, "github.com/daemoneye/daemoneye/cmd/daemoneye-cli")
	sock = filepath.Join(dir, "run", "eventbus.sock")
	testproc.StartBroker(t, broker, sock)
	return sock, cli
}

// runBin runs the CLI binary and returns its exit code and output.
func runBin(t *testing.T, bin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), bin, args...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return exit.ExitCode(), o.String(), e.String()
	case err != nil:
		t.Fatal(err)
	}
	return 0, o.String(), e.String()
}

// daemoneye-cli call and collectors reach a collector in another process
// through daemoneye-broker.
func TestCallAcrossProcesses(t *testing.T) {
	sock, cli := processes(t)
	startDemo(t, sock, "a")
	cases := []struct {
		args []string
		code int
		want []string
	}{
		{[]string{"call", "control.collector.health.demo"}, 0, []string{`"status": "RPC_STATUS_SUCCESS"`, `"HEALTH_STATUS_HEALTHY"`, `"operation": "RPC_OPERATION_HEALTH_CHECK"`}},
		{[]string{"call", "control.collector.health.demo", `{"healthCheck": {"components": ["x"]}, "idempotent": true}`}, 0, []string{`"message": "a"`}},
		{[]string{"call", "control.collector.lifecycle.demo", `{"pause": {"reason": "test"}}`}, 1, []string{`"code": "operation_unsupported"`, "does not support pause"}},
		{[]string{"call", "control.collector.health.nobody"}, 1, []string{"no responders"}},
		{[]string{"call", "control.collector.lifecycle.demo"}, 2, []string{"give the request as JSON"}},
		{[]string{"call", "control.collector.health.demo", `{"bogus": 1}`}, 2, []string{"not an RpcRequest"}},
		{[]string{"collectors", "health", "demo"}, 0, []string{"demo: healthy, running", "instance", "a"}},
		{[]string{"collectors", "capabilities", "demo"}, 0, []string{"health_check, update_config, get_capabilities", "demo test", "1.0, 1.1"}},
		{[]string{"collectors", "config", "demo"}, 0, []string{"configuration version 1", `"interval_ms": 2000`}},
		{[]string{"collectors", "config", "--validate-only", "demo", `{"interval_ms": 500}`}, 0, []string{"valid; would change interval_ms", `"interval_ms": 2000`}},
		{[]string{"collectors", "config", "demo", `{"interval_ms": 50}`}, 1, []string{`"field": "update_config.config.interval_ms"`, "must be at least 100"}},
		{[]string{"collectors", "config", "demo", `{"interval_ms": 500}`}, 0, []string{"applied version 2; changed interval_ms", `"interval_ms": 500`}},
		{[]string{"collectors", "config", "--expected-version", "1", "demo", `{"interval_ms": 700}`}, 1, []string{"config_version_stale"}},
		{[]string{"collectors", "config", "--rollback", "demo"}, 0, []string{"applied version 3", `"interval_ms": 2000`}},
		{[]string{"collectors", "health", "Bad.Id"}, 2, []string{"invalid id"}},
	}
	// An error is said once: "no responders" is not repeated by each layer
	// it crosses.
	if _, out, errOut := runBin(t, cli, "--socket", sock, "call", "control.collector.health.nobody"); strings.Count(out+errOut, "no responders") != 1 {
		t.Errorf("call to nobody says \"no responders\" %d times:\n%s%s", strings.Count(out+errOut, "no responders"), out, errOut)
	}
	for _, tc := range cases {
		code, out, errOut := runBin(t, cli, append([]string{"--socket", sock}, tc.args...)...)
		if code != tc.code {
			t.Errorf("%v: exit %d, want %d\nstdout: %s\nstderr: %s", tc.args, code, tc.code, out, errOut)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(out+errOut, w) {
				t.Errorf("%v: output does not contain %q\nstdout: %s\nstderr: %s", tc.args, w, out, errOut)
			}
		}
	}
}

// TestCallNoRespondersSaysItOnce: daemoneye-cli call to a subject nobody
// serves, through the real binaries and broker, says "no responders" once,
// whichever layers (client, rpc, the agent's forwarder probe, the CLI) the
// error crosses, and names the subject once.
func TestCallNoRespondersSaysItOnce(t *testing.T) {
	sock, cli := processes(t)
	for _, subject := range []string{"control.svc.nobody", "control.collector.health.nobody"} {
		t.Run(subject, func(t *testing.T) {
			code, out, errOut := runBin(t, cli, "--socket", sock, "call", subject, `{"method": "echo", "raw": "aGk="}`)
			text := out + errOut
			if code != 1 {
				t.Errorf("exit %d, want 1\n%s", code, text)
			}
			for _, phrase := range []string{"no responders", "eventbus:", "daemoneye-cli call:"} {
				if n := strings.Count(text, phrase); n != 1 {
					t.Errorf("says %q %d times, want once:\n%s", phrase, n, text)
				}
			}
		})
	}
}

// The deadline of a call made in one process ends the handler's context
// in another.
func TestDeadlineAcrossProcesses(t *testing.T) {
	sock, cli := processes(t)
	startDemo(t, sock, "a")
	watch, err := client.Dial(t.Context(), sock, client.Options{Name: "watch"})
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	sub, err := watch.Subscribe(t.Context(), "events.test.cancelled", 1)
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := runBin(t, cli, "--socket", sock, "call", "--timeout", "300ms", "control.collector.health.demo", `{"healthCheck": {"components": ["slow"]}}`)
	if code != 1 || !strings.Contains(errOut, "deadline exceeded") {
		t.Errorf("exit %d, stdout %s, stderr %s; want a deadline error", code, out, errOut)
	}
	select {
	case m := <-sub.C():
		if string(m.Payload) != context.DeadlineExceeded.Error() {
			t.Errorf("the handler's context ended with %q", m.Payload)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the collector's handler was not cancelled at the caller's deadline")
	}
}

// One member of a queue group is killed (SIGKILL) while calls run: calls
// it held are retried on the other member, and no call fails.
func TestQueueGroupMemberKilledDuringARun(t *testing.T) {
	sock, _ := processes(t)
	a := startDemo(t, sock, "a")
	startDemo(t, sock, "b")
	conn, err := client.Dial(t.Context(), sock, client.Options{Name: "caller"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cc := collector.NewClient(rpc.NewClient(conn, rpc.ClientOptions{AttemptTimeout: 300 * time.Millisecond, Backoff: 5 * time.Millisecond, BreakerFailures: -1}))
	const workers, calls = 4, 100
	var mu sync.Mutex
	answered := map[string]int{}
	var failures []error
	var wg sync.WaitGroup
	killed := make(chan struct{})
	for w := range workers {
		wg.Go(func() {
			for i := range calls {
				if w == 0 && i == calls/4 {
					a.Process.Kill()
					close(killed)
				}
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				r, err := cc.Health(ctx, "demo", &eventbusv1.HealthCheckRequest{Components: []string{"busy"}})
				cancel()
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
				} else {
					answered[r.GetComponents()[0].GetMessage()]++
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	<-killed
	if len(failures) > 0 {
		t.Errorf("%d of %d calls failed; first: %v", len(failures), workers*calls, failures[0])
	}
	if answered["a"] == 0 || answered["b"] == 0 || answered["a"]+answered["b"] != workers*calls-len(failures) {
		t.Errorf("answers by instance %v: want both before the kill, and every call answered", answered)
	}
}

// The CLI's RPC commands in process, against a collector in process.
func TestCallCommands(t *testing.T) {
	path, _, _ := testbroker.Start(t, server.Options{})
	conn, err := client.Dial(t.Context(), path, client.Options{Name: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	srv, err := serveDemo(t.Context(), conn, "inproc")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"call"}, 2, "takes a subject"},
		{[]string{"call", "control.collector.health.demo", "{}", "extra"}, 2, "takes a subject"},
		{[]string{"call", "control.collector.health.demo", "{}"}, 2, "no operation body"},
		{[]string{"call", "--json", "x"}, 2, "flag provided but not defined"},
		{[]string{"collectors"}, 2, "name a subcommand"},
		{[]string{"collectors", "frob"}, 2, "unknown collectors subcommand"},
		{[]string{"collectors", "list"}, 1, "is daemoneye-agent running"},
		{[]string{"collectors", "status"}, 2, "take a collector id"},
		{[]string{"alerts"}, 2, "use --follow"},
		{[]string{"collectors", "health"}, 2, "takes a collector id"},
		{[]string{"collectors", "config", "demo", "[1]"}, 2, "not a JSON object"},
		{[]string{"collectors", "health", "--json", "demo"}, 0, `"status": "HEALTH_STATUS_HEALTHY"`},
		{[]string{"call", "control.collector.config.demo"}, 0, `"configVersion": "1"`},
	}
	for _, tc := range cases {
		code, out, errOut := run(t, append([]string{"--socket", path}, tc.args...)...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("%v: exit %d, output %q %q; want exit %d with %q", tc.args, code, out, errOut, tc.code, tc.want)
		}
	}
}

// On a broker whose ACL grants requests to control.collector.* but not to
// the agent's forwarder, call and collectors still reach the collector
// directly.
func TestCallCollectorUnderBrokerACL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs processes")
	}
	dir := t.TempDir()
	broker := testproc.Build(t, dir, "github.com/daemoneye/daemoneye/cmd/daemoneye-broker")
	cli := testproc.Build(t, dir, "github.com/daemoneye/daemoneye/cmd/daemoneye-cli")
	sock := filepath.Join(dir, "run", "eventbus.sock")
	cfg := filepath.Join(dir, "broker.yaml")
	me := "uid:" + strconv.Itoa(os.Getuid())
	yaml := "acl:\n  \"" + me + "\":\n    publish: [\"events.#\", \"control.health.#\"]\n    request: [\"control.collector.#\"]\n    subscribe: [\"#\"]\n    respond: true\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	testproc.StartBroker(t, broker, sock, "--config", cfg)
	startDemo(t, sock, "a")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"call", "control.collector.health.demo"}, `"status": "RPC_STATUS_SUCCESS"`},
		{[]string{"collectors", "health", "demo"}, "demo: healthy"},
	} {
		code, out, errOut := runBin(t, cli, append([]string{"--socket", sock}, tc.args...)...)
		if code != 0 || !strings.Contains(out, tc.want) {
			t.Errorf("%v: exit %d, want 0 with %q\n%s%s", tc.args, code, tc.want, out, errOut)
		}
	}
}
