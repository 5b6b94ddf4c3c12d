package rpc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/client"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/testutil/clienttest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const demoTopic = "control.demo.service"

// The demo service's methods: a service's own, with its own messages.
var (
	upper   = Method[*wrapperspb.StringValue, *wrapperspb.StringValue]{Name: "upper", Idempotent: true}
	lookup  = Method[*wrapperspb.StringValue, *structpb.Struct]{Name: "lookup"}
	flaky   = Method[*wrapperspb.StringValue, *wrapperspb.Int64Value]{Name: "flaky"}
	slow    = Method[*wrapperspb.StringValue, *wrapperspb.StringValue]{Name: "slow"}
	failing = Method[*wrapperspb.StringValue, *wrapperspb.StringValue]{Name: "failing"}
	// Callers that disagree with the service about types or names.
	upperInt   = Method[*wrapperspb.Int64Value, *wrapperspb.StringValue]{Name: "upper"}
	upperAsInt = Method[*wrapperspb.StringValue, *wrapperspb.Int64Value]{Name: "upper"}
	missing    = Method[*wrapperspb.StringValue, *wrapperspb.StringValue]{Name: "missing"}
)

// demo serves the demo service on conn and counts flaky's attempts.
type demo struct {
	srv      *Server
	attempts atomic.Int32
	seen     atomic.Pointer[Request]
}

func serveDemo(t *testing.T, conn *client.Conn) *demo {
	t.Helper()
	d := &demo{srv: NewServer(conn, ServerOptions{ID: "demo-1"})}
	t.Cleanup(func() { d.srv.Close() })
	mux := NewMux("the demo service")
	Handle(mux, upper, func(ctx context.Context, req *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		d.seen.Store(RequestFrom(ctx))
		return wrapperspb.String(strings.ToUpper(req.GetValue())), nil
	}, Inline())
	Handle(mux, lookup, func(ctx context.Context, req *wrapperspb.StringValue) (*structpb.Struct, error) {
		if req.GetValue() != "known" {
			return nil, NotFound("unknown_key", "key", req.GetValue())
		}
		return structpb.NewStruct(map[string]any{"key": req.GetValue(), "n": 1})
	})
	Handle(mux, flaky, func(ctx context.Context, req *wrapperspb.StringValue) (*wrapperspb.Int64Value, error) {
		n := d.attempts.Add(1)
		if a := RequestFrom(ctx).Call.GetAttempt(); a != uint32(n) && req.GetValue() == "count" {
			return nil, fmt.Errorf("attempt %d, but %d calls", a, n)
		}
		if n == 1 {
			return nil, Errorf(eventbusv1.RpcErrorCategory_RPC_ERROR_CATEGORY_UNAVAILABLE, "warming_up", "try again").WithRetryAfter(time.Millisecond)
		}
		return wrapperspb.Int64(int64(n)), nil
	})
	Handle(mux, slow, func(ctx context.Context, req *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	Handle(mux, failing, func(ctx context.Context, req *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		return nil, errors.New("disk full")
	})
	HandleRaw(mux, "reverse", func(ctx context.Context, req []byte) ([]byte, error) {
		out := make([]byte, len(req))
		for i, b := range req {
			out[len(req)-1-i] = b
		}
		return out, nil
	})
	if err := d.srv.Handle(t.Context(), demoTopic, mux); err != nil {
		t.Fatal(err)
	}
	return d
}

// A service's own methods with its own messages, and bytes, in process
// and over a socket.
func TestMethodRoundTrip(t *testing.T) {
	clienttest.EachTransport(t, func(t *testing.T, dial func(string) *client.Conn) {
		d := serveDemo(t, dial("svc"))
		c := NewClient(dial("caller"), ClientOptions{ID: "caller"})
		got, err := Call(t.Context(), c, demoTopic, upper, wrapperspb.String("quiet"))
		if err != nil || got.GetValue() != "QUIET" {
			t.Fatalf("upper = %v, %v", got, err)
		}
		if r := d.seen.Load(); r == nil || r.Topic != demoTopic || r.Call.GetMethod() != "upper" || r.Call.GetClientId() != "caller" || !r.Call.GetIdempotent() {
			t.Errorf("the handler saw request %v", r)
		}
		s, err := Call(t.Context(), c, demoTopic, lookup, wrapperspb.String("known"))
		if err != nil || s.GetFields()["n"].GetNumberValue() != 1 {
			t.Errorf("lookup = %v, %v", s, err)
		}
		b, err := CallRaw(t.Context(), c, demoTopic, "reverse", []byte("abc"), true)
		if err != nil || string(b) != "cba" {
			t.Errorf("reverse = %q, %v", b, err)
		}
	})
}

// Failures of a method call match the package's sentinels, and say what
// is wrong once.
func TestMethodErrors(t *testing.T) {
	clienttest.EachTransport(t, func(t *testing.T, dial func(string) *client.Conn) {
		serveDemo(t, dial("svc"))
		c := NewClient(dial("caller"), ClientOptions{BreakerFailures: -1, MaxAttempts: 1})
		for _, tc := range []struct {
			name     string
			call     func(ctx context.Context) error
			want     error
			code     string // the service's code, if it answered; * if it may
			contains string
		}{
			{"wrong request type", func(ctx context.Context) error {
				_, err := Call(ctx, c, demoTopic, upperInt, wrapperspb.Int64(7))
				return err
			}, ErrInvalidArgument, CodeWrongType, "method upper takes a google.protobuf.StringValue, not a google.protobuf.Int64Value"},
			{"raw bytes to a message method", func(ctx context.Context) error {
				_, err := CallRaw(ctx, c, demoTopic, "upper", []byte("x"), false)
				return err
			}, ErrInvalidArgument, CodeWrongType, "takes a google.protobuf.StringValue, not raw bytes"},
			{"message to a raw method", func(ctx context.Context) error {
				_, err := Call(ctx, c, demoTopic, Method[*wrapperspb.StringValue, *wrapperspb.StringValue]{Name: "reverse"}, wrapperspb.String("x"))
				return err
			}, ErrInvalidArgument, CodeWrongType, "method reverse takes raw bytes, not a google.protobuf.StringValue"},
			{"wrong response type", func(ctx context.Context) error {
				_, err := Call(ctx, c, demoTopic, upperAsInt, wrapperspb.String("x"))
				return err
			}, ErrBadResponse, "", "the result is a google.protobuf.StringValue, this client expects a google.protobuf.Int64Value"},
			{"unknown method", func(ctx context.Context) error {
				_, err := Call(ctx, c, demoTopic, missing, wrapperspb.String("x"))
				return err
			}, ErrUnsupported, CodeUnsupported, "the demo service does not support missing"},
			{"not found", func(ctx context.Context) error {
				_, err := Call(ctx, c, demoTopic, lookup, wrapperspb.String("other"))
				return err
			}, ErrNotFound, "unknown_key", `key "other" not found`},
			{"handler error", func(ctx context.Context) error {
				_, err := Call(ctx, c, demoTopic, failing, wrapperspb.String("x"))
				return err
			}, ErrInternal, CodeInternal, "disk full"},
			{"deadline", func(ctx context.Context) error {
				ctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
				defer cancel()
				_, err := Call(ctx, c, demoTopic, slow, wrapperspb.String("x"))
				return err
			}, ErrTimeout, "*", "slow on control.demo.service"}, // the caller's deadline, or the service's answer at it
			{"no responders", func(ctx context.Context) error {
				_, err := Call(ctx, c, "control.demo.nobody", upper, wrapperspb.String("x"))
				return err
			}, ErrNoResponders, "", "no responders"},
			{"invalid method name on the wire", func(ctx context.Context) error {
				_, err := c.Call(ctx, demoTopic, &eventbusv1.RpcRequest{Method: strings.Repeat("X", 300)})
				return err
			}, ErrInvalidArgument, CodeInvalidRequest, "the method name is not lower_snake_case"},
			{"invalid method name", func(ctx context.Context) error {
				_, err := Call(ctx, c, demoTopic, Method[*wrapperspb.StringValue, *wrapperspb.StringValue]{Name: "Upper Case"}, wrapperspb.String("x"))
				return err
			}, ErrInvalidArgument, "", "not lower_snake_case"},
			{"an operation with another body type", func(ctx context.Context) error {
				_, err := Call(ctx, c, demoTopic, Method[*wrapperspb.StringValue, *eventbusv1.HealthCheckResponse]{Name: "health_check"}, wrapperspb.String("x"))
				return err
			}, ErrInvalidArgument, "", "it takes a daemoneye.eventbus.v1.HealthCheckRequest"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
				defer cancel()
				err := tc.call(ctx)
				if !errors.Is(err, tc.want) {
					t.Fatalf("err = %v, want %v", err, tc.want)
				}
				if !strings.Contains(err.Error(), tc.contains) {
					t.Errorf("err = %q, want it to say %q", err, tc.contains)
				}
				if n := strings.Count(err.Error(), "rpc:"); n > 1 {
					t.Errorf("err = %q says rpc: %d times", err, n)
				}
				var e *Error
				if tc.code != "*" && (errors.As(err, &e) != (tc.code != "") || tc.code != "" && e.Detail.GetCode() != tc.code) {
					t.Errorf("err = %v (%T), want the service's code %q", err, err, tc.code)
				}
			})
		}
	})
}

// An idempotent method is retried after a failure that may pass, with the
// same request; another is not, unless the call says so.
func TestMethodRetries(t *testing.T) {
	for _, tc := range []struct {
		name       string
		opts       []CallOption
		idempotent bool
		wantErr    error
		attempts   int32
	}{
		{"not idempotent", nil, false, ErrUnavailable, 1},
		{"idempotent method", nil, true, nil, 2},
		{"idempotent call", []CallOption{WithIdempotent(true)}, false, nil, 2},
		{"call not idempotent", []CallOption{WithIdempotent(false)}, true, ErrUnavailable, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clienttest.EachTransport(t, func(t *testing.T, dial func(string) *client.Conn) {
				d := serveDemo(t, dial("svc"))
				c := NewClient(dial("caller"), ClientOptions{BreakerFailures: -1})
				m := flaky
				m.Idempotent = tc.idempotent
				got, err := Call(t.Context(), c, demoTopic, m, wrapperspb.String("count"), tc.opts...)
				if !errors.Is(err, tc.wantErr) || err == nil && got.GetValue() != int64(tc.attempts) {
					t.Errorf("Call = %v, %v; want %v", got, err, tc.wantErr)
				}
				if n := d.attempts.Load(); n != tc.attempts {
					t.Errorf("%d attempts, want %d", n, tc.attempts)
				}
			})
		})
	}
}

// A collector operation called as a Method travels in the operation's
// body field, and in process the service reads the caller's very request.
func TestOperationMethodSharesTheRequest(t *testing.T) {
	clienttest.EachTransport(t, func(t *testing.T, dial func(string) *client.Conn) {
		health := Method[*eventbusv1.HealthCheckRequest, *eventbusv1.HealthCheckResponse]{Name: "health_check", Idempotent: true}
		var got atomic.Pointer[eventbusv1.HealthCheckRequest]
		var call atomic.Pointer[eventbusv1.RpcRequest]
		mux := NewMux("demo")
		Handle(mux, health, func(ctx context.Context, req *eventbusv1.HealthCheckRequest) (*eventbusv1.HealthCheckResponse, error) {
			got.Store(req)
			call.Store(RequestFrom(ctx).Call)
			return &eventbusv1.HealthCheckResponse{Status: eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY}, nil
		}, Inline())
		srv := NewServer(dial("svc"), ServerOptions{})
		defer srv.Close()
		if err := srv.Handle(t.Context(), healthTopic, mux); err != nil {
			t.Fatal(err)
		}
		c := NewClient(dial("caller"), ClientOptions{})
		req := &eventbusv1.HealthCheckRequest{Components: []string{"scanner"}}
		resp, err := Call(t.Context(), c, healthTopic, health, req)
		if err != nil || resp.GetStatus() != eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY {
			t.Fatalf("health_check = %v, %v", resp, err)
		}
		r := call.Load()
		if r.GetOperation() != eventbusv1.RpcOperation_RPC_OPERATION_HEALTH_CHECK || r.GetMethod() != "" || r.GetHealthCheck() == nil {
			t.Errorf("the operation travelled as %v", r)
		}
		if !proto.Equal(got.Load(), req) {
			t.Errorf("the service got %v", got.Load())
		}
		if inproc := strings.HasSuffix(t.Name(), "/inproc"); inproc != (got.Load() == req) {
			t.Errorf("in process %v, the service read the caller's object %v", inproc, got.Load() == req)
		}
	})
}

// Handle refuses mistakes in the program at once.
func TestHandlePanicsOnMistakes(t *testing.T) {
	for _, tc := range []struct {
		name string
		f    func(mx *Mux)
	}{
		{"twice", func(mx *Mux) { Handle(mx, upper, nil); Handle(mx, upper, nil) }},
		{"bad name", func(mx *Mux) { Handle(mx, Method[*wrapperspb.StringValue, *wrapperspb.StringValue]{Name: "a.b"}, nil) }},
		{"operation with other types", func(mx *Mux) {
			Handle(mx, Method[*wrapperspb.StringValue, *wrapperspb.StringValue]{Name: "start"}, nil)
		}},
		{"raw operation", func(mx *Mux) { HandleRaw(mx, "start", nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			tc.f(NewMux("demo"))
		})
	}
}
