package rpc

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/eventbus"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/programs/loadgen"
	"github.com/daemoneye/daemoneye/internal/testutil/clienttest"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/server"
)

// BenchmarkCall measures health-check calls through a Client and a Server
// (envelope encoding and decoding included), by one caller (latency) and by
// 8 concurrent callers (RunParallel, 4 per CPU on 2 CPUs; throughput):
// inproc (both in process), unix (both over the UNIX socket: a CLI calling
// a collector through a broker), and agent (the caller in the broker's
// process, the service over the socket: the agent calling its collector).
// Each op is one call; calls/s, p50-µs and p99-µs are per call.
func BenchmarkCall(b *testing.B) {
	for _, tr := range []string{"inproc", "unix", "agent"} {
		for _, callers := range []int{1, 8} {
			name := tr + "/seq"
			if callers > 1 {
				name = tr + "/par8"
			}
			b.Run(name, func(b *testing.B) {
				var bk *eventbus.Broker
				addr, callerAddr := "inproc", "inproc"
				if tr != "inproc" {
					var path string
					path, _, bk = testbroker.Start(b, server.Options{})
					addr, callerAddr = "unix://"+path, "unix://"+path
					if tr == "agent" {
						callerAddr = "inproc"
					}
				} else {
					var err error
					if bk, err = eventbus.New(eventbus.Options{}); err != nil {
						b.Fatal(err)
					}
					defer bk.Close()
				}
				dial := func(name string) *client.Conn {
					a := addr
					if name == "caller" {
						a = callerAddr
					}
					return clienttest.Conn(b, a, bk, name)
				}
				srv := NewServer(dial("svc"), ServerOptions{})
				defer srv.Close()
				if err := srv.Handle(b.Context(), healthTopic, InlineFunc(healthy)); err != nil {
					b.Fatal(err)
				}
				c := NewClient(dial("caller"), ClientOptions{})
				if _, err := c.Call(b.Context(), healthTopic, healthReq()); err != nil { // the inbox
					b.Fatal(err)
				}
				var mu sync.Mutex
				var all loadgen.Histogram
				call := func(h *loadgen.Histogram) {
					t0 := time.Now()
					if _, err := c.Call(b.Context(), healthTopic, healthReq()); err != nil {
						b.Error(err)
					}
					h.Record(time.Since(t0))
				}
				b.ReportAllocs()
				start := time.Now()
				if callers == 1 {
					for b.Loop() {
						call(&all)
					}
				} else {
					b.SetParallelism(callers / max(1, runtime.GOMAXPROCS(0)))
					b.RunParallel(func(pb *testing.PB) {
						var h loadgen.Histogram
						for pb.Next() {
							call(&h)
						}
						mu.Lock()
						all.Merge(&h)
						mu.Unlock()
					})
				}
				b.ReportMetric(float64(all.Count())/time.Since(start).Seconds(), "calls/s")
				b.ReportMetric(float64(all.Quantile(0.5).Nanoseconds())/1e3, "p50-µs")
				b.ReportMetric(float64(all.Quantile(0.99).Nanoseconds())/1e3, "p99-µs")
			})
		}
	}
}

// BenchmarkMethod is BenchmarkCall/*/seq through the general API: rpc.Call
// and a Mux serving Handle's functions inline. "operation" is the health
// check as a Method (its body field, shared in process), "message" a
// method of the service's own with a protobuf message (an Any, encoded
// even in process). The difference from BenchmarkCall is the general
// layer's cost.
func BenchmarkMethod(b *testing.B) {
	health := Method[*eventbusv1.HealthCheckRequest, *eventbusv1.HealthCheckResponse]{Name: "health_check"}
	custom := Method[*eventbusv1.HealthCheckRequest, *eventbusv1.HealthCheckResponse]{Name: "custom_health"}
	for _, tr := range []string{"inproc", "unix"} {
		for _, kind := range []string{"operation", "message"} {
			b.Run(tr+"/"+kind, func(b *testing.B) {
				var bk *eventbus.Broker
				addr := "inproc"
				if tr == "unix" {
					var path string
					path, _, bk = testbroker.Start(b, server.Options{})
					addr = "unix://" + path
				} else {
					var err error
					if bk, err = eventbus.New(eventbus.Options{}); err != nil {
						b.Fatal(err)
					}
					defer bk.Close()
				}
				dial := func(name string) *client.Conn { return clienttest.Conn(b, addr, bk, name) }
				m := health
				if kind == "message" {
					m = custom
				}
				mux := NewMux("bench")
				Handle(mux, m, func(context.Context, *eventbusv1.HealthCheckRequest) (*eventbusv1.HealthCheckResponse, error) {
					return &eventbusv1.HealthCheckResponse{Status: eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY}, nil
				}, Inline())
				srv := NewServer(dial("svc"), ServerOptions{})
				defer srv.Close()
				if err := srv.Handle(b.Context(), healthTopic, mux); err != nil {
					b.Fatal(err)
				}
				c := NewClient(dial("caller"), ClientOptions{})
				req := func() *eventbusv1.HealthCheckRequest {
					return &eventbusv1.HealthCheckRequest{Components: []string{"scanner"}}
				}
				if _, err := Call(b.Context(), c, healthTopic, m, req()); err != nil {
					b.Fatal(err)
				}
				var h loadgen.Histogram
				b.ReportAllocs()
				start := time.Now()
				for b.Loop() {
					t0 := time.Now()
					if _, err := Call(b.Context(), c, healthTopic, m, req()); err != nil {
						b.Fatal(err)
					}
					h.Record(time.Since(t0))
				}
				b.ReportMetric(float64(h.Count())/time.Since(start).Seconds(), "calls/s")
				b.ReportMetric(float64(h.Quantile(0.5).Nanoseconds())/1e3, "p50-µs")
			})
		}
	}
}
