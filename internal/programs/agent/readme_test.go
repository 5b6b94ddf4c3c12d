package agent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// demoRuns is how many times TestReadmeDemoTenMilliseconds runs the
// README's demo.
const demoRuns = 10

// The README's demo as a user runs it, as root: the agent with no flags
// but the socket (built-in rules), then `cp /bin/sleep /tmp/sleepy &&
// /tmp/sleepy 0.01`, a copy in /tmp that runs for 10 ms. Every run raises
// the built-in exec-from-world-writable-dir alert through procmond's eBPF
// sensor; the /proc scan alone, every 2 s, would miss nearly all of them.
func TestReadmeDemoTenMilliseconds(t *testing.T) {
	needSensor(t)
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	agentBin, cli, dir := binaries(t)
	// /tmp/sleepy as in the README, with a name of its own so that runs
	// of this test at once do not share it; cp creates it with the mode
	// of sleep.
	f, err := os.CreateTemp("/tmp", "sleepy-")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	sleepy := f.Name()
	os.Remove(sleepy)
	t.Cleanup(func() { os.Remove(sleepy) })

	sock := filepath.Join(dir, "run", "eventbus.sock")
	_, alerts, _ := startAgent(t, agentBin, cli, sock)
	if src := status(t, cli, sock).Collectors[0].Detail["source"]; src != "ebpf" {
		t.Fatalf("procmond's source is %q, want ebpf", src)
	}
	raised := map[string]bool{}
	for i := range demoRuns {
		demo := "cp " + sleep + " " + sleepy + " && " + sleepy + " 0.01"
		start := time.Now()
		if out, err := exec.Command("/bin/sh", "-c", demo).CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", demo, err, out)
		}
		took := time.Since(start)
		for timeout := time.After(10 * time.Second); len(raised) <= i; {
			select {
			case line := <-alerts:
				if !strings.Contains(line, "exec-from-world-writable-dir") || !strings.Contains(line, `exe="`+sleepy+`"`) {
					continue
				}
				for f := range strings.FieldsSeq(line) {
					if pid, ok := strings.CutPrefix(f, "pid="); ok {
						raised[pid] = true
					}
				}
			case <-timeout:
				t.Fatalf("run %d of `%s` (%v) raised no exec-from-world-writable-dir alert within 10 s", i+1, demo, took.Round(time.Millisecond))
			}
		}
	}
	if len(raised) != demoRuns {
		t.Errorf("%d alerts for %d runs, want one per run: %v", len(raised), demoRuns, raised)
	}
}
