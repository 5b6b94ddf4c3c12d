package agent

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/collector/process/sensor"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
)

// needSensor skips tb unless it runs as root where the eBPF sensor opens.
func needSensor(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("the agent gives procmond the eBPF sensor's capabilities only as root")
	}
	if s, err := sensor.Open(sensor.Options{}); err != nil {
		tb.Skip("the eBPF sensor cannot run here (CI runs this as root): " + err.Error())
	} else {
		s.Close()
	}
}

// privateDirRule writes a copy of /bin/true to a private directory and,
// in dir, a rules file whose one rule matches any exec there; it returns
// both paths.
func privateDirRule(tb testing.TB, dir string) (prog, rules string) {
	tb.Helper()
	private := tb.TempDir()
	data, err := os.ReadFile("/bin/true")
	if err != nil {
		tb.Skip("no /bin/true")
	}
	prog = filepath.Join(private, "dropped")
	if err := os.WriteFile(prog, data, 0o700); err != nil {
		tb.Fatal(err)
	}
	rules = filepath.Join(dir, "rules.yaml")
	if err := os.WriteFile(rules, fmt.Appendf(nil, `rules:
  - id: run-from-private-dir
    title: A binary ran from the private directory
    severity: high
    expression: event == "created" && process.executable_path.startsWith(%q)
`, private+"/"), 0o600); err != nil {
		tb.Fatal(err)
	}
	return prog, rules
}

// e2eRuns is how many times TestAgentAlertsOnShortProcesses runs a
// short-lived binary.
const e2eRuns = 400

// The agent as a user runs it, as root, with a custom rule on a private
// directory: 400 sequential runs of a copy of /bin/true there raise at
// least 99% of 400 alerts, through procmond's eBPF sensor (the source
// procmond's health names).
func TestAgentAlertsOnShortProcesses(t *testing.T) {
	needSensor(t)
	agentBin, cli, dir := binaries(t)
	prog, rules := privateDirRule(t, dir)
	sock := filepath.Join(dir, "run", "eventbus.sock")
	_, alerts, _ := startAgent(t, agentBin, cli, sock, "--rules", rules, "--no-builtin-rules")
	wait.Until(t, 15*time.Second, "collectors list to name the eBPF source", func() bool {
		return status(t, cli, sock).Collectors[0].Detail["source"] == "ebpf"
	})
	health, err := exec.Command(cli, "--socket", sock, "collectors", "health", "procmond").CombinedOutput()
	if err != nil || !strings.Contains(string(health), "ebpf:") {
		t.Fatalf("procmond's health does not name the eBPF source (%v):\n%s", err, health)
	}

	pids := map[string]bool{}
	start := time.Now()
	for range e2eRuns {
		cmd := exec.Command(prog)
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		pids[strconv.Itoa(cmd.Process.Pid)] = true
	}
	ran := time.Since(start)
	raised := map[string]bool{}
	deadline := time.After(20 * time.Second)
collect:
	for len(raised) < e2eRuns {
		select {
		case line := <-alerts:
			if !strings.Contains(line, "run-from-private-dir") {
				continue
			}
			for f := range strings.FieldsSeq(line) {
				if pid, ok := strings.CutPrefix(f, "pid="); ok && pids[pid] {
					raised[pid] = true
				}
			}
		case <-deadline:
			break collect
		}
	}
	t.Logf("%d runs in %v: %d alerts (%v after the first run)", e2eRuns, ran.Round(time.Millisecond), len(raised), time.Since(start).Round(time.Millisecond))
	if len(raised) < e2eRuns*99/100 {
		t.Errorf("%d of %d runs raised an alert, want at least 99%%", len(raised), e2eRuns)
	}
}
