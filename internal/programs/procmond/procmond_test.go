package procmond

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/internal/testutil/testproc"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// procmond as a process of its own, with a broker and the CLI: it answers
// health and snapshot requests, publishes, and stops on SIGTERM.
func TestProcmondProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs processes")
	}
	dir := t.TempDir()
	broker := testproc.Build(t, dir, "github.com/daemoneye/daemoneye/cmd/daemoneye-broker")
	cli := testproc.Build(t, dir, "github.com/daemoneye/daemoneye/cmd/daemoneye-cli")
	bin := testproc.Build(t, dir, "github.com/daemoneye/daemoneye/cmd/procmond")
	sock := filepath.Join(dir, "run", "eventbus.sock")
	testproc.StartBroker(t, broker, sock)

	pm := exec.Command(bin, "--socket", sock, "--interval", "200ms")
	stderr, _ := pm.StderrPipe()
	if err := pm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pm.Process.Kill(); pm.Wait() })
	logs := testproc.Lines(stderr)
	testproc.ExpectLine(t, logs, "procmond", "collecting")

	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(cli, append([]string{"--socket", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	// procmond serves its control operations once its source is open,
	// some time after it says "collecting".
	wait.For(t, 10*time.Second, "procmond to be healthy", func() error {
		health, err := exec.Command(cli, "--socket", sock, "collectors", "health", "procmond").CombinedOutput()
		if err != nil || !strings.Contains(string(health), "procmond: healthy, running") {
			return fmt.Errorf("health (%v):\n%s", err, health)
		}
		return nil
	})
	snap := run("call", "control.agent.tasks.procmond", `{"getSnapshot": {"pids": [`+strconv.Itoa(pm.Process.Pid)+`]}}`)
	if !strings.Contains(snap, `"executablePath": "`+bin+`"`) || !strings.Contains(snap, `"totalCount": 1`) {
		t.Errorf("snapshot of procmond itself:\n%s", snap)
	}
	sub := exec.Command(cli, "--socket", sock, "sub", "--count", "1", "events.process.lifecycle.created")
	var subOut bytes.Buffer
	var subErr lockedBuffer
	sub.Stdout, sub.Stderr = &subOut, &subErr
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 10*time.Second, "sub to subscribe", func() bool { return strings.Contains(subErr.String(), "subscribed to") })
	// A process that outlives a scan interval.
	if err := exec.Command("sleep", "0.5").Run(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sub.Wait() }()
	select {
	case err := <-done:
		if err != nil || subOut.Len() == 0 {
			t.Errorf("sub: %v, %q", err, subOut.String())
		}
	case <-time.After(10 * time.Second):
		sub.Process.Kill()
		<-done
		t.Error("no lifecycle event within 10 s of starting a process")
	}

	pm.Process.Signal(syscall.SIGTERM)
	testproc.ExpectLine(t, logs, "procmond", "stopped")
	if err := pm.Wait(); err != nil {
		t.Errorf("procmond exited with %v after SIGTERM", err)
	}
}
