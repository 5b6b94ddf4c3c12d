package rpc

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/eventbus"
	"github.com/daemoneye/daemoneye/internal/programs/loadgen"
	"github.com/daemoneye/daemoneye/internal/protocol/transport"
	"github.com/daemoneye/daemoneye/internal/testutil/clienttest"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/server"
)

// The cross-process benchmarks re-run this test binary in a role: a
// broker, an RPC service, or the plain socket peers of the floor
// measurement. A child serves until its stdin closes.
const (
	roleEnv   = "RPC_BENCH_ROLE"
	socketEnv = "RPC_BENCH_SOCKET"
)

// runRole runs the role a parent asked for and returns the exit code.
func runRole(role string) int {
	path := os.Getenv(socketEnv)
	ctx := context.Background()
	var stop func()
	switch role {
	case "broker":
		b, err := eventbus.New(eventbus.Options{})
		if err != nil {
			return fail(err)
		}
		srv, err := server.New(server.Options{Broker: b})
		if err != nil {
			return fail(err)
		}
		l, err := transport.ListenUnix(path)
		if err != nil {
			return fail(err)
		}
		served := make(chan error, 1)
		go func() { served <- srv.Serve(l) }()
		stop = func() { srv.Close(); <-served; b.Close() }
	case "service":
		c, err := client.Dial(ctx, "unix://"+path, client.Options{Name: "svc"})
		if err != nil {
			return fail(err)
		}
		s := NewServer(c, ServerOptions{})
		if err := s.Handle(ctx, healthTopic, InlineFunc(healthy)); err != nil {
			return fail(err)
		}
		stop = func() { s.Close(); c.Close() }
	case "echo": // the far end of the floor: sends back what it reads
		nc, err := net.Dial("unix", path)
		if err != nil {
			return fail(err)
		}
		go io.Copy(nc, nc)
		stop = func() { nc.Close() }
	case "relay": // the broker of the floor: forwards between two sockets
		l1, err := net.Listen("unix", path)
		if err != nil {
			return fail(err)
		}
		l2, err := net.Listen("unix", path+"2")
		if err != nil {
			return fail(err)
		}
		go func() {
			a, err := l1.Accept()
			if err != nil {
				return
			}
			b, err := l2.Accept()
			if err != nil {
				return
			}
			go io.Copy(a, b)
			io.Copy(b, a)
		}()
		stop = func() { l1.Close(); l2.Close() }
	default:
		return fail(fmt.Errorf("unknown role %q", role))
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin) // until the parent closes it or dies
	stop()
	return 0
}

func fail(err error) int {
	fmt.Fprintln(os.Stderr, err)
	return 1
}

// startRole starts this test binary in role with the socket path, waits
// until it is ready, and stops it at the end of the benchmark.
func startRole(b *testing.B, role, path string) {
	b.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"="+role, socketEnv+"="+path)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stdin.Close(); cmd.Wait() })
	ready := make(chan error, 1)
	go func() {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if err == nil && strings.TrimSpace(line) != "ready" {
			err = fmt.Errorf("said %q", line)
		}
		ready <- err
	}()
	select {
	case err := <-ready:
		if err != nil {
			b.Fatalf("%s process: %v", role, err)
		}
	case <-time.After(10 * time.Second):
		b.Fatalf("%s process not ready after 10 s", role)
	}
}

// BenchmarkCallProcs measures sequential health-check calls (as
// BenchmarkCall/unix/seq) with the parties in separate processes, as they
// are deployed: cli (caller here, broker and service each in a process of
// its own: daemoneye-cli calling a collector through the agent, four
// socket crossings between three processes) and agent (caller and broker
// here, the service in another process: the agent calling its collector,
// two crossings). BenchmarkSocketFloor is the same topology with plain
// sockets and nothing else.
func BenchmarkCallProcs(b *testing.B) {
	for _, topo := range []string{"cli", "agent"} {
		b.Run(topo, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "bus.sock")
			addr := "unix://" + path
			var bk *eventbus.Broker
			if topo == "cli" {
				startRole(b, "broker", path)
			} else {
				_, bk, _ = testbroker.StartAt(b, path, server.Options{}, nil)
				addr = "inproc"
			}
			startRole(b, "service", path)
			conn := clienttest.Conn(b, addr, bk, "caller")
			c := NewClient(conn, ClientOptions{})
			if _, err := c.Call(b.Context(), healthTopic, healthReq()); err != nil {
				b.Fatal(err)
			}
			var h loadgen.Histogram
			start := time.Now()
			for b.Loop() {
				t0 := time.Now()
				if _, err := c.Call(b.Context(), healthTopic, healthReq()); err != nil {
					b.Fatal(err)
				}
				h.Record(time.Since(t0))
			}
			reportLatency(b, &h, start)
		})
	}
}

// BenchmarkSocketFloor is the latency floor of BenchmarkCallProcs's
// topologies on this machine: 400-byte messages (a request envelope's
// size) sent back and forth over plain UNIX sockets by processes that do
// nothing else. cli: here -> relay process -> echo process -> relay ->
// here, four crossings; agent: here -> echo process -> here, two.
// agent-handoff is agent with the one step any broker in the caller's
// process adds: the reply is read by another goroutine (the connection's
// reader) and handed to the caller over a channel.
func BenchmarkSocketFloor(b *testing.B) {
	for _, topo := range []string{"cli", "agent", "agent-handoff"} {
		b.Run(topo, func(b *testing.B) {
			path := filepath.Join(b.TempDir(), "floor.sock")
			var nc net.Conn
			if topo == "cli" {
				startRole(b, "relay", path)
				var err error
				if nc, err = net.Dial("unix", path); err != nil {
					b.Fatal(err)
				}
				startRole(b, "echo", path+"2")
			} else {
				l, err := net.Listen("unix", path)
				if err != nil {
					b.Fatal(err)
				}
				defer l.Close()
				startRole(b, "echo", path)
				if nc, err = l.Accept(); err != nil {
					b.Fatal(err)
				}
			}
			defer nc.Close()
			msg := make([]byte, 400)
			receive := func() error { _, err := io.ReadFull(nc, msg); return err }
			if topo == "agent-handoff" {
				got := make(chan error, 1) // the last error finds room: the reader never blocks at the end
				done := make(chan struct{})
				go func() {
					defer close(done)
					buf := make([]byte, len(msg))
					for {
						_, err := io.ReadFull(nc, buf)
						got <- err
						if err != nil {
							return
						}
					}
				}()
				defer func() { nc.Close(); <-done }()
				receive = func() error { return <-got }
			}
			var h loadgen.Histogram
			start := time.Now()
			for b.Loop() {
				t0 := time.Now()
				nc.SetDeadline(t0.Add(5 * time.Second))
				if _, err := nc.Write(msg); err != nil {
					b.Fatal(err)
				}
				if err := receive(); err != nil {
					b.Fatal(err)
				}
				h.Record(time.Since(t0))
			}
			reportLatency(b, &h, start)
		})
	}
}

func reportLatency(b *testing.B, h *loadgen.Histogram, start time.Time) {
	b.ReportMetric(float64(h.Count())/time.Since(start).Seconds(), "calls/s")
	b.ReportMetric(float64(h.Quantile(0.5).Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(h.Quantile(0.99).Nanoseconds())/1e3, "p99-µs")
}
