package agent

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/envelope"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/rpc"
	"github.com/daemoneye/daemoneye/topics"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

const (
	// forwardTimeout bounds a forwarded call whose request carries no
	// deadline, or a later one.
	forwardTimeout = 30 * time.Second
	// maxForwards bounds the forwarded calls in flight; more are refused
	// as overloaded (retryable).
	maxForwards = 64
)

// forwardOps are the collector operation stems a forward may name.
var forwardOps = func() map[string]bool {
	ops := map[string]bool{}
	for _, stem := range []string{topics.CollectorLifecycle, topics.CollectorConfig,
		topics.CollectorHealth, topics.CollectorCapabilities} {
		ops[strings.TrimPrefix(stem, topics.CollectorPrefix)] = true
	}
	return ops
}()

// forwarder owns the goroutines of the forwarded calls in flight.
type forwarder struct {
	sem    chan struct{}
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// start runs fn on a goroutine of the forwarder's, or reports why not:
// too many in flight, or the agent is stopping.
func (f *forwarder) start(fn func()) *rpc.Error {
	select {
	case f.sem <- struct{}{}:
	default:
		return rpc.Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNAVAILABLE, rpc.CodeOverloaded,
			"the agent is forwarding %d collector calls already; retry shortly", maxForwards)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		<-f.sem
		return rpc.Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNAVAILABLE, rpc.CodeShuttingDown, "the agent is stopping")
	}
	f.wg.Go(func() {
		defer func() { <-f.sem }()
		fn()
	})
	return nil
}

// close refuses further forwards and waits for those in flight, which end
// by their deadline or when the agent's context ends.
func (f *forwarder) close() {
	f.mu.Lock()
	f.closed = true
	f.mu.Unlock()
	f.wg.Wait()
}

// serveForward subscribes to topics.AgentForwardPrefix until ctx ends. Each request is
// checked on the subscription's goroutine (quick: no I/O) and forwarded
// on a goroutine of a.fwd, so a slow collector holds up nobody else.
func (a *Agent) serveForward(ctx context.Context) error {
	_, err := a.conn.SubscribeFunc(ctx, topics.AgentForwardPrefix+"#", client.SubscribeOptions{}, func(m *client.Msg) {
		if m.Reply == "" {
			return // a plain message: nobody to answer (operators may only send requests here)
		}
		// The Payload slice is the message's own; the Msg is reused.
		in := &client.Msg{Topic: m.Topic, Reply: m.Reply, Payload: m.Payload, Value: m.Value}
		env := requestEnvelope(in)
		rest := strings.TrimPrefix(in.Topic, topics.AgentForwardPrefix)
		op, id, _ := strings.Cut(rest, ".")
		switch {
		case !forwardOps[op] || id == "" || strings.Contains(id, "."):
			a.answerForward(in, env, rpc.Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_VALIDATION, rpc.CodeInvalidRequest,
				"%s names no collector operation: call %s<lifecycle|config|health|capabilities>.<collector id>", in.Topic, topics.AgentForwardPrefix))
			return
		case !a.runs(id):
			e := rpc.NotFound("unknown_collector", "collector", id)
			e.Detail.Message = fmt.Sprintf("the agent runs no collector %q (it runs %s): see daemoneye-cli collectors list", id, strings.Join(a.collectorIDs(), ", "))
			a.answerForward(in, env, e)
			return
		}
		if e := a.fwd.start(func() { a.forwardOne(ctx, in, env, topics.CollectorPrefix+rest, id) }); e != nil {
			a.answerForward(in, env, e)
		}
	})
	return err
}

// forwardOne calls target with in's request, bounded by the request's
// deadline (at most forwardTimeout), and answers in's reply topic with the
// collector's reply, or with an error in the RPC model.
func (a *Agent) forwardOne(ctx context.Context, in *client.Msg, env *eventbusv1.EventBusMessage, target, id string) {
	deadline := time.Now().Add(forwardTimeout)
	if d := env.GetRpcRequest().GetRequest().GetDeadline(); d != nil && d.AsTime().Before(deadline) {
		deadline = d.AsTime()
	}
	fctx, cancel := context.WithDeadline(ctx, deadline)
	reply, err := a.conn.RequestMsg(fctx, &client.Msg{Topic: target, Payload: in.Payload, Value: in.Value})
	cancel()
	if err == nil {
		if err := a.conn.RespondMsg(in, &client.Msg{Payload: reply.Payload, Value: reply.Value}); err != nil && !errors.Is(err, client.ErrClosed) {
			a.log.Warn("agent: could not pass a collector's reply on", "topic", in.Topic, "err", err)
		}
		return
	}
	var e *rpc.Error
	switch {
	case errors.Is(err, client.ErrNoResponders):
		e = rpc.Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNAVAILABLE, "collector_unavailable",
			"no responders on %s: collector %s is not running or is restarting; see daemoneye-cli collectors list", target, id)
	case ctx.Err() != nil:
		e = rpc.Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNAVAILABLE, rpc.CodeShuttingDown, "the agent is stopping")
	case errors.Is(err, context.DeadlineExceeded):
		e = rpc.Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_TIMEOUT, rpc.CodeDeadlineExceeded,
			"collector %s did not answer on %s by the request's deadline", id, target)
	default:
		e = rpc.Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_INTERNAL, rpc.CodeInternal, "the agent could not forward to %s: %v", target, err)
	}
	a.answerForward(in, env, e)
}

// requestEnvelope is in's request envelope, decoded, or an empty one if
// in carries none (the collector's own RPC server then says what is
// wrong with it).
func requestEnvelope(in *client.Msg) *eventbusv1.EventBusMessage {
	if env, ok := envelope.FromValue(in.Value); ok {
		return env
	}
	env := new(eventbusv1.EventBusMessage)
	if proto.Unmarshal(in.Payload, env) != nil {
		return new(eventbusv1.EventBusMessage)
	}
	return env
}

// answerForward answers in's reply topic with e, as an rpc.Server answers
// a request it refuses.
func (a *Agent) answerForward(in *client.Msg, env *eventbusv1.EventBusMessage, e *rpc.Error) {
	req := env.GetRpcRequest().GetRequest()
	now := time.Now()
	msg := envelope.New(in.Reply, now, &eventbusv1.RpcResponsePayload{Response: &eventbusv1.RpcResponse{
		RequestId: req.GetRequestId(), Operation: req.GetOperation(), Method: req.GetMethod(), Status: e.Status, Error: e.Detail,
		CompletedAt: timestamppb.New(now),
	}})
	msg.Metadata.SourceId = "agent"
	msg.Metadata.TargetId = req.GetClientId()
	if c := env.GetCorrelation(); c != nil {
		msg.Correlation = envelope.Child(c)
	} else {
		msg.Correlation = envelope.NewRoot()
	}
	if err := a.conn.RespondMsg(in, &client.Msg{Value: envelope.Lazy{M: msg}}); err != nil && !errors.Is(err, client.ErrClosed) {
		a.log.Warn("agent: could not answer a forwarded call", "topic", in.Topic, "err", err)
	}
}

// runs reports whether id is one of the agent's collectors.
func (a *Agent) runs(id string) bool {
	for _, p := range a.procs {
		if p.spec.ID == id {
			return true
		}
	}
	return false
}

func (a *Agent) collectorIDs() []string {
	ids := make([]string, 0, len(a.procs))
	for _, p := range a.procs {
		ids = append(ids, p.spec.ID)
	}
	return ids
}
