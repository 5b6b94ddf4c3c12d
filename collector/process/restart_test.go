package process

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/collector"
	"github.com/daemoneye/daemoneye/eventbus"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
	"github.com/daemoneye/daemoneye/rpc"
	"github.com/daemoneye/daemoneye/server"
	"google.golang.org/protobuf/proto"
)

// While the broker is away procmond keeps scanning; what it saw meanwhile
// reaches the next broker, and what did not fit its buffer is counted and
// reported in its health.
func TestCollectorAcrossBrokerRestart(t *testing.T) {
	for _, tc := range []struct {
		name        string
		maxBuffered int
	}{{"buffered", 0}, {"overflow", 1}} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "eventbus.sock")
			_, _, stop := testbroker.StartAt(t, path, server.Options{}, nil)
			lost := make(chan struct{}, 1)
			conn, err := client.Dial(t.Context(), path, client.Options{Name: "procmond", MaxBuffered: tc.maxBuffered,
				ReconnectWait: 10 * time.Millisecond, MaxReconnectWait: 50 * time.Millisecond,
				OnDisconnect: func(error) { lost <- struct{}{} }})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			pc, err := New(conn, Options{Interval: 100 * time.Millisecond, NoHash: true})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			ran := make(chan error, 1)
			go func() { ran <- pc.Run(ctx) }()
			defer func() { cancel(); <-ran }()
			wait.Until(t, 10*time.Second, "an event published", func() bool { return pc.published.Load() > 0 })

			stop()
			select { // what procmond publishes from now on waits in its buffer
			case <-lost:
			case <-time.After(10 * time.Second):
				t.Fatal("procmond's Conn did not notice the broker's end")
			}
			// Born while the broker is away: two events, where a one-byte
			// buffer holds one (a buffer always takes one message).
			bin := copySleep(t, t.TempDir())
			child, other := startChild(t, bin), startChild(t, bin)
			wait.Until(t, 10*time.Second, "procmond to scan the two children without a broker", func() bool {
				return scanned(pc, child.Process.Pid) && scanned(pc, other.Process.Pid)
			})
			if tc.maxBuffered > 0 {
				// A scan keeps its result before it publishes the changes:
				// wait for the drop itself, or the new broker could be
				// back before the second event is offered.
				wait.Until(t, 10*time.Second, "an event dropped without a broker", func() bool { return pc.dropped.Load() > 0 })
			}
			// The watcher subscribes in process before the new broker
			// serves, so nothing procmond sends after its reconnect can
			// precede the subscription.
			var watch *client.Conn
			var events *client.Subscription
			testbroker.StartAt(t, path, server.Options{}, func(b *eventbus.Broker) {
				if watch, err = client.Connect(b, client.Options{Name: "watch"}); err != nil {
					t.Fatal(err)
				}
				if events, err = watch.Subscribe(t.Context(), "events.process.lifecycle.created", 1<<12); err != nil {
					t.Fatal(err)
				}
			})
			defer watch.Close()
			// No breaker: the calls made before procmond is back must not
			// open the circuit.
			cc := collector.NewClient(rpc.NewClient(watch, rpc.ClientOptions{BreakerFailures: -1}))
			if tc.maxBuffered == 0 {
				if !sawCreated(t, events, child.Process.Pid) {
					t.Fatal("the event buffered while the broker was away never arrived")
				}
				return
			}
			// Events dropped meanwhile are counted too (the one-byte buffer
			// refuses a second event while the writer is busy): the
			// health's count lies between the collector's before and after.
			var h *eventbusv1.HealthCheckResponse
			var lo, hi uint64
			wait.For(t, 10*time.Second, "procmond to answer a health check", func() error {
				lo = pc.dropped.Load()
				h, err = cc.Health(t.Context(), DefaultID, &eventbusv1.HealthCheckRequest{IncludeMetrics: true})
				hi = pc.dropped.Load()
				if err != nil && !errors.Is(err, rpc.ErrNoResponders) {
					t.Fatal(err)
				}
				return err
			})
			var dropped float64
			for _, c := range h.GetComponents() {
				dropped += c.GetMetrics()["dropped"]
			}
			if dropped == 0 || dropped < float64(lo) || dropped > float64(hi) {
				t.Errorf("health reports %v dropped, the collector counted %d to %d", dropped, lo, hi)
			}
			if h.GetStatus() == eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY {
				t.Errorf("healthy after dropping events: %v", h)
			}
		})
	}
}

func scanned(pc *Collector, pid int) bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return find(pc.cur, pid) != nil
}

func sawCreated(t *testing.T, events *client.Subscription, pid int) bool {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-events.C():
			e := new(eventbusv1.EventBusMessage)
			if err := proto.Unmarshal(m.Payload, e); err != nil {
				t.Fatal(err)
			}
			if e.GetCollectionEvent().GetProcess().GetProcess().GetPid() == uint32(pid) {
				return true
			}
		case <-timeout:
			return false
		}
	}
}
