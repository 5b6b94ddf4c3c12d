package process

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/collector"
	"github.com/daemoneye/daemoneye/envelope"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/internal/testutil/testproc"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
	"github.com/daemoneye/daemoneye/rpc"
	"github.com/daemoneye/daemoneye/server"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func rec(pid uint32, exe string, mod func(*eventbusv1.ProcessRecord)) *eventbusv1.ProcessRecord {
	uid := uint32(1000)
	r := &eventbusv1.ProcessRecord{Pid: pid, Name: filepath.Base(exe), ExecutablePath: exe, CommandLine: []string{exe}, Uid: &uid, Accessible: true}
	if mod != nil {
		mod(r)
	}
	return r
}

func TestDiff(t *testing.T) {
	a := Key{PID: 10, Start: 100}
	b := Key{PID: 20, Start: 200}
	reused := Key{PID: 20, Start: 900}
	base := map[Key]*eventbusv1.ProcessRecord{a: rec(10, "/bin/a", nil), b: rec(20, "/bin/b", nil)}
	type ev struct {
		pid     uint32
		subtype eventbusv1.ProcessEventSubtype
		changed []string
	}
	const (
		created    = eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_CREATED
		updated    = eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_UPDATED
		terminated = eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_TERMINATED
		observed   = eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_OBSERVED
	)
	cases := []struct {
		name string
		prev map[Key]*eventbusv1.ProcessRecord
		cur  map[Key]*eventbusv1.ProcessRecord
		want []ev
	}{
		{"first scan", nil, base, []ev{{10, observed, nil}, {20, observed, nil}}},
		{"nothing", base, base, nil},
		{"created and terminated", map[Key]*eventbusv1.ProcessRecord{a: base[a]}, map[Key]*eventbusv1.ProcessRecord{b: base[b]},
			[]ev{{10, terminated, nil}, {20, created, nil}}},
		{"pid reused", base, map[Key]*eventbusv1.ProcessRecord{a: base[a], reused: rec(20, "/bin/c", nil)},
			[]ev{{20, created, nil}, {20, terminated, nil}}},
		{"exec and setuid", base, map[Key]*eventbusv1.ProcessRecord{a: rec(10, "/bin/sh", func(r *eventbusv1.ProcessRecord) {
			uid := uint32(0)
			r.Uid = &uid
		}), b: base[b]}, []ev{{10, updated, []string{"name", "executable_path", "uid", "command_line"}}}},
		{"binary deleted", base, map[Key]*eventbusv1.ProcessRecord{a: base[a], b: rec(20, "/bin/b", func(r *eventbusv1.ProcessRecord) {
			r.ExecutableDeleted = true
		})}, []ev{{20, updated, []string{"executable_deleted"}}}},
		{"unreadable is not a change", base, map[Key]*eventbusv1.ProcessRecord{a: base[a], b: rec(20, "/bin/b", func(r *eventbusv1.ProcessRecord) {
			r.Uid, r.CommandLine, r.ExecutablePath, r.Accessible = nil, nil, "", false
		})}, nil},
	}
	for _, tc := range cases {
		var got []ev
		for _, c := range Diff(tc.prev, tc.cur) {
			got = append(got, ev{c.Record.GetPid(), c.Subtype, c.Changed})
		}
		if !slices.EqualFunc(got, tc.want, func(x, y ev) bool {
			return x.pid == y.pid && x.subtype == y.subtype && slices.Equal(x.changed, y.changed)
		}) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

// copySleep copies the sleep binary into dir, as a user would to trigger
// the demo alert.
func copySleep(t *testing.T, dir string) string {
	t.Helper()
	src, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	return testproc.CopyProgram(t, src, filepath.Join(dir, "sleepy"), 0o755)
}

// startBroker starts a broker on a UNIX socket until the test ends, and
// returns a function that dials it as a client named name; the test's
// cleanup closes each client.
func startBroker(t *testing.T) func(name string) *client.Conn {
	t.Helper()
	path, _, _ := testbroker.Start(t, server.Options{})
	return func(name string) *client.Conn {
		t.Helper()
		c, err := client.Dial(t.Context(), path, client.Options{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
}

func startChild(t *testing.T, bin string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(bin, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

func find(scan map[Key]*eventbusv1.ProcessRecord, pid int) *eventbusv1.ProcessRecord {
	for k, r := range scan {
		if k.PID == uint32(pid) {
			return r
		}
	}
	return nil
}

// A real child process: its record, the hash of its binary, then the
// binary deleted while it runs, then its end.
func TestScannerFollowsARealProcess(t *testing.T) {
	hashes := &HashCache{}
	s, err := NewScanner(ScannerOptions{Hashes: hashes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	bin := copySleep(t, t.TempDir())
	child := startChild(t, bin)
	before := time.Now()
	var r *eventbusv1.ProcessRecord
	var first map[Key]*eventbusv1.ProcessRecord
	wait.For(t, 5*time.Second, "the child to show up running "+bin, func() error {
		if first, err = s.Scan(time.Now()); err != nil {
			t.Fatal(err)
		}
		if r = find(first, child.Process.Pid); r.GetExecutablePath() != bin {
			return fmt.Errorf("the child is %v", r)
		}
		return nil
	})
	data, _ := os.ReadFile(bin)
	sum := sha256.Sum256(data)
	if r.GetPpid() != uint32(os.Getpid()) || !slices.Equal(r.GetCommandLine(), []string{bin, "30"}) || !r.GetFileExists() ||
		r.GetExecutableDeleted() || !r.GetAccessible() || r.GetUid() != uint32(os.Getuid()) || r.GetMemoryRssBytes() == 0 {
		t.Errorf("record %v", r)
	}
	if string(r.GetExecutableHash()) != string(sum[:]) || r.GetHashAlgorithm() != eventbusv1.HashAlgorithm_HASH_ALGORITHM_SHA256 {
		t.Errorf("hash %x, want %x", r.GetExecutableHash(), sum)
	}
	if st := r.GetStartTime().AsTime(); st.Before(before.Add(-5*time.Second)) || st.After(time.Now().Add(time.Second)) {
		t.Errorf("start time %v, the child started at about %v", st, before)
	}
	// A second scan hashes only binaries the first did not see (other
	// tests on this host start processes meanwhile).
	hashed := hashes.Hashed()
	prev, _ := s.Scan(time.Now())
	seen := map[string]bool{}
	for _, r := range first {
		seen[r.GetExecutablePath()+string(r.GetExecutableHash())] = true
	}
	fresh := 0
	for _, r := range prev {
		if id := r.GetExecutablePath() + string(r.GetExecutableHash()); len(r.GetExecutableHash()) > 0 && !seen[id] {
			seen[id] = true
			fresh++
		}
	}
	if n := hashes.Hashed() - hashed; n > uint64(fresh) {
		t.Errorf("%d files hashed in a second scan that saw %d new binaries; unchanged binaries are hashed once", n, fresh)
	}
	if find(prev, child.Process.Pid).CpuPercent == nil {
		t.Error("no CPU figure on the second scan")
	}

	if err := os.Remove(bin); err != nil {
		t.Fatal(err)
	}
	cur, _ := s.Scan(time.Now())
	r = find(cur, child.Process.Pid)
	if !r.GetExecutableDeleted() || r.GetFileExists() || r.GetExecutablePath() != bin || string(r.GetExecutableHash()) != string(sum[:]) {
		t.Errorf("after deleting the binary: %v", r)
	}
	changes := Diff(prev, cur)
	if i := slices.IndexFunc(changes, func(c Change) bool { return c.Record.GetPid() == uint32(child.Process.Pid) }); i < 0 ||
		changes[i].Subtype != eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_UPDATED || !slices.Contains(changes[i].Changed, "executable_deleted") {
		t.Errorf("changes %v", changes)
	}

	child.Process.Kill()
	child.Wait()
	end, _ := s.Scan(time.Now())
	if find(end, child.Process.Pid) != nil {
		t.Fatal("the killed child is still scanned")
	}
	var term bool
	for _, c := range Diff(cur, end) {
		term = term || (c.Record.GetPid() == uint32(child.Process.Pid) && c.Subtype == eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_TERMINATED)
	}
	if !term {
		t.Error("no TERMINATED event for the killed child")
	}
}

// procmond over the bus: the events of a child process, a snapshot, health,
// configuration, and a shutdown over RPC.
func TestCollectorOverTheBus(t *testing.T) {
	dial := startBroker(t)
	watch := dial("watch")
	events, err := watch.Subscribe(t.Context(), "events.process.#", 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := New(dial("procmond"), Options{Interval: 200 * time.Millisecond, SoftwareVersion: "test"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- pc.Run(ctx) }()
	defer func() {
		cancel()
		select {
		case <-ran:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	}()
	cc := collector.NewClient(rpc.NewClient(dial("agent"), rpc.ClientOptions{}))

	// The first scan: what runs before it is OBSERVED, not CREATED. With
	// the eBPF sensor, created events of other processes may come first.
	for timeout, observed := time.After(10*time.Second), false; !observed; {
		select {
		case m := <-events.C():
			observed = m.Topic == "events.process.enumeration.observed"
		case <-timeout:
			t.Fatal("no event from the first scan")
		}
	}
	bin := copySleep(t, t.TempDir())
	child := startChild(t, bin)
	var created *eventbusv1.ProcessEventData
	for timeout := time.After(10 * time.Second); created == nil; {
		select {
		case m := <-events.C():
			e := new(eventbusv1.EventBusMessage)
			if err := proto.Unmarshal(m.Payload, e); err != nil {
				t.Fatal(err)
			}
			if err := envelope.Validate(e); err != nil {
				t.Fatal(err)
			}
			d := e.GetCollectionEvent().GetProcess()
			if d.GetProcess().GetPid() == uint32(child.Process.Pid) && d.GetSubtype() == eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_CREATED {
				if m.Topic != "events.process.lifecycle.created" || e.GetMetadata().GetSourceId() != "procmond" {
					t.Errorf("created event on %q from %q", m.Topic, e.GetMetadata().GetSourceId())
				}
				created = d
			}
		case <-timeout:
			t.Fatal("no CREATED event for the child within 10 s")
		}
	}
	if created.GetProcess().GetExecutablePath() != bin || created.GetTreeContext().GetParentExecutablePath() == "" {
		t.Errorf("created %v", created)
	}

	// The snapshot is the latest scan's, which may come after the eBPF
	// sensor's created event.
	wait.For(t, 10*time.Second, "the child in a snapshot", func() error {
		snap, err := cc.Snapshot(t.Context(), "procmond", &eventbusv1.SnapshotRequest{Pids: []uint32{uint32(child.Process.Pid)}})
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.GetProcesses()) != 1 || snap.GetProcesses()[0].GetExecutablePath() != bin || snap.GetTotalCount() != 1 {
			return fmt.Errorf("snapshot %v", snap)
		}
		return nil
	})
	page, err := cc.Snapshot(t.Context(), "procmond", &eventbusv1.SnapshotRequest{PageSize: 1})
	if err != nil || len(page.GetProcesses()) != 1 || page.GetNextPageToken() == "" {
		t.Errorf("first page %v, %v", page, err)
	}
	h, err := cc.Health(t.Context(), "procmond", &eventbusv1.HealthCheckRequest{IncludeMetrics: true})
	if err != nil || h.GetState() != eventbusv1.CollectorState_COLLECTOR_STATE_RUNNING || len(h.GetComponents()) != 3 ||
		h.GetComponents()[2].GetName() != "source" || h.GetComponents()[2].GetMetrics()["ebpf"] != map[Source]float64{SourceEBPF: 1}[pc.source] {
		t.Errorf("health %v, %v", h, err)
	}
	caps, err := cc.Capabilities(t.Context(), "procmond", &eventbusv1.GetCapabilitiesRequest{})
	if err != nil || !slices.Contains(caps.GetSupportedOperations(), eventbusv1.RpcOperation_RPC_OPERATION_GET_SNAPSHOT) || caps.GetSoftwareVersion() != "test" ||
		!slices.Contains(caps.GetFeatures(), "process.source."+string(pc.source)) {
		t.Errorf("capabilities %v, %v", caps, err)
	}
	cfgReq := &eventbusv1.ConfigUpdateRequest{}
	cfgReq.Config = mustStruct(t, map[string]any{"interval_ms": 5})
	if _, err := cc.UpdateConfig(t.Context(), "procmond", cfgReq); !errors.Is(err, rpc.ErrInvalidArgument) {
		t.Errorf("interval 5 ms = %v, want refused", err)
	}
	cfgReq.Config = mustStruct(t, map[string]any{"interval_ms": 300, "hash": false})
	if res, err := cc.UpdateConfig(t.Context(), "procmond", cfgReq); err != nil || !res.GetApplied() {
		t.Errorf("interval 300 ms = %v, %v", res, err)
	}
	if _, err := cc.GracefulShutdown(t.Context(), "procmond", &eventbusv1.ShutdownRequest{Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-ran:
		if !errors.Is(err, ErrShutdown) {
			t.Errorf("Run = %v after a shutdown request", err)
		}
		ran <- err // for the deferred check
	case <-time.After(10 * time.Second):
		t.Fatal("Run still running after GRACEFUL_SHUTDOWN")
	}
}

func mustStruct(t *testing.T, m map[string]any) *structpb.Struct {
	t.Helper()
	s, err := structpb.NewStruct(m)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
