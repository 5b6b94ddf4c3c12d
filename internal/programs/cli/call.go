package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/envelope"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/rpc"
	"github.com/daemoneye/daemoneye/topics"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// defaultRequests are the requests call sends when given no JSON, by the
// stem of the subject: the operations that need no parameters.
var defaultRequests = map[string]func() *eventbusv1.RpcRequest{
	topics.CollectorHealth: func() *eventbusv1.RpcRequest {
		return &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_HealthCheck{HealthCheck: &eventbusv1.HealthCheckRequest{}}}
	},
	topics.CollectorCapabilities: func() *eventbusv1.RpcRequest {
		return &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_GetCapabilities{GetCapabilities: &eventbusv1.GetCapabilitiesRequest{IncludeVersions: true}}}
	},
	topics.CollectorConfig: func() *eventbusv1.RpcRequest {
		return &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_UpdateConfig{UpdateConfig: &eventbusv1.ConfigUpdateRequest{ValidateOnly: true}}}
	},
	topics.AgentTasks: func() *eventbusv1.RpcRequest {
		return &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_GetSnapshot{GetSnapshot: &eventbusv1.SnapshotRequest{}}}
	},
}

// runCall sends one RPC request and prints the response.
func runCall(ctx context.Context, g *global, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("call", stderr, `call [--timeout D] [--idempotent] SUBJECT [JSON]: send an RPC request and print the response

JSON is an RpcRequest in protobuf JSON: a collector operation's body under
its name, such as '{"healthCheck": {"components": ["scanner"]}}' or
'{"updateConfig": {"validateOnly": true}}', or a service's own method with
its request as a typed message or as base64 bytes, such as
'{"method": "list_collectors", "message": {"@type":
"type.googleapis.com/daemoneye.agent.v1.ListCollectorsRequest"}}' or
'{"method": "echo", "raw": "aGk="}' ('-' reads it from standard input).
Message types this program knows: daemoneye.eventbus.v1, daemoneye.agent.v1
and the well-known types they use (google.protobuf.Struct, Timestamp, ...). Without JSON, subjects under
control.collector.health, .capabilities, .config and control.agent.tasks
get the request that needs no parameters. Calls to control.collector.*
go through the agent (control.agent.collector.*). The response is printed
as protobuf JSON; a failed call prints the error's fields and exits with
status 1.`)
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the response")
	idempotent := fs.Bool("idempotent", false, "mark the request idempotent: retried after failures that may pass")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		return fmt.Errorf("%w: call takes a subject and at most one JSON request", errUsage)
	}
	subject := fs.Arg(0)
	req, err := callRequest(subject, fs.Arg(1), fs.NArg() == 2, g.stdin)
	if err != nil {
		return err
	}
	req.Idempotent = req.GetIdempotent() || *idempotent
	c, err := g.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	cctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	resp, err := newCollectorCaller(c).Call(cctx, subject, req)
	if err != nil {
		return callError(stdout, err)
	}
	return printProto(stdout, resp)
}

// callRequest builds the request: from JSON (or standard input for "-"),
// or the default for the subject.
func callRequest(subject, body string, given bool, stdin io.Reader) (*eventbusv1.RpcRequest, error) {
	if !given {
		stem := subject[:max(0, strings.LastIndexByte(subject, '.'))]
		if mk, ok := defaultRequests[stem]; ok {
			return mk(), nil
		}
		return nil, fmt.Errorf("%w: give the request as JSON, such as '{\"start\": {\"reason\": \"maintenance\"}}': %s takes parameters", errUsage, subject)
	}
	if body == "-" {
		b, err := io.ReadAll(io.LimitReader(stdin, 16<<20))
		if err != nil {
			return nil, fmt.Errorf("read the request from standard input: %w", err)
		}
		body = string(b)
	}
	req := new(eventbusv1.RpcRequest)
	if err := protojson.Unmarshal([]byte(body), req); err != nil {
		return nil, fmt.Errorf("%w: the request is not an RpcRequest in protobuf JSON: %v (example: '{\"healthCheck\": {}}')", errUsage, err)
	}
	if req.GetBody() == nil && req.GetMethod() == "" {
		return nil, fmt.Errorf("%w: the request has no operation body and no method; name one, such as '{\"healthCheck\": {}}' or '{\"method\": \"list_collectors\"}'", errUsage)
	}
	return req, nil
}

// callError prints what the service said about a failed call (all the
// fields of its error) and returns the error for the exit status.
func callError(stdout io.Writer, err error) error {
	var e *rpc.Error
	if errors.As(err, &e) {
		if perr := printProto(stdout, e.Detail); perr != nil {
			return perr
		}
	}
	return err
}

// printProto prints m as indented protobuf JSON. protojson varies its
// whitespace on purpose; encoding/json's indentation is stable, for people
// and for scripts alike.
func printProto(w io.Writer, m proto.Message) error {
	b, err := protojson.Marshal(m)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, b, "", "  "); err != nil {
		return err
	}
	out.WriteByte('\n')
	_, err = w.Write(out.Bytes())
	return err
}

// cliID is the caller id the CLI's requests carry.
func cliID(c *client.Conn) string {
	if id := c.Identity(); id != "" {
		return "daemoneye-cli/" + id
	}
	return "daemoneye-cli"
}

// collectorCaller sends the calls for a collector's control services
// (control.collector.<op>.<id>) through the agent, which forwards them
// (topics.AgentForwardPrefix + "<op>.<id>"): on the agent's socket only the
// agent publishes on control.collector.*. Where nothing answers there, or
// the server refuses it (a broker with no agent), it calls the collector
// directly, and does so for the rest of the command. Other topics are called as given. It is safe
// for concurrent use.
type collectorCaller struct {
	rc     *rpc.Client
	direct atomic.Bool
}

func newCollectorCaller(c *client.Conn) *collectorCaller {
	return &collectorCaller{rc: rpc.NewClient(c, rpc.ClientOptions{ID: cliID(c)})}
}

// Call is rpc.Client.Call, routed as above.
func (c *collectorCaller) Call(ctx context.Context, topic string, req *eventbusv1.RpcRequest) (*eventbusv1.RpcResponse, error) {
	rest, ok := strings.CutPrefix(topic, topics.CollectorPrefix)
	if !ok || c.direct.Load() {
		return c.rc.Call(ctx, topic, req)
	}
	fwd := topics.AgentForwardPrefix + rest
	if req.GetRequestId() == "" {
		req.RequestId = envelope.NewID() // the same id for the attempts below
	}
	// The first try is not retried: "no responders" here means no agent.
	probe := proto.Clone(req).(*eventbusv1.RpcRequest)
	probe.Idempotent = false
	resp, err := c.rc.Call(ctx, fwd, probe)
	var e *rpc.Error
	switch {
	case err == nil:
		return resp, nil
	case errors.As(err, &e):
		if req.GetIdempotent() && (errors.Is(e, rpc.ErrUnavailable) || errors.Is(e, rpc.ErrResourceExhausted)) {
			return c.rc.Call(ctx, fwd, req) // the agent is there: retry through it
		}
		return nil, err
	case errors.Is(err, rpc.ErrNoResponders), errors.Is(err, client.ErrRefused):
		// No agent here, or a broker whose ACL grants the collector's
		// topic but not the agent's.
		c.direct.Store(true)
		return c.rc.Call(ctx, topic, req)
	}
	return nil, err
}
