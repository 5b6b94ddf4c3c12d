package agent

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/internal/testutil/testproc"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
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
