package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/daemoneye/daemoneye/envelope"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/rpc"
	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// The RPC scenario: a health check in the DaemonEye envelope. DaemonEye
// runs it with its rpc package; NATS carries the same envelopes, encoded
// and decoded by the same steps (what an application on NATS would have to
// write), with nats.go's request/reply.

const rpcTopic = "control.collector.health.bench"

func healthRequest() *eventbusv1.RpcRequest {
	return &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_HealthCheck{HealthCheck: &eventbusv1.HealthCheckRequest{}}}
}

func healthy(context.Context, *rpc.Request) (*eventbusv1.RpcResponse, error) {
	return &eventbusv1.RpcResponse{Body: &eventbusv1.RpcResponse_HealthCheck{HealthCheck: &eventbusv1.HealthCheckResponse{
		Status: eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY,
	}}}, nil
}

func (c *deConn) serveRPC(ctx context.Context, topic string) error {
	c.srv = rpc.NewServer(c.c, rpc.ServerOptions{})
	if err := c.srv.Handle(ctx, topic, rpc.HandlerFunc(healthy)); err != nil {
		return fmt.Errorf("DaemonEye: serve %s: %w", topic, err)
	}
	return nil
}

func (c *deConn) call(ctx context.Context, topic string) error {
	if c.rc == nil {
		c.rc = rpc.NewClient(c.c, rpc.ClientOptions{})
	}
	_, err := c.rc.Call(ctx, topic, healthRequest())
	return err
}

// serveRPC answers as rpc.Server does: decode, validate, build the
// response envelope (a child correlation, the processing time), encode.
func (c *natsConn) serveRPC(_ context.Context, topic string) error {
	s, err := c.nc.Subscribe(topic, func(m *nats.Msg) {
		start := time.Now()
		in := new(eventbusv1.EventBusMessage)
		if proto.Unmarshal(m.Data, in) != nil || envelope.Validate(in) != nil {
			return
		}
		req := in.GetRpcRequest().GetRequest()
		resp, _ := healthy(context.Background(), nil)
		now := time.Now()
		resp.RequestId, resp.Operation, resp.Status, resp.CompletedAt = req.GetRequestId(), req.GetOperation(), eventbusv1.RpcStatus_RPC_STATUS_SUCCESS, timestamppb.New(now)
		out := envelope.New(m.Reply, now, &eventbusv1.RpcResponsePayload{
			Response:           resp,
			PerformanceMetrics: &eventbusv1.RpcPerformanceMetrics{ProcessingTime: durationpb.New(now.Sub(start))},
		})
		out.Metadata.SourceId, out.Metadata.TargetId = "bench", req.GetClientId()
		out.Correlation = envelope.Child(in.GetCorrelation())
		b, err := proto.Marshal(out)
		if err == nil {
			m.Respond(b)
		}
	})
	if err != nil {
		return fmt.Errorf("NATS: subscribe the service to %s: %w", topic, err)
	}
	if err := s.SetPendingLimits(-1, -1); err != nil {
		return fmt.Errorf("NATS: pending limits: %w", err)
	}
	return c.nc.Flush()
}

// call makes a request as rpc.Client does: an envelope with a new root
// correlation and the deadline, encoded; the reply decoded and checked.
func (c *natsConn) call(ctx context.Context, topic string) error {
	req := healthRequest()
	req.RequestId, req.Operation, req.ClientId, req.Attempt = envelope.NewID(), eventbusv1.RpcOperation_RPC_OPERATION_HEALTH_CHECK, "bench", 1
	if d, ok := ctx.Deadline(); ok {
		req.Deadline = timestamppb.New(d)
	}
	msg := envelope.New(topic, time.Now(), &eventbusv1.RpcRequestPayload{Request: req})
	msg.Metadata.SourceId = "bench"
	msg.Correlation = envelope.NewRoot()
	b, err := proto.Marshal(msg)
	if err != nil {
		return err
	}
	reply, err := c.nc.RequestWithContext(ctx, topic, b)
	if err != nil {
		return err
	}
	out := new(eventbusv1.EventBusMessage)
	if err := proto.Unmarshal(reply.Data, out); err != nil {
		return err
	}
	if r := out.GetRpcResponse().GetResponse(); r.GetRequestId() != req.GetRequestId() || r.GetStatus() != eventbusv1.RpcStatus_RPC_STATUS_SUCCESS {
		return fmt.Errorf("NATS: bad response %v", r)
	}
	return nil
}
