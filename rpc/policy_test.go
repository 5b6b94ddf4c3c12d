package rpc

import (
	"testing"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/eventbus"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/testutil/clienttest"
	"github.com/daemoneye/daemoneye/topic"
)

// TestCallsUnderBrokerPolicy: with a broker whose topic policy has domains
// of its own (app, control), a service on an app. topic answers calls in
// process (client.Connect) and over the UNIX socket (client.Options.Policy).
func TestCallsUnderBrokerPolicy(t *testing.T) {
	pol := &topic.Policy{Domains: []string{"app", "control"}}
	opts := clienttest.Options{Broker: eventbus.Options{Policy: pol}, Client: client.Options{Policy: pol}}
	clienttest.EachTransportWith(t, opts, func(t *testing.T, dial func(string) *client.Conn) {
		serve(t, dial("svc"), ServerOptions{}, "app.svc.health", healthy)
		c := NewClient(dial("caller"), ClientOptions{ID: "app"})
		resp, err := c.Call(t.Context(), "app.svc.health", healthReq())
		if err != nil {
			t.Fatal(err)
		}
		if resp.GetHealthCheck().GetStatus() != eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY {
			t.Errorf("response %v", resp)
		}
	})
}
