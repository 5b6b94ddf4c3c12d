package rpc_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/rpc"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The README's "Embedding the bus": a broker in the program, pub/sub and
// one method of one's own through one in-process connection. The code
// between the markers is the README's, word for word (TestReadmeEmbedding
// checks it). Errors other than the call's are ignored for brevity; each
// of these calls returns one that a program should check.
func Example_embedding() {
	// README:begin
	ctx := context.Background()
	b, _ := eventbus.New(eventbus.Options{}) // zero options: sensible defaults, silent
	defer b.Close()
	conn, _ := client.Connect(b, client.Options{Name: "example"})
	defer conn.Close()

	// Publish and subscribe.
	sub, _ := conn.Subscribe(ctx, "events.process.+", 64)
	_ = conn.Publish("events.process.created", []byte("pid 42"))
	msg := <-sub.C()
	fmt.Println(msg.Topic, string(msg.Payload))

	// A method of your own, a service that serves it under control., a call.
	upper := rpc.Method[*wrapperspb.StringValue, *wrapperspb.StringValue]{Name: "upper"}
	mux := rpc.NewMux("text")
	rpc.Handle(mux, upper, func(_ context.Context, s *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
		return wrapperspb.String(strings.ToUpper(s.GetValue())), nil
	})
	srv := rpc.NewServer(conn, rpc.ServerOptions{})
	defer srv.Close()
	_ = srv.Handle(ctx, "control.text", mux)
	resp, err := rpc.Call(ctx, rpc.NewClient(conn, rpc.ClientOptions{}), "control.text", upper, wrapperspb.String("hi"))
	fmt.Println(resp.GetValue(), err)
	// README:end

	// Output:
	// events.process.created pid 42
	// HI <nil>
}
