package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/internal/programs/agentapi"
	"github.com/daemoneye/daemoneye/internal/testutil/testproc"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if target := os.Getenv(seccompChildEnv); target != "" {
		os.Exit(seccompChild(target))
	}
	goleak.VerifyTestMain(m)
}

// binaries builds the agent and the CLI once per test.
func binaries(t testing.TB) (agentBin, cli, dir string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds binaries and runs processes")
	}
	dir = t.TempDir()
	return testproc.Build(t, dir, "github.com/daemoneye/daemoneye/cmd/daemoneye-agent"),
		testproc.Build(t, dir, "github.com/daemoneye/daemoneye/cmd/daemoneye-cli"), dir
}

// copyExe copies a system binary into dir (a world-writable-like place
// under /tmp for the tests).
func copyExe(t *testing.T, dir, name string) string {
	t.Helper()
	src, err := exec.LookPath(name)
	if err != nil {
		t.Skipf("no %s binary", name)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "copied-"+name)
	if err := os.WriteFile(dst, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return dst
}

func status(t testing.TB, cli, sock string) agentapi.Collectors {
	t.Helper()
	out, err := exec.Command(cli, "--socket", sock, "collectors", "list", "--json").Output()
	if err != nil {
		t.Fatalf("collectors list: %v", err)
	}
	var r agentapi.Collectors
	if err := json.Unmarshal(out, &r); err != nil || len(r.Collectors) != len(defaultCollectors()) {
		t.Fatalf("collectors list: %s (%v), want %d collectors", out, err, len(defaultCollectors()))
	}
	// procmond first: the tests look at it.
	i := slices.IndexFunc(r.Collectors, func(c agentapi.CollectorStatus) bool { return c.ID == "procmond" })
	if i < 0 {
		t.Fatalf("collectors list: %s: no procmond", out)
	}
	r.Collectors[0], r.Collectors[i] = r.Collectors[i], r.Collectors[0]
	return r
}

func gone(pid int) bool {
	err := syscall.Kill(pid, 0)
	if errors.Is(err, syscall.ESRCH) {
		return true
	}
	// A zombie still answers kill 0: look at its state.
	b, _ := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	return strings.Contains(string(b), ") Z ")
}

// The product end to end: the agent spawns procmond; a binary started
// from a temporary directory raises an alert within seconds; procmond
// killed with SIGKILL is restarted and events resume; the CLI sees it all;
// the agent stops and leaves no child behind.
func TestAgentEndToEnd(t *testing.T) {
	agentBin, cli, dir := binaries(t)
	sock := filepath.Join(dir, "run", "eventbus.sock")
	ag, alerts, logs := startAgent(t, agentBin, cli, sock, "--interval", "200ms")

	bin := copyExe(t, t.TempDir(), "sleep")
	sleeper := exec.Command(bin, "30")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { sleeper.Process.Kill(); sleeper.Wait() }()
	line := testproc.ExpectLine(t, alerts, "the agent's alerts", "pid="+strconv.Itoa(sleeper.Process.Pid))
	if !strings.Contains(line, "exec-from-world-writable-dir") || !strings.Contains(line, bin) || !strings.Contains(line, "HIGH") {
		t.Errorf("alert line %q", line)
	}
	// ps shows the latest scan, which may come after the eBPF sensor's
	// event raised the alert.
	wait.For(t, 15*time.Second, "the sleeper in ps", func() error {
		ps, err := exec.Command(cli, "--socket", sock, "ps").Output()
		if err != nil || !strings.Contains(string(ps), bin+" 30") {
			return fmt.Errorf("ps: %v\n%s", err, ps)
		}
		return nil
	})
	// Under a root agent the sleeper is another user's process: its exe
	// link and executable are read through procmond's capabilities, which
	// its seccomp filter leaves for reading.
	psJSON, err := exec.Command(cli, "--socket", sock, "ps", "--json").Output()
	if err != nil {
		t.Fatalf("ps --json: %v", err)
	}
	var snap struct {
		Processes []struct {
			PID            int    `json:"pid"`
			ExecutablePath string `json:"executablePath"`
			ExecutableHash string `json:"executableHash"`
		} `json:"processes"`
	}
	if err := json.Unmarshal(psJSON, &snap); err != nil {
		t.Fatalf("ps --json: %v\n%s", err, psJSON)
	}
	found := false
	for _, p := range snap.Processes {
		if p.PID == sleeper.Process.Pid {
			found = true
			if p.ExecutablePath != bin || p.ExecutableHash == "" {
				t.Errorf("the sleeper in ps --json: exe %q, hash %q; want %s and its hash", p.ExecutablePath, p.ExecutableHash, bin)
			}
		}
	}
	if !found {
		t.Errorf("the sleeper (pid %d) is not in ps --json", sleeper.Process.Pid)
	}

	// procmond killed: restarted, and events resume.
	before := status(t, cli, sock).Collectors[0]
	if err := syscall.Kill(before.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testproc.ExpectLine(t, logs, "the agent", "collector exited; restarting")
	wait.Until(t, 15*time.Second, "procmond restarted", func() bool {
		c := status(t, cli, sock).Collectors[0]
		return c.State == StateRunning && c.PID != before.PID && c.Restarts == before.Restarts+1 && c.LastHeartbeat.After(time.Now().Add(-2*time.Second))
	})
	if c := status(t, cli, sock).Collectors[0]; !strings.Contains(c.LastExit, "killed") {
		t.Errorf("last exit %q, want the SIGKILL", c.LastExit)
	}
	follow := exec.Command(cli, "--socket", sock, "alerts", "--count", "1")
	followOut, _ := follow.StdoutPipe()
	followErr, _ := follow.StderrPipe()
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { follow.Process.Kill(); follow.Wait() }()
	testproc.ExpectLine(t, testproc.Lines(followErr), "alerts", "waiting for alerts")
	second := exec.Command(bin, "30")
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { second.Process.Kill(); second.Wait() }()
	testproc.ExpectLine(t, alerts, "the agent's alerts after the restart", "pid="+strconv.Itoa(second.Process.Pid))
	testproc.ExpectLine(t, testproc.Lines(followOut), "daemoneye-cli alerts", "exec-from-world-writable-dir")

	// The agent stops: procmond goes with it.
	child := status(t, cli, sock).Collectors[0].PID
	ag.Process.Signal(syscall.SIGTERM)
	testproc.ExpectLine(t, logs, "the agent", "collector stopped")
	go func() {
		for range alerts {
		}
	}() // drain the alerts until the agent exits
	if err := ag.Wait(); err != nil {
		t.Errorf("the agent exited with %v after SIGTERM", err)
	}
	wait.Until(t, 15*time.Second, "procmond gone after the agent", func() bool { return gone(child) })
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("the socket is still there: %v", err)
	}
}

// An agent killed with SIGKILL takes its collectors with it (parent death
// signal): no orphan keeps running.
func TestAgentKilledLeavesNoOrphan(t *testing.T) {
	agentBin, cli, dir := binaries(t)
	sock := filepath.Join(dir, "run", "eventbus.sock")
	ag := exec.Command(agentBin, "--socket", sock, "--alerts", "off")
	stderr, _ := ag.StderrPipe()
	if err := ag.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ag.Process.Kill(); ag.Wait() })
	testproc.ExpectLine(t, testproc.Lines(stderr), "the agent", "collector started")
	var child int
	wait.Until(t, 15*time.Second, "procmond running", func() bool {
		c := status(t, cli, sock).Collectors[0]
		child = c.PID
		return c.State == StateRunning && c.PID != 0
	})
	ag.Process.Kill()
	ag.Wait()
	wait.Until(t, 15*time.Second, "procmond gone after the agent was killed", func() bool { return gone(child) })
}

// startAgent starts agentBin on sock with args, and returns once it says
// it watches the processes and procmond is running and healthy; the
// agent is killed when t ends. It returns the agent's command and the
// lines of its stdout (alerts) and stderr (logs).
func startAgent(t testing.TB, agentBin, cli, sock string, args ...string) (ag *exec.Cmd, alerts, logs <-chan string) {
	t.Helper()
	ag = exec.Command(agentBin, append([]string{"--socket", sock}, args...)...)
	stdout, _ := ag.StdoutPipe()
	stderr, _ := ag.StderrPipe()
	if err := ag.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ag.Process.Kill(); ag.Wait() })
	alerts, logs = testproc.Lines(stdout), testproc.Lines(stderr)
	testproc.ExpectLine(t, logs, "the agent", "watching the processes")
	// Every default collector: procmond, and netmond and fsmond as root
	// on a kernel with BTF.
	var last agentapi.Collectors
	wait.Until(t, 30*time.Second, "the collectors running and healthy", func() bool {
		last = status(t, cli, sock)
		for _, c := range last.Collectors {
			if c.State != StateRunning || c.Health != HealthHealthy {
				t.Logf("%s: %s, %s", c.ID, c.State, c.Health)
				return false
			}
		}
		return true
	})
	return ag, alerts, logs
}
