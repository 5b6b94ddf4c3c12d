package procmond

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/collector/process"
	"github.com/daemoneye/daemoneye/collector/process/sensor"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/testutil/testproc"
	"google.golang.org/protobuf/proto"
)

// shortRuns is how many times TestSourceSeesShortProcesses runs a
// short-lived binary.
const shortRuns = 400

// canSense reports why the eBPF sensor cannot be opened here, or "".
// startEBPF skips t unless the eBPF sensor can run here, and otherwise
// starts a broker and procmond on it with --source ebpf and args, waits
// until procmond uses the sensor, and returns a subscription to pattern
// on that broker; all end with t.
func startEBPF(t *testing.T, pattern string, args ...string) *client.Subscription {
	t.Helper()
	if testing.Short() {
		t.Skip("builds binaries and runs processes")
	}
	if why := canSense(t); why != "" {
		t.Skip("the eBPF sensor cannot run here (CI runs this as root): " + why)
	}
	dir := t.TempDir()
	broker := testproc.Build(t, dir, "github.com/daemoneye/daemoneye/cmd/daemoneye-broker")
	bin := testproc.Build(t, dir, "github.com/daemoneye/daemoneye/cmd/procmond")
	sock := filepath.Join(dir, "run", "eventbus.sock")
	testproc.StartBroker(t, broker, sock)
	watch, err := client.Dial(t.Context(), sock, client.Options{Name: "watch"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { watch.Close() })
	sub, err := watch.Subscribe(t.Context(), pattern, 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	pm := exec.Command(bin, append([]string{"--socket", sock, "--source", "ebpf"}, args...)...)
	stderr, _ := pm.StderrPipe()
	if err := pm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pm.Process.Kill(); pm.Wait() })
	logs := testproc.Lines(stderr)
	testproc.ExpectLine(t, logs, "procmond", "using the eBPF process sensor")
	return sub
}

func canSense(t *testing.T) string {
	t.Helper()
	s, err := sensor.Open(sensor.Options{})
	if err != nil {
		return err.Error()
	}
	s.Close()
	return ""
}

// copyBinary copies the binary src into a new private directory, as an
// intruder's dropper would, and returns its path.
func copyBinary(t *testing.T, src string) string {
	t.Helper()
	return testproc.CopyProgram(t, src, filepath.Join(t.TempDir(), "dropped"), 0o700)
}

// procmond as its own process with each --source, publishing to a broker:
// 400 sequential runs of a copy of /bin/true in a private directory. With
// ebpf each run is published as CREATED with its path (at least 399 of
// 400) and as TERMINATED; with connector each is published as CREATED
// (with its path when /proc could still be read, else by pid with
// accessible=false) and as TERMINATED; with poll most are missed, which
// is only logged.
func TestSourceSeesShortProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs processes")
	}
	dir := t.TempDir()
	broker := testproc.Build(t, dir, "github.com/daemoneye/daemoneye/cmd/daemoneye-broker")
	bin := testproc.Build(t, dir, "github.com/daemoneye/daemoneye/cmd/procmond")
	sock := filepath.Join(dir, "run", "eventbus.sock")
	testproc.StartBroker(t, broker, sock)
	why := canSense(t)
	connWhy := ""
	if err := process.ProbeConnector(); err != nil {
		connWhy = err.Error()
	}

	for _, tc := range []struct {
		source, started string
		min             int // created events of the runs expected, at least
		terminated      bool
		wait            time.Duration // for the events after the runs
	}{
		{"ebpf", "using the eBPF process sensor", shortRuns - 1, true, 15 * time.Second},
		{"connector", "using the netlink process connector", shortRuns, true, 15 * time.Second},
		{"poll", "polling /proc only", 0, false, 3 * time.Second}, // more than a scan interval
	} {
		t.Run(tc.source, func(t *testing.T) {
			if tc.source == "ebpf" && why != "" {
				t.Skip("the eBPF sensor cannot run here (CI runs this as root): " + why)
			}
			if tc.source == "connector" && connWhy != "" {
				t.Skip("the process connector cannot be used here (CI runs this as root): " + connWhy)
			}
			watch, err := client.Dial(t.Context(), sock, client.Options{Name: "watch"})
			if err != nil {
				t.Fatal(err)
			}
			defer watch.Close()
			events, err := watch.Subscribe(t.Context(), "events.process.lifecycle.#", 1<<16)
			if err != nil {
				t.Fatal(err)
			}
			pm := exec.Command(bin, "--socket", sock, "--source", tc.source)
			stderr, _ := pm.StderrPipe()
			if err := pm.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { pm.Process.Kill(); pm.Wait() }()
			logs := testproc.Lines(stderr)
			testproc.ExpectLine(t, logs, "procmond", "collecting")
			testproc.ExpectLine(t, logs, "procmond", tc.started)

			prog := copyBinary(t, "/bin/true")
			pids := map[uint32]bool{}
			start := time.Now()
			for range shortRuns {
				cmd := exec.Command(prog)
				if err := cmd.Run(); err != nil {
					t.Fatal(err)
				}
				pids[uint32(cmd.Process.Pid)] = true
			}
			ran := time.Since(start)

			created, terminated, enriched := map[uint32]bool{}, map[uint32]bool{}, 0
			deadline := time.After(tc.wait)
		collect:
			for len(created) < shortRuns || (tc.terminated && len(terminated) < shortRuns) {
				select {
				case m := <-events.C():
					e := new(eventbusv1.EventBusMessage)
					if err := proto.Unmarshal(m.Payload, e); err != nil {
						t.Fatal(err)
					}
					d := e.GetCollectionEvent().GetProcess()
					p := d.GetProcess()
					// The connector's records of processes gone before /proc
					// was read have their pid and parent only (the parent
					// tells them from others that reused the pid).
					unread := tc.source == "connector" && p.GetExecutablePath() == "" && p.GetPpid() == uint32(os.Getpid())
					if !pids[p.GetPid()] || (p.GetExecutablePath() != prog && !unread) {
						continue
					}
					switch d.GetSubtype() {
					case eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_CREATED:
						if created[p.GetPid()] {
							t.Errorf("pid %d published as created twice", p.GetPid())
						}
						if m.Topic != "events.process.lifecycle.created" || (p.GetExecutablePath() == prog && (len(p.GetCommandLine()) != 1 || p.GetCommandLine()[0] != prog)) {
							t.Errorf("created on %q: %v", m.Topic, p)
						}
						created[p.GetPid()] = true
						if p.GetAccessible() {
							enriched++
						}
					case eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_TERMINATED:
						if terminated[p.GetPid()] {
							t.Errorf("pid %d published as terminated twice", p.GetPid())
						}
						terminated[p.GetPid()] = true
					}
				case <-deadline:
					break collect
				}
			}
			t.Logf("--source %s: %d runs in %v; created %d/%d (%d enriched from /proc), terminated %d/%d",
				tc.source, shortRuns, ran.Round(time.Millisecond), len(created), shortRuns, enriched, len(terminated), shortRuns)
			if len(created) < tc.min {
				t.Errorf("--source %s: %d of %d runs published as created, want at least %d", tc.source, len(created), shortRuns, tc.min)
			}
			if tc.terminated && len(terminated) < tc.min {
				t.Errorf("--source %s: %d of %d runs published as terminated, want at least %d", tc.source, len(terminated), shortRuns, tc.min)
			}
		})
	}
}

// --source ebpf or connector where it cannot be opened (as nobody, without
// capabilities) fails at once with exit code 2 and says what to do.
func TestSourceForcedFails(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs processes")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run procmond as nobody")
	}
	dir := t.TempDir()
	bin := testproc.Build(t, dir, "github.com/daemoneye/daemoneye/cmd/procmond")
	for _, d := range []string{dir, filepath.Dir(dir)} { // nobody must reach the binary
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		source string
		want   []string
	}{
		{"ebpf", []string{"--source ebpf", "cannot run here", "CAP_BPF"}},
		{"connector", []string{"--source connector", "process connector is unavailable", "CAP_NET_ADMIN"}},
	} {
		t.Run(tc.source, func(t *testing.T) { testSourceForcedFails(t, bin, dir, tc.source, tc.want) })
	}
}

func testSourceForcedFails(t *testing.T, bin, dir, source string, wants []string) {
	cmd := exec.Command(bin, "--source", source, "--socket", filepath.Join(dir, "none.sock"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if cmd.ProcessState.ExitCode() != 2 {
			t.Errorf("procmond --source %s as nobody: %v, want exit code 2", source, err)
		}
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatalf("procmond --source %s as nobody still runs after 15 s: it should fail at once", source)
	}
	for _, want := range wants {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
		}
	}
}

// With --source ebpf, a process that lives through several scans is
// published once as created and once as terminated: the scan does not
// publish again what the sensor did. Heartbeats come from the goroutine
// that scans, after the scan's events: three of them after the process
// ended mean at least two scans published what they had.
func TestSourceEBPFPublishesOnce(t *testing.T) {
	all := startEBPF(t, "#", "--interval", "100ms", "--heartbeat", "100ms")

	prog := copyBinary(t, "/bin/sleep")
	cmd := exec.Command(prog, "0.5") // five scans
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	pid := uint32(cmd.Process.Pid)
	counts := map[eventbusv1.ProcessEventSubtype]int{}
	beats := 0
	for timeout := time.After(15 * time.Second); beats < 3; {
		select {
		case m := <-all.C():
			e := new(eventbusv1.EventBusMessage)
			if err := proto.Unmarshal(m.Payload, e); err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(m.Topic, "control.health.heartbeat.") {
				if counts[eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_TERMINATED] > 0 {
					beats++
				}
				continue
			}
			if p := e.GetCollectionEvent().GetProcess(); p.GetProcess().GetPid() == pid && p.GetProcess().GetExecutablePath() == prog {
				counts[p.GetSubtype()]++
			}
		case <-timeout:
			t.Fatalf("events of pid %d within 15 s: %v, heartbeats after its end: %d", pid, counts, beats)
		}
	}
	if counts[eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_CREATED] != 1 || counts[eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_TERMINATED] != 1 {
		t.Errorf("pid %d published %v, want one created and one terminated", pid, counts)
	}
}

// --source auto falls back one step at a time, saying why: as nobody with
// CAP_NET_ADMIN only, from eBPF to the process connector; as nobody
// without capabilities, on to polling.
func TestSourceAutoFallsBack(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs processes")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run procmond as nobody with chosen capabilities")
	}
	if err := process.ProbeConnector(); err != nil {
		t.Skip("the process connector cannot be used here (CI runs this as root): ", err)
	}
	dir := t.TempDir()
	broker := testproc.Build(t, dir, "github.com/daemoneye/daemoneye/cmd/daemoneye-broker")
	bin := testproc.Build(t, dir, "github.com/daemoneye/daemoneye/cmd/procmond")
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Dir(dir)} { // nobody must reach the binaries
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chown(run, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	nobody := func(caps ...uintptr) *syscall.SysProcAttr {
		return &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}, AmbientCaps: caps}
	}
	sock := filepath.Join(run, "eventbus.sock")
	b := exec.Command(broker, "--socket", sock)
	b.SysProcAttr = nobody() // procmond connects as the broker's own user
	stderr, _ := b.StderrPipe()
	if err := b.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Process.Kill(); b.Wait() })
	testproc.ExpectLine(t, testproc.Lines(stderr), "the broker", "listening")

	const capNetAdmin = 12
	for _, tc := range []struct {
		name  string
		caps  []uintptr
		wants []string
	}{
		{"CAP_NET_ADMIN", []uintptr{capNetAdmin}, []string{"the eBPF process sensor cannot run here; trying the netlink process connector", "using the netlink process connector"}},
		{"no capabilities", nil, []string{"the eBPF process sensor cannot run here; trying the netlink process connector", "the netlink process connector cannot run here either; polling /proc"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pm := exec.Command(bin, "--socket", sock, "--source", "auto")
			pm.SysProcAttr = nobody(tc.caps...)
			stderr, _ := pm.StderrPipe()
			if err := pm.Start(); err != nil {
				t.Fatal(err)
			}
			defer func() { pm.Process.Kill(); pm.Wait() }()
			logs := testproc.Lines(stderr)
			for _, want := range tc.wants {
				testproc.ExpectLine(t, logs, "procmond", want)
			}
		})
	}
}
