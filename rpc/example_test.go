package rpc_test

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/rpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Upper is a method of a service of one's own: declared once, where both
// the service and its callers see it. Its messages can be any generated
// protobuf types.
var Upper = rpc.Method[*wrapperspb.StringValue, *wrapperspb.StringValue]{Name: "upper", Idempotent: true}

// A service with a method of its own, and a call to it, in one process.
// Over a socket the code is the same; only the connections differ.
func Example() {
	ctx := context.Background()
	b, _ := eventbus.New(eventbus.Options{})
	defer b.Close()
	svcConn, _ := client.Connect(b, client.Options{Name: "svc"})
	defer svcConn.Close()
	callerConn, _ := client.Connect(b, client.Options{Name: "caller"})
	defer callerConn.Close()

	// The service: a Mux with its methods, served on a topic under control.
	mux := rpc.NewMux("the text service")
	rpc.Handle(mux, Upper, func(ctx context.Context, req *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		if req.GetValue() == "" {
			return nil, rpc.InvalidArgument("empty_text", "give some text")
		}
		return wrapperspb.String(strings.ToUpper(req.GetValue())), nil
	})
	srv := rpc.NewServer(svcConn, rpc.ServerOptions{})
	defer srv.Close()
	if err := srv.Handle(ctx, "control.text", mux); err != nil {
		fmt.Println(err)
		return
	}

	// The caller.
	c := rpc.NewClient(callerConn, rpc.ClientOptions{})
	resp, err := rpc.Call(ctx, c, "control.text", Upper, wrapperspb.String("hello"))
	fmt.Println(resp.GetValue(), err)
	_, err = rpc.Call(ctx, c, "control.text", Upper, wrapperspb.String(""))
	fmt.Println(errors.Is(err, rpc.ErrInvalidArgument))
	// Output:
	// HELLO <nil>
	// true
}

// Methods whose requests and responses are bytes of the service's own
// format.
func ExampleHandleRaw() {
	ctx := context.Background()
	b, _ := eventbus.New(eventbus.Options{})
	defer b.Close()
	conn, _ := client.Connect(b, client.Options{Name: "both"})
	defer conn.Close()

	mux := rpc.NewMux("the echo service")
	rpc.HandleRaw(mux, "echo", func(ctx context.Context, req []byte) ([]byte, error) { return req, nil }, rpc.Inline())
	srv := rpc.NewServer(conn, rpc.ServerOptions{})
	defer srv.Close()
	if err := srv.Handle(ctx, "control.echo", mux); err != nil {
		fmt.Println(err)
		return
	}
	out, err := rpc.CallRaw(ctx, rpc.NewClient(conn, rpc.ClientOptions{}), "control.echo", "echo", []byte("ping"), true)
	fmt.Printf("%s %v\n", out, err)
	// Output: ping <nil>
}
