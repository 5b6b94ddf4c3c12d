package broker

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
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

// Two processes exchange messages through a third: the broker.
func TestPubSubAcrossProcesses(t *testing.T) {
	_, brokerBin, cliBin, sock := binaries(t)

	broker := exec.Command(brokerBin, "--socket", sock)
	var brokerLog bytes.Buffer
	broker.Stderr = &brokerLog
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	defer broker.Process.Kill()
	wait.Until(t, 10*time.Second, "the broker's socket", func() bool { _, err := os.Stat(sock); return err == nil })

	sub := exec.Command(cliBin, "--socket", sock, "sub", "--count", "3", "--json", "events.test.#")
	var subOut bytes.Buffer
	sub.Stdout = &subOut
	subErr, err := sub.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := sub.Start(); err != nil {
		t.Fatal(err)
	}
	defer sub.Process.Kill()
	line, err := bufio.NewReader(subErr).ReadString('\n')
	if err != nil || !strings.Contains(line, "subscribed") {
		t.Fatalf("sub did not subscribe: %q %v", line, err)
	}

	if out, err := exec.Command(cliBin, "--socket", sock, "pub", "events.test.one", "hello").CombinedOutput(); err != nil {
		t.Fatalf("pub: %v\n%s", err, out)
	}
	pub := exec.Command(cliBin, "pub", "events.test.lines")
	pub.Env = append(os.Environ(), "DAEMONEYE_SOCKET="+sock)
	pub.Stdin = strings.NewReader("line one\nline two\n")
	if out, err := pub.CombinedOutput(); err != nil {
		t.Fatalf("pub from stdin: %v\n%s", err, out)
	}
	// A bad topic is refused with a clear error and a non-zero exit.
	out, err := exec.Command(cliBin, "--socket", sock, "pub", "events.Bad", "x").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "upper-case") {
		t.Errorf("pub to a bad topic: %v\n%s", err, out)
	}

	done := make(chan error, 1)
	go func() { done <- sub.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("sub: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("sub did not receive 3 messages; got:\n%s", subOut.String())
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(subOut.String()), "\n") {
		var m struct{ Topic, Payload, Pattern string }
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("sub printed %q: %v", l, err)
		}
		if m.Pattern != "events.test.#" {
			t.Errorf("pattern %q", m.Pattern)
		}
		got = append(got, m.Topic+"="+m.Payload)
	}
	want := "events.test.one=hello events.test.lines=line one events.test.lines=line two"
	if strings.Join(got, " ") != want {
		t.Errorf("sub received %v, want %s", got, want)
	}

	// SIGTERM drains and removes the socket.
	broker.Process.Signal(syscall.SIGTERM)
	bdone := make(chan error, 1)
	go func() { bdone <- broker.Wait() }()
	select {
	case err := <-bdone:
		if err != nil {
			t.Errorf("broker exited with %v\n%s", err, brokerLog.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("broker did not exit on SIGTERM")
	}
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Errorf("socket left behind after SIGTERM: %v", err)
	}
}

// An acl section in the configuration confines each identity to its
// grant: the operator here may publish under events.ok only, and stats
// count the refusal.
func TestACLFromConfig(t *testing.T) {
	dir, brokerBin, cliBin, sock := binaries(t)
	cfg := filepath.Join(dir, "broker.yaml")
	me := "uid:" + strconv.Itoa(os.Getuid())
	yaml := "acl:\n  \"" + me + "\":\n    publish: [events.ok.#]\n    request: [control.broker.#]\n    subscribe: [\"#\"]\n"
	if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	broker := exec.Command(brokerBin, "--socket", sock, "--config", cfg)
	var brokerLog bytes.Buffer
	broker.Stderr = &brokerLog
	if err := broker.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { broker.Process.Kill(); broker.Wait() }()
	wait.Until(t, 10*time.Second, "the broker's socket", func() bool { _, err := os.Stat(sock); return err == nil })

	if out, err := exec.Command(cliBin, "--socket", sock, "pub", "events.ok.one", "fine").CombinedOutput(); err != nil {
		t.Fatalf("pub within the grant: %v\n%s", err, out)
	}
	out, err := exec.Command(cliBin, "--socket", sock, "pub", "events.process.lifecycle", "forged").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "forbidden") && !strings.Contains(string(out), "may") {
		t.Errorf("pub outside the grant: err %v, output:\n%s", err, out)
	}
	out, err = exec.Command(cliBin, "--socket", sock, "stats", "--json").CombinedOutput()
	if err != nil {
		t.Fatalf("stats: %v\n%s\nbroker:\n%s", err, out, brokerLog.String())
	}
	var st struct {
		DeniedPublishes uint64 `json:"denied_publishes"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("stats: %v\n%s", err, out)
	}
	if st.DeniedPublishes != 1 {
		t.Errorf("denied_publishes %d, want 1", st.DeniedPublishes)
	}
}

// binaries builds daemoneye-broker and daemoneye-cli into a temporary
// directory, and returns it, their paths and a socket path in it; it
// skips the test under -short.
func binaries(t *testing.T) (dir, brokerBin, cliBin, sock string) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds binaries and runs processes")
	}
	dir = t.TempDir()
	brokerBin = testproc.Build(t, dir, "github.com/daemoneye/daemoneye/cmd/daemoneye-broker")
	cliBin = testproc.Build(t, dir, "github.com/daemoneye/daemoneye/cmd/daemoneye-cli")
	return dir, brokerBin, cliBin, filepath.Join(dir, "run", "eventbus.sock")
}
