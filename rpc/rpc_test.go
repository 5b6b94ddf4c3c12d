package rpc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/envelope"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/testutil/clienttest"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
	"github.com/daemoneye/daemoneye/server"
	"github.com/daemoneye/daemoneye/topics"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" { // a process of BenchmarkCallProcs
		os.Exit(runRole(role))
	}
	goleak.VerifyTestMain(m)
}

const healthTopic = "control.collector.health.demo"

func healthReq() *eventbusv1.RpcRequest {
	return &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_HealthCheck{HealthCheck: &eventbusv1.HealthCheckRequest{Components: []string{"scanner"}}}}
}

func healthy(context.Context, *Request) (*eventbusv1.RpcResponse, error) {
	return &eventbusv1.RpcResponse{Body: &eventbusv1.RpcResponse_HealthCheck{HealthCheck: &eventbusv1.HealthCheckResponse{
		Status: eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY,
	}}}, nil
}

// serve starts a Server on conn answering topic with h, closed at the end
// of the test.
func serve(t *testing.T, conn *client.Conn, opts ServerOptions, topic string, h HandlerFunc) *Server {
	t.Helper()
	s := NewServer(conn, opts)
	t.Cleanup(func() { s.Close() })
	if err := s.Handle(t.Context(), topic, h); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestCallRoundTrip(t *testing.T) {
	clienttest.EachTransport(t, func(t *testing.T, dial func(string) *client.Conn) {
		var got *Request
		var gotCtx context.Context
		serve(t, dial("svc"), ServerOptions{ID: "demo-1"}, "control.collector.health.+", func(ctx context.Context, r *Request) (*eventbusv1.RpcResponse, error) {
			got, gotCtx = r, ctx
			return healthy(ctx, r)
		})
		c := NewClient(dial("caller"), ClientOptions{ID: "agent"})
		root := envelope.NewRoot(envelope.Tag{Key: "case", Value: "roundtrip"})
		ctx, cancel := context.WithTimeout(WithCorrelation(t.Context(), root), 3*time.Second)
		defer cancel()
		req := healthReq()
		req.TargetId = "demo"
		resp, err := c.Call(ctx, healthTopic, req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetHealthCheck().GetStatus() != eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY || resp.GetRequestId() != req.GetRequestId() ||
			resp.GetOperation() != eventbusv1.RpcOperation_RPC_OPERATION_HEALTH_CHECK || resp.GetCompletedAt() == nil {
			t.Errorf("response %v", resp)
		}
		// What the handler saw: the request as sent, with the call's
		// deadline, and the caller's workflow.
		if got.Topic != healthTopic || got.Call.GetClientId() != "agent" || got.Call.GetTargetId() != "demo" || got.Call.GetAttempt() != 1 {
			t.Errorf("handler got topic %q, request %v", got.Topic, got.Call)
		}
		want, _ := ctx.Deadline()
		if d := got.Call.GetDeadline().AsTime(); !d.Equal(want) {
			t.Errorf("deadline in the request %v, want the caller's %v", d, want)
		}
		hc := got.Envelope.GetCorrelation()
		if hc.GetParentCorrelationId() != root.GetCorrelationId() || hc.GetRootCorrelationId() != root.GetRootCorrelationId() || hc.GetTraceId() != root.GetTraceId() {
			t.Errorf("request correlation %v is not a child of the caller's %v", hc, root)
		}
		if CorrelationFrom(gotCtx) != hc {
			t.Error("the handler's context does not carry the request's correlation")
		}
		if d, ok := gotCtx.Deadline(); !ok || !d.Equal(want) {
			t.Errorf("handler deadline %v, %v; want %v", d, ok, want)
		}
	})
}

// Every field of the error model crosses the bus unchanged, for every
// status and detail kind.
func TestErrorRoundTrip(t *testing.T) {
	other, err := anypb.New(&eventbusv1.ResourceInfo{ResourceType: "packed"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		err  *Error
		is   error
	}{
		{"validation", &Error{Status: eventbusv1.RpcStatus_RPC_STATUS_ERROR, Detail: &eventbusv1.RpcError{
			Code: "config_invalid", Category: eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_VALIDATION, Message: "scan_interval too short",
			Metadata: map[string]string{"collector_id": "demo", "key": "scan_interval"},
			Detail: &eventbusv1.RpcError_FieldViolations{FieldViolations: &eventbusv1.FieldViolations{Violations: []*eventbusv1.FieldViolation{
				{Field: "update_config.config.scan_interval", Description: "at least 100ms"},
				{Field: "update_config.config.hash", Description: "unknown key"},
			}}},
		}}, ErrInvalidArgument},
		{"not found", &Error{Status: eventbusv1.RpcStatus_RPC_STATUS_ERROR, Detail: &eventbusv1.RpcError{
			Code: "collector_not_registered", Category: eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_NOT_FOUND, Message: "no such collector",
			Detail: &eventbusv1.RpcError_Resource{Resource: &eventbusv1.ResourceInfo{ResourceType: "collector", ResourceId: "x", State: "absent"}},
		}}, ErrNotFound},
		{"unavailable with retry hint", &Error{Status: eventbusv1.RpcStatus_RPC_STATUS_UNAVAILABLE, Detail: &eventbusv1.RpcError{
			Code: "starting", Category: eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNAVAILABLE, Message: "warming up",
			Retryable: true, RetryAfter: durationpb.New(1500 * time.Millisecond),
			Detail: &eventbusv1.RpcError_Other{Other: other},
		}}, ErrUnavailable},
		{"timeout", &Error{Status: eventbusv1.RpcStatus_RPC_STATUS_TIMEOUT, Detail: &eventbusv1.RpcError{
			Code: "scan_slow", Category: eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_TIMEOUT, Message: "scan took too long",
		}}, ErrTimeout},
		{"cancelled", &Error{Status: eventbusv1.RpcStatus_RPC_STATUS_CANCELLED, Detail: &eventbusv1.RpcError{
			Code: "cancelled", Message: "stopped by the operator",
		}}, ErrCancelled},
		{"conflict", &Error{Status: eventbusv1.RpcStatus_RPC_STATUS_ERROR, Detail: &eventbusv1.RpcError{
			Code: "config_version_stale", Category: eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_CONFLICT, Message: "version 3 is current",
		}}, ErrConflict},
		{"permission", &Error{Status: eventbusv1.RpcStatus_RPC_STATUS_ERROR, Detail: &eventbusv1.RpcError{
			Code: "denied", Category: eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_PERMISSION, Message: "no",
		}}, ErrPermissionDenied},
		{"unsupported", &Error{Status: eventbusv1.RpcStatus_RPC_STATUS_ERROR, Detail: &eventbusv1.RpcError{
			Code: "operation_unsupported", Category: eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNSUPPORTED, Message: "no pause",
		}}, ErrUnsupported},
		{"exhausted", &Error{Status: eventbusv1.RpcStatus_RPC_STATUS_ERROR, Detail: &eventbusv1.RpcError{
			Code: "queue_full", Category: eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_RESOURCE_EXHAUSTED, Message: "full",
		}}, ErrResourceExhausted},
		{"internal", &Error{Status: eventbusv1.RpcStatus_RPC_STATUS_ERROR, Detail: &eventbusv1.RpcError{
			Code: "bug", Category: eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_INTERNAL, Message: "oops",
		}}, ErrInternal},
	}
	clienttest.EachTransport(t, func(t *testing.T, dial func(string) *client.Conn) {
		var i atomic.Int32
		serve(t, dial("svc"), ServerOptions{}, healthTopic, func(context.Context, *Request) (*eventbusv1.RpcResponse, error) {
			return nil, cases[i.Load()].err
		})
		c := NewClient(dial("caller"), ClientOptions{MaxAttempts: 1})
		for k, tc := range cases {
			i.Store(int32(k))
			_, err := c.Call(t.Context(), healthTopic, healthReq())
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%s: %v is not an *Error", tc.name, err)
			}
			if e.Status != tc.err.Status {
				t.Errorf("%s: status %v, want %v", tc.name, e.Status, tc.err.Status)
			}
			if !proto.Equal(tc.err.Detail, e.Detail) {
				t.Errorf("%s: detail changed on the way:\nsent     %v\nreceived %v", tc.name, tc.err.Detail, e.Detail)
			}
			if !errors.Is(err, tc.is) {
				t.Errorf("%s: %v does not match %v", tc.name, err, tc.is)
			}
		}
	})
}

// A request nobody serves fails at once, not at its deadline.
func TestNoResponders(t *testing.T) {
	clienttest.EachTransport(t, func(t *testing.T, dial func(string) *client.Conn) {
		c := NewClient(dial("caller"), ClientOptions{MaxAttempts: 1})
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		_, err := c.Call(ctx, healthTopic, healthReq())
		if !errors.Is(err, ErrNoResponders) || errors.Is(err, ErrTimeout) {
			t.Fatalf("Call = %v, want ErrNoResponders", err)
		}
		if ctx.Err() != nil {
			t.Fatal("the call waited for its deadline")
		}
	})
}

// The deadline passes while the handler works: the handler's context ends
// at the caller's deadline, the caller gets ErrTimeout, and the late
// answer is harmless.
func TestDeadlineInTheMiddleOfAHandler(t *testing.T) {
	clienttest.EachTransport(t, func(t *testing.T, dial func(string) *client.Conn) {
		started := make(chan struct{})
		cause := make(chan error, 1)
		srv := serve(t, dial("svc"), ServerOptions{}, healthTopic, func(ctx context.Context, r *Request) (*eventbusv1.RpcResponse, error) {
			close(started)
			select {
			case <-ctx.Done():
				cause <- ctx.Err()
				return nil, ctx.Err()
			case <-time.After(10 * time.Second):
				cause <- nil
				return healthy(ctx, r)
			}
		})
		c := NewClient(dial("caller"), ClientOptions{})
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		_, err := c.Call(ctx, healthTopic, healthReq())
		<-started
		if !errors.Is(err, ErrTimeout) {
			t.Errorf("Call = %v, want ErrTimeout", err)
		}
		if got := <-cause; !errors.Is(got, context.DeadlineExceeded) {
			t.Errorf("handler's context ended with %v, want DeadlineExceeded", got)
		}
		wait.Until(t, 5*time.Second, "the late answer", func() bool { return srv.Stats().Failed == 1 })
	})
}

// Idempotent calls are retried after retryable failures with the same
// request id; other calls are not.
func TestRetries(t *testing.T) {
	clienttest.EachTransport(t, func(t *testing.T, dial func(string) *client.Conn) {
		var mu sync.Mutex
		var ids []string
		var attempts []uint32
		serve(t, dial("svc"), ServerOptions{}, healthTopic, func(ctx context.Context, r *Request) (*eventbusv1.RpcResponse, error) {
			mu.Lock()
			ids, attempts = append(ids, r.Call.GetRequestId()), append(attempts, r.Call.GetAttempt())
			n := len(ids)
			mu.Unlock()
			if n%3 != 0 {
				return nil, Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNAVAILABLE, "warming_up", "try again").WithRetryAfter(time.Millisecond)
			}
			return healthy(ctx, r)
		})
		c := NewClient(dial("caller"), ClientOptions{BreakerFailures: -1})
		req := healthReq()
		req.Idempotent = true
		if _, err := c.Call(t.Context(), healthTopic, req); err != nil {
			t.Fatalf("idempotent call = %v after %d attempts", err, len(ids))
		}
		if len(ids) != 3 || ids[0] != ids[2] || attempts[0] != 1 || attempts[2] != 3 {
			t.Errorf("attempts %v with ids %v; want 3 attempts of one request", attempts, ids)
		}
		_, err := c.Call(t.Context(), healthTopic, healthReq())
		if !errors.Is(err, ErrUnavailable) || len(ids) != 4 {
			t.Errorf("non-idempotent call = %v after %d attempts in all; want ErrUnavailable after one", err, len(ids))
		}
	})
}

// A handler that does not answer: a retry after AttemptTimeout reaches the
// other member of the queue group, and the call succeeds.
func TestQueueGroupFailoverAfterLostAttempt(t *testing.T) {
	clienttest.EachTransport(t, func(t *testing.T, dial func(string) *client.Conn) {
		var lost atomic.Int32
		stuck := func(ctx context.Context, r *Request) (*eventbusv1.RpcResponse, error) {
			lost.Add(1)
			<-ctx.Done() // as if the instance had died holding it
			return nil, ctx.Err()
		}
		serve(t, dial("a"), ServerOptions{ID: "a", QueueGroup: "demo"}, healthTopic, stuck)
		serve(t, dial("b"), ServerOptions{ID: "b", QueueGroup: "demo"}, healthTopic, healthy)
		c := NewClient(dial("caller"), ClientOptions{AttemptTimeout: 100 * time.Millisecond, Backoff: time.Millisecond})
		for range 4 { // round robin: at least one call meets the stuck member first
			req := healthReq()
			req.Idempotent = true
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			_, err := c.Call(ctx, healthTopic, req)
			cancel()
			if err != nil {
				t.Fatalf("Call = %v", err)
			}
		}
		if lost.Load() == 0 {
			t.Fatal("no call met the stuck member: the test proved nothing")
		}
	})
}

// A service at MaxConcurrent refuses at once with UNAVAILABLE.
func TestOverloadIsRefusedAtOnce(t *testing.T) {
	clienttest.EachTransport(t, func(t *testing.T, dial func(string) *client.Conn) {
		release := make(chan struct{})
		in := make(chan struct{}, 1)
		srv := serve(t, dial("svc"), ServerOptions{MaxConcurrent: 1}, healthTopic, func(ctx context.Context, r *Request) (*eventbusv1.RpcResponse, error) {
			in <- struct{}{}
			<-release
			return healthy(ctx, r)
		})
		c := NewClient(dial("caller"), ClientOptions{MaxAttempts: 1})
		first := make(chan error, 1)
		go func() { _, err := c.Call(t.Context(), healthTopic, healthReq()); first <- err }()
		<-in
		_, err := c.Call(t.Context(), healthTopic, healthReq())
		var e *Error
		if !errors.Is(err, ErrUnavailable) || !errors.As(err, &e) || e.Detail.GetCode() != CodeOverloaded || !e.Detail.GetRetryable() {
			t.Errorf("second call = %v, want UNAVAILABLE overloaded, retryable", err)
		}
		close(release)
		if err := <-first; err != nil {
			t.Errorf("first call = %v", err)
		}
		if st := srv.Stats(); st.Rejected != 1 || st.Handled != 1 || st.Received != 2 {
			t.Errorf("stats %+v", st)
		}
	})
}

// Requests in an older minor version are served; another major version is
// refused with a message that says what to do.
func TestVersionNegotiation(t *testing.T) {
	clienttest.EachTransport(t, func(t *testing.T, dial func(string) *client.Conn) {
		serve(t, dial("svc"), ServerOptions{}, healthTopic, healthy)
		conn := dial("raw")
		for _, tc := range []struct {
			major, minor uint32
			ok           bool
		}{
			{1, 0, true}, {1, envelope.VersionMinor, true}, {1, envelope.VersionMinor + 5, true}, {2, 0, false}, {0, 9, false},
		} {
			req := healthReq()
			req.RequestId, req.Operation = envelope.NewID(), eventbusv1.RpcOperation_RPC_OPERATION_HEALTH_CHECK
			m := envelope.New(healthTopic, time.Now(), &eventbusv1.RpcRequestPayload{Request: req})
			m.Metadata.Version = &eventbusv1.MessageVersion{Major: tc.major, Minor: tc.minor}
			m.Correlation = envelope.NewRoot()
			payload, _ := proto.Marshal(m)
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			reply, err := conn.Request(ctx, healthTopic, payload)
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			resp, err := decodeResponse(reply, req)
			if err != nil {
				t.Fatal(err)
			}
			if tc.ok != (resp.GetStatus() == eventbusv1.RpcStatus_RPC_STATUS_SUCCESS) {
				t.Errorf("version %d.%d: status %v (%v)", tc.major, tc.minor, resp.GetStatus(), resp.GetError())
			}
			if !tc.ok {
				e := resp.GetError()
				if e.GetCode() != CodeVersionUnsupported || e.GetCategory() != eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNSUPPORTED ||
					!strings.Contains(e.GetMessage(), "major version 1") {
					t.Errorf("version %d.%d refused with %v", tc.major, tc.minor, e)
				}
			}
		}
	})
}

// Garbage gets an answer that says what is wrong, not silence.
func TestMalformedRequestsAreAnswered(t *testing.T) {
	clienttest.EachTransport(t, func(t *testing.T, dial func(string) *client.Conn) {
		srv := serve(t, dial("svc"), ServerOptions{}, healthTopic, healthy)
		conn := dial("raw")
		noBody := envelope.New(healthTopic, time.Now(), &eventbusv1.RpcRequestPayload{Request: &eventbusv1.RpcRequest{RequestId: "r1", Operation: eventbusv1.RpcOperation_RPC_OPERATION_HEALTH_CHECK}})
		noBody.Correlation = envelope.NewRoot()
		nb, _ := proto.Marshal(noBody)
		for name, payload := range map[string][]byte{"garbage": []byte("\xff\xff not protobuf"), "no body": nb} {
			ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
			reply, err := conn.Request(ctx, healthTopic, payload)
			cancel()
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			m, ok := envelope.FromValue(reply.Value) // in process
			if !ok {
				m = new(eventbusv1.EventBusMessage)
				if err := proto.Unmarshal(reply.Payload, m); err != nil {
					t.Fatal(err)
				}
			}
			if e := m.GetRpcResponse().GetResponse().GetError(); e.GetCode() != CodeInvalidRequest {
				t.Errorf("%s: answered %v", name, m.GetRpcResponse())
			}
		}
		if st := srv.Stats(); st.Malformed != 2 {
			t.Errorf("Malformed = %d, want 2", st.Malformed)
		}
	})
}

// Shutdown lets a running handler answer and serves the requests already
// on their way to the service, then the service is gone: whether the
// handler runs on a worker or inline (where the busy handler holds up the
// reading of the waiting requests).
func TestShutdownFinishesRunningHandlers(t *testing.T) {
	for _, inline := range []bool{false, true} {
		t.Run(fmt.Sprintf("inline=%v", inline), func(t *testing.T) { testShutdownFinishes(t, inline) })
	}
}

func testShutdownFinishes(t *testing.T, inline bool) {
	clienttest.EachTransport(t, func(t *testing.T, dial func(string) *client.Conn) {
		in, release := make(chan struct{}), make(chan struct{})
		srv := NewServer(dial("svc"), ServerOptions{})
		var once sync.Once
		fn := func(ctx context.Context, r *Request) (*eventbusv1.RpcResponse, error) {
			once.Do(func() { close(in); <-release })
			return healthy(ctx, r)
		}
		var h Handler = HandlerFunc(fn)
		if inline {
			h = InlineFunc(fn)
		}
		if err := srv.Handle(t.Context(), healthTopic, h); err != nil {
			t.Fatal(err)
		}
		conn := dial("caller")
		c := NewClient(conn, ClientOptions{MaxAttempts: 1})
		const calls = 6
		results := make(chan error, calls)
		call := func() { _, err := c.Call(t.Context(), healthTopic, healthReq()); results <- err }
		go call()
		<-in
		// Five more while the handler is busy, routed to the service before
		// Shutdown begins.
		for range calls - 1 {
			go call()
		}
		wait.Until(t, 10*time.Second, "the calls published", func() bool { return conn.Stats().Published >= calls })
		if err := conn.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		shut := make(chan error, 1)
		go func() { shut <- srv.Shutdown(t.Context()) }()
		// The handler is released once Shutdown has taken the
		// subscriptions (its first step), so the drain is what serves
		// the calls on their way.
		wait.Until(t, 10*time.Second, "Shutdown to begin", func() bool {
			srv.mu.Lock()
			defer srv.mu.Unlock()
			return srv.subs == nil
		})
		close(release)
		for i := range calls {
			if err := <-results; err != nil {
				t.Errorf("call %d of those on their way during Shutdown = %v", i, err)
			}
		}
		if err := <-shut; err != nil {
			t.Errorf("Shutdown = %v", err)
		}
		if st := srv.Stats(); st.Received != calls || st.Handled != calls {
			t.Errorf("stats %+v, want %d received and handled", st, calls)
		}
		if _, err := c.Call(t.Context(), healthTopic, healthReq()); !errors.Is(err, ErrNoResponders) {
			t.Errorf("call after Shutdown = %v, want ErrNoResponders", err)
		}
		if err := srv.Handle(t.Context(), healthTopic, HandlerFunc(healthy)); !errors.Is(err, ErrServerClosed) {
			t.Errorf("Handle after Shutdown = %v", err)
		}
	})
}

// An InlineHandler's quick requests are answered while one of its slow
// ones (run on a goroutine of its own) is still working.
func TestInlineHandlerRunsSlowRequestsElsewhere(t *testing.T) {
	clienttest.EachTransport(t, func(t *testing.T, dial func(string) *client.Conn) {
		in, release := make(chan struct{}), make(chan struct{})
		h := splitHandler{slow: func() { close(in); <-release }}
		srv := NewServer(dial("svc"), ServerOptions{})
		defer srv.Close()
		unblock := sync.OnceFunc(func() { close(release) })
		defer unblock() // before Close, if the test fails early
		if err := srv.Handle(t.Context(), healthTopic, h); err != nil {
			t.Fatal(err)
		}
		c := NewClient(dial("caller"), ClientOptions{MaxAttempts: 1})
		slow := make(chan error, 1)
		go func() {
			_, err := c.Call(t.Context(), healthTopic, &eventbusv1.RpcRequest{Body: &eventbusv1.RpcRequest_Start{Start: &eventbusv1.LifecycleRequest{}}})
			slow <- err
		}()
		<-in
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		for i := range 3 {
			if _, err := c.Call(ctx, healthTopic, healthReq()); err != nil {
				t.Fatalf("quick call %d while a slow one runs: %v", i, err)
			}
		}
		unblock()
		if err := <-slow; err != nil {
			t.Errorf("slow call = %v", err)
		}
		if st := srv.Stats(); st.Handled != 4 || st.Received != 4 {
			t.Errorf("stats %+v", st)
		}
	})
}

// splitHandler answers health checks inline and runs everything else,
// after calling slow, on a goroutine of its own.
type splitHandler struct{ slow func() }

func (h splitHandler) Inline(r *Request) bool { return r.Call.GetHealthCheck() != nil }

func (h splitHandler) ServeRPC(ctx context.Context, r *Request) (*eventbusv1.RpcResponse, error) {
	if r.Call.GetHealthCheck() == nil {
		h.slow()
		return &eventbusv1.RpcResponse{Body: &eventbusv1.RpcResponse_Start{Start: &eventbusv1.LifecycleResponse{}}}, nil
	}
	return healthy(ctx, r)
}

// An in-process caller and a service behind the socket (the agent calling
// a collector), and the other way round: the in-process side's envelopes,
// never encoded for in-process use, are encoded for the socket.
func TestCallsBetweenProcessAndSocket(t *testing.T) {
	path, _, b := testbroker.Start(t, server.Options{})
	dial := func(addr string) *client.Conn { return clienttest.Conn(t, addr, b, "") }
	for _, tc := range []struct{ caller, service string }{{"inproc", "unix://" + path}, {"unix://" + path, "inproc"}} {
		var got *Request
		srv := serve(t, dial(tc.service), ServerOptions{}, healthTopic, func(ctx context.Context, r *Request) (*eventbusv1.RpcResponse, error) {
			got = r
			return healthy(ctx, r)
		})
		c := NewClient(dial(tc.caller), ClientOptions{ID: "agent"})
		resp, err := c.Call(t.Context(), healthTopic, healthReq())
		if err != nil {
			t.Fatalf("%s calling %s: %v", tc.caller, tc.service, err)
		}
		if resp.GetHealthCheck().GetStatus() != eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY || got.Call.GetClientId() != "agent" {
			t.Errorf("%s calling %s: response %v, request %v", tc.caller, tc.service, resp, got.Call)
		}
		srv.Close()
	}
}

// Repeated failures to reach a service open its circuit; after the
// cooldown one call goes through and closes it.
func TestCircuitBreaker(t *testing.T) {
	clienttest.EachTransport(t, func(t *testing.T, dial func(string) *client.Conn) {
		c := NewClient(dial("caller"), ClientOptions{MaxAttempts: 1, BreakerFailures: 3, BreakerCooldown: 200 * time.Millisecond})
		for i := range 3 {
			if _, err := c.Call(t.Context(), healthTopic, healthReq()); !errors.Is(err, ErrNoResponders) {
				t.Fatalf("call %d = %v", i, err)
			}
		}
		opened := time.Now()
		_, err := c.Call(t.Context(), healthTopic, healthReq())
		if !errors.Is(err, ErrCircuitOpen) {
			t.Fatalf("fourth call = %v, want ErrCircuitOpen", err)
		}
		// Other topics are not affected.
		if _, err := c.Call(t.Context(), "control.collector.health.other", healthReq()); !errors.Is(err, ErrNoResponders) {
			t.Errorf("call to another topic = %v", err)
		}
		serve(t, dial("svc"), ServerOptions{}, healthTopic, healthy)
		// Until the cooldown ends the caller refuses at once, without a
		// trial; then the first call is the trial, and it succeeds.
		wait.For(t, 10*time.Second, "the cooldown to end", func() error {
			_, err := c.Call(t.Context(), healthTopic, healthReq())
			if err != nil && !errors.Is(err, ErrCircuitOpen) {
				t.Fatalf("call after the cooldown = %v", err)
			}
			return err
		})
		if took := time.Since(opened); took < 190*time.Millisecond {
			t.Errorf("the circuit closed after %v, before the cooldown of 200ms", took)
		}
		if _, err := c.Call(t.Context(), healthTopic, healthReq()); err != nil {
			t.Fatalf("call after the circuit closed = %v", err)
		}
	})
}

var _ = timestamppb.Now

// A request that reaches a Server after Close (it was on its way) is
// refused with an answer the caller can use: it names the request, and
// says to retry elsewhere.
func TestRequestAfterCloseIsRefusedRetryably(t *testing.T) {
	clienttest.EachTransport(t, func(t *testing.T, dial func(string) *client.Conn) {
		svc, caller := dial("svc"), dial("caller")
		inbox, err := caller.Subscribe(t.Context(), topics.InboxPrefix+"test.+", 1)
		if err != nil {
			t.Fatal(err)
		}
		srv := NewServer(svc, ServerOptions{})
		srv.Close()
		req := healthReq()
		req.RequestId, req.Operation = "req-1", eventbusv1.RpcOperation_RPC_OPERATION_HEALTH_CHECK
		payload, err := proto.Marshal(envelope.New(healthTopic, time.Now(), &eventbusv1.RpcRequestPayload{Request: req}))
		if err != nil {
			t.Fatal(err)
		}
		srv.receive(&client.Msg{Topic: healthTopic, Reply: topics.InboxPrefix + "test.1", Payload: payload}, HandlerFunc(healthy))
		var reply client.Msg
		select {
		case reply = <-inbox.C():
		case <-time.After(5 * time.Second):
			t.Fatal("no answer to a request after Close")
		}
		resp, err := decodeResponse(&reply, req)
		if err != nil {
			t.Fatalf("the answer cannot be used: %v", err)
		}
		if e := resp.GetError(); resp.GetStatus() != eventbusv1.RpcStatus_RPC_STATUS_UNAVAILABLE || e.GetCode() != CodeShuttingDown || !e.GetRetryable() {
			t.Errorf("answer %v, want UNAVAILABLE shutting_down, retryable", resp)
		}
		if st := srv.Stats(); st.Received != 1 || st.Rejected != 1 {
			t.Errorf("stats %+v", st)
		}
	})
}
