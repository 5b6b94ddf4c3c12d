package process

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/collector"
	"github.com/daemoneye/daemoneye/collector/process/sensor"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
	"github.com/daemoneye/daemoneye/rpc"
	"github.com/daemoneye/daemoneye/topics"
	"google.golang.org/protobuf/proto"
)

// floodRounds bounds how many floods TestSensorLossReported runs before
// it gives up on a loss: one is enough on a 2-core VM.
const floodRounds = 20

// flood runs 4 shells of 100 execs of /bin/true at once and waits for
// them. Each exec's argv is 3,000 bytes, so that its event takes three
// quarters of a one-page ring: a second one that comes before the reader
// took the first does not fit.
func flood(t *testing.T) {
	t.Helper()
	arg := strings.Repeat("x", 3000)
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := exec.Command("/bin/sh", "-c", `i=0; while [ $i -lt 100 ]; do /bin/true flood "$1"; i=$((i+1)); done`, "sh", arg).Run(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

// procmond with its eBPF sensor on a one-page ring buffer, flooded with
// execs: the kernel's loss count reaches the "source" component of its
// health (degraded, sensor_lost > 0, the count in the message), the
// overall status, and its heartbeats (status degraded, the sensor_lost
// counter).
func TestSensorLossReported(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the eBPF process sensor needs root: run go test as root to test it")
	}
	if s, err := sensor.Open(sensor.Options{}); err != nil {
		t.Skip("the eBPF sensor cannot run here (CI runs this as root): " + err.Error())
	} else {
		s.Close()
	}
	dial := startBroker(t)
	watch := dial("watch")
	beats, err := watch.Subscribe(t.Context(), topics.Heartbeat(DefaultID), 1024)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := New(dial("procmond"), Options{Source: SourceEBPF, SensorRingBytes: os.Getpagesize(), HeartbeatInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- pc.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case err := <-ran:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	}()
	cc := collector.NewClient(rpc.NewClient(dial("agent"), rpc.ClientOptions{}))
	source := func() *eventbusv1.ComponentHealth {
		t.Helper()
		h, err := cc.Health(t.Context(), DefaultID, &eventbusv1.HealthCheckRequest{IncludeMetrics: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range h.GetComponents() {
			if c.GetName() == "source" {
				return c
			}
		}
		t.Fatalf("no source component in the health: %v", h)
		return nil
	}
	// procmond answers once it has opened the sensor and subscribed.
	wait.For(t, 10*time.Second, "procmond to answer health requests", func() error {
		_, err := cc.Health(t.Context(), DefaultID, &eventbusv1.HealthCheckRequest{})
		return err
	})
	// Other tests' processes may overflow a one-page ring before the
	// flood (go test runs packages in parallel): the flood must add to
	// whatever was lost by then.
	before := source()
	if before.GetMetrics()["ebpf"] != 1 {
		t.Fatalf("before the flood, source %v: want the eBPF sensor", before)
	}
	lost0 := before.GetMetrics()["sensor_lost"]
	if lost0 == 0 && before.GetStatus() != eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY {
		t.Fatalf("before the flood, source %v: nothing lost, want healthy", before)
	}

	rounds, c := 0, (*eventbusv1.ComponentHealth)(nil)
	for ; rounds < floodRounds && (c == nil || c.GetMetrics()["sensor_lost"] == lost0); rounds++ {
		flood(t)
		c = source()
	}
	lost := uint64(c.GetMetrics()["sensor_lost"])
	if lost == uint64(lost0) {
		t.Fatalf("%d floods of 400 execs lost nothing in a one-page ring, says procmond's health: %v", rounds, c)
	}
	if c.GetStatus() != eventbusv1.HealthStatus_HEALTH_STATUS_DEGRADED ||
		c.GetMetrics()["sensor_lost_exec"]+c.GetMetrics()["sensor_lost_fork"]+c.GetMetrics()["sensor_lost_exit"] != c.GetMetrics()["sensor_lost"] ||
		!strings.Contains(c.GetMessage(), " lost") {
		t.Errorf("after %d lost, source %v: want degraded, the losses split by kind, and said in the message", lost, c)
	}
	h, err := cc.Health(t.Context(), DefaultID, &eventbusv1.HealthCheckRequest{})
	if err != nil || h.GetStatus() != eventbusv1.HealthStatus_HEALTH_STATUS_DEGRADED {
		t.Errorf("overall health %v, %v: want degraded after losses", h.GetStatus(), err)
	}
	// A heartbeat sent after the loss carries it.
	for timeout := time.After(10 * time.Second); ; {
		select {
		case m := <-beats.C():
			e := new(eventbusv1.EventBusMessage)
			if err := proto.Unmarshal(m.Payload, e); err != nil {
				t.Fatal(err)
			}
			hb := e.GetHeartbeat()
			if hb.GetCounters().GetCustom()["sensor_lost"] < lost {
				continue
			}
			if hb.GetStatus() != eventbusv1.HealthStatus_HEALTH_STATUS_DEGRADED || hb.GetCounters().GetCustom()["source.ebpf"] != 1 {
				t.Errorf("heartbeat %v: want degraded, from the eBPF source", hb)
			}
			t.Logf("%d floods: %d lost; heartbeat counters %v", rounds, lost, hb.GetCounters().GetCustom())
			return
		case <-timeout:
			t.Fatalf("no heartbeat with sensor_lost >= %d within 10 s", lost)
		}
	}
}
