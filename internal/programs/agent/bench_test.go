package agent

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/client"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/testutil/testproc"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
	"github.com/daemoneye/daemoneye/topics"
	"google.golang.org/protobuf/proto"
)

// BenchmarkIdleMemory runs the agent as a user would (its binary, the
// default collector procmond, built-in rules) and, once both have settled
// (three scans and a heartbeat), reports their resident memory: each
// VmRSS, the sum (the target is 50 MiB; it counts the binary's shared
// pages twice) and the sum of their proportional set sizes (Pss, shared
// pages split between the processes). Every iteration samples both; the
// figures are the largest seen.
func BenchmarkIdleMemory(b *testing.B) {
	agentBin, cli, dir := binaries(b)
	sock := filepath.Join(dir, "run", "eventbus.sock")
	ag := exec.Command(agentBin, "--socket", sock, "--alerts", "off")
	stderr, _ := ag.StderrPipe()
	if err := ag.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ag.Process.Signal(syscall.SIGTERM); ag.Wait() })
	testproc.ExpectLine(b, testproc.Lines(stderr), "the agent", "collector started")
	var child int
	wait.Until(b, 15*time.Second, "procmond running", func() bool {
		c := status(b, cli, sock).Collectors[0]
		child = c.PID
		return c.State == StateRunning && c.PID != 0
	})
	// Kept: idle memory is what is measured, after procmond's first
	// scans and the agent's first heartbeats have settled (7 s of idling),
	// then sampled every 100 ms; the sleeps are the idling.
	time.Sleep(7 * time.Second)
	var agentRSS, procRSS, pss uint64
	for b.Loop() {
		a, p := memKiB(b, ag.Process.Pid), memKiB(b, child)
		agentRSS, procRSS, pss = max(agentRSS, a["Rss"]), max(procRSS, p["Rss"]), max(pss, a["Pss"]+p["Pss"])
		time.Sleep(100 * time.Millisecond)
	}
	b.ReportMetric(float64(agentRSS)/1024, "agent-MiB")
	b.ReportMetric(float64(procRSS)/1024, "procmond-MiB")
	b.ReportMetric(float64(agentRSS+procRSS)/1024, "rss-MiB")
	b.ReportMetric(float64(pss)/1024, "pss-MiB")
}

// memKiB reads a process's /proc/<pid>/smaps_rollup: kB by field name.
func memKiB(b *testing.B, pid int) map[string]uint64 {
	b.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		b.Fatal(err)
	}
	out := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) == 3 && bytes.Equal(f[2], []byte("kB")) {
			v, _ := strconv.ParseUint(string(f[1]), 10, 64)
			out[string(bytes.TrimSuffix(f[0], []byte(":")))] = v
		}
	}
	return out
}

// spawn forks and execs bin with no arguments nor environment, and
// returns its pid; the caller waits for it (reap).
func spawn(bin string) (int, error) {
	return syscall.ForkExec(bin, []string{bin}, &syscall.ProcAttr{})
}

// reap waits for the process pid.
func reap(pid int) {
	var ws syscall.WaitStatus
	for {
		if _, err := syscall.Wait4(pid, &ws, 0, nil); !errors.Is(err, syscall.EINTR) {
			return
		}
	}
}

// alertsFor subscribes to the alerts on the agent's bus at sock.
func alertsFor(b *testing.B, sock string) <-chan client.Msg {
	b.Helper()
	c, err := client.Dial(b.Context(), sock, client.Options{Name: "bench-alerts"})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { c.Close() })
	sub, err := c.Subscribe(b.Context(), topics.AllAlerts, 1<<16)
	if err != nil {
		b.Fatal(err)
	}
	return sub.C()
}

// alertPID returns the pid of the process of an alert message, or 0.
func alertPID(m client.Msg) int {
	e := new(eventbusv1.EventBusMessage)
	if proto.Unmarshal(m.Payload, e) != nil {
		return 0
	}
	return int(e.GetAlert().GetProcess().GetPid())
}

// warmExecs is how many processes BenchmarkExecToAlert runs before it
// measures.
const warmExecs = 2000

// BenchmarkExecToAlert runs the agent as a user would, as root (its
// binary, procmond with the eBPF sensor), with one custom rule that
// matches a copy of /bin/true in a private directory, and a subscriber to
// the alerts on the agent's bus. It first runs that program 2,000 times
// from 4 goroutines (their alerts drained), then once per iteration: the
// latency runs from just before the fork to the arrival of the alert for
// that pid at the subscriber. It reports its p50, p99 and maximum (the
// target is p99 ≤ 50 ms), then the resident memory of the agent and
// procmond (Rss of /proc/<pid>/smaps_rollup, which is VmRSS; the target
// for the sum is 50 MiB) and the sum of their Pss (shared pages split).
func BenchmarkExecToAlert(b *testing.B) {
	needSensor(b)
	agentBin, cli, dir := binaries(b)
	prog, rules := privateDirRule(b, dir)
	sock := filepath.Join(dir, "run", "eventbus.sock")
	ag, lines, logs := startAgent(b, agentBin, cli, sock, "--rules", rules, "--no-builtin-rules")
	for _, ch := range []<-chan string{lines, logs} {
		go func() { // ends when the agent does, at the benchmark's cleanup
			for range ch {
			}
		}()
	}
	c := status(b, cli, sock).Collectors[0]
	if c.Detail["source"] != "ebpf" {
		b.Fatalf("procmond's source is %q, want ebpf", c.Detail["source"])
	}
	alerts := alertsFor(b, sock)

	// Warm up: thousands of execs, and their alerts.
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 4 {
		wg.Go(func() {
			for range warmExecs / 4 {
				pid, err := spawn(prog)
				if err != nil {
					errs <- err
					return
				}
				reap(pid)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	for n, quiet := 0, time.NewTimer(5*time.Second); n < warmExecs; {
		select {
		case <-alerts:
			n++
			quiet.Reset(5 * time.Second)
			continue
		case <-quiet.C:
			b.Fatalf("%d alerts for %d runs", n, warmExecs)
		}
	}

	var lat []time.Duration
	for b.Loop() {
		start := time.Now()
		pid, err := spawn(prog)
		if err != nil {
			b.Fatal(err)
		}
		for timeout := time.After(10 * time.Second); ; {
			select {
			case m := <-alerts:
				if alertPID(m) != pid {
					continue
				}
				lat = append(lat, time.Since(start))
			case <-timeout:
				b.Fatalf("no alert for pid %d within 10 s", pid)
			}
			break
		}
		reap(pid)
	}
	slices.Sort(lat)
	q := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(q(1), "max-ms")

	a, p := memKiB(b, ag.Process.Pid), memKiB(b, c.PID)
	b.ReportMetric(float64(a["Rss"])/1024, "agent-MiB")
	b.ReportMetric(float64(p["Rss"])/1024, "procmond-MiB")
	b.ReportMetric(float64(a["Rss"]+p["Rss"])/1024, "rss-MiB")
	b.ReportMetric(float64(a["Pss"]+p["Pss"])/1024, "pss-MiB")
}
