package process

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/client"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/internal/testutil/testproc"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
	"github.com/daemoneye/daemoneye/server"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// cnMsg builds one netlink message as the kernel sends it: a proc_event
// of kind what at time ts, with the union's words u.
func cnMsg(seq, ack, what uint32, ts uint64, u ...uint32) []byte {
	ne := binary.NativeEndian
	data := ne.AppendUint32(nil, what)
	data = ne.AppendUint32(data, 1) // cpu
	data = ne.AppendUint64(data, ts)
	for _, w := range u {
		data = ne.AppendUint32(data, w)
	}
	b := ne.AppendUint32(nil, uint32(nlmsgHdrLen+cnMsgHdrLen+len(data)))
	b = ne.AppendUint16(b, nlmsgDone)
	b = ne.AppendUint16(b, 0)
	b = ne.AppendUint32(b, seq)
	b = ne.AppendUint32(b, 0)
	for _, w := range []uint32{cnIdxProc, cnValProc, seq, ack} {
		b = ne.AppendUint32(b, w)
	}
	b = ne.AppendUint16(b, uint16(len(data)))
	b = ne.AppendUint16(b, 0)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// allEvents decodes every message of a datagram with nextEvent.
func allEvents(b []byte) []cnEvent {
	var out []cnEvent
	for len(b) > 0 {
		var ev cnEvent
		var ok bool
		if ev, ok, b = nextEvent(b); ok {
			out = append(out, ev)
		}
	}
	return out
}

func TestNextEvent(t *testing.T) {
	fork := cnMsg(7, 0, procEventFork, 100, 10, 10, 11, 11)
	exec := cnMsg(8, 0, procEventExec, 200, 11, 11)
	exit := cnMsg(9, 0, procEventExit, 300, 11, 11, 2<<8, 17, 10, 10)
	oldExit := cnMsg(9, 0, procEventExit, 300, 11, 11, 9, 17) // before 4.18: no parent
	ack := cnMsg(42, 1, procEventNone, 0, 0)
	uid := cnMsg(1, 0, 0x4, 0, 11, 11, 0, 0)
	short := cnMsg(1, 0, procEventExec, 0, 11) // an exec without its tgid
	lying := slices.Clone(exec)
	binary.NativeEndian.PutUint32(lying, 4096) // claims more than there is
	otherCN := slices.Clone(exec)
	binary.NativeEndian.PutUint32(otherCN[nlmsgHdrLen:], 2) // another connector's idx
	bigData := slices.Clone(exec)
	binary.NativeEndian.PutUint16(bigData[nlmsgHdrLen+16:], 200) // cn_msg len beyond the message
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	for _, tc := range []struct {
		name string
		in   []byte
		want []cnEvent
	}{
		{"fork", fork, []cnEvent{{What: procEventFork, Time: 100, ParentPID: 10, ParentTGID: 10, PID: 11, TGID: 11, Seq: 7}}},
		{"exec", exec, []cnEvent{{What: procEventExec, Time: 200, PID: 11, TGID: 11, Seq: 8}}},
		{"exit", exit, []cnEvent{{What: procEventExit, Time: 300, PID: 11, TGID: 11, ExitCode: 2 << 8, ExitSignal: 17, ParentPID: 10, ParentTGID: 10, Seq: 9}}},
		{"exit without parent", oldExit, []cnEvent{{What: procEventExit, Time: 300, PID: 11, TGID: 11, ExitCode: 9, ExitSignal: 17, Seq: 9}}},
		{"ack", ack, []cnEvent{{What: procEventNone, Seq: 42, Ack: 1}}},
		{"other kinds skipped", cat(uid, exec), []cnEvent{{What: procEventExec, Time: 200, PID: 11, TGID: 11, Seq: 8}}},
		{"short union skipped", cat(short, exec), []cnEvent{{What: procEventExec, Time: 200, PID: 11, TGID: 11, Seq: 8}}},
		{"another connector skipped", cat(otherCN, exec), []cnEvent{{What: procEventExec, Time: 200, PID: 11, TGID: 11, Seq: 8}}},
		{"data beyond the message skipped", cat(bigData, exec), []cnEvent{{What: procEventExec, Time: 200, PID: 11, TGID: 11, Seq: 8}}},
		{"a length beyond the datagram ends it", cat(lying, exec), nil},
		{"truncated", exec[:len(exec)-4], nil},
		{"empty", nil, nil},
		{"header only", exec[:nlmsgHdrLen], nil},
	} {
		if got := allEvents(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %+v, want %+v", tc.name, got, tc.want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { allEvents(cat(uid, short)) }); n > 1 { // cat's
		t.Errorf("nextEvent allocates: %v per run", n)
	}
}

// naiveEvents is the fuzz oracle: the same messages read with
// encoding/binary.Read into the kernel's structs, field by field.
func naiveEvents(b []byte) []cnEvent {
	ne := binary.NativeEndian
	var out []cnEvent
	for len(b) > 0 {
		var h struct {
			Len         uint32
			Type, Flags uint16
			Seq, PortID uint32
		}
		if binary.Read(bytes.NewReader(b), ne, &h) != nil || h.Len < 16 || int(h.Len) > len(b) {
			break
		}
		body := b[16:h.Len]
		if next := (int(h.Len) + 3) / 4 * 4; next < len(b) {
			b = b[next:]
		} else {
			b = nil
		}
		var cn struct {
			Idx, Val, Seq, Ack uint32
			Len, Flags         uint16
		}
		if h.Type != 3 || binary.Read(bytes.NewReader(body), ne, &cn) != nil || cn.Idx != 1 || cn.Val != 1 || 20+int(cn.Len) > len(body) {
			continue
		}
		r := bytes.NewReader(body[20 : 20+int(cn.Len)])
		var pe struct {
			What, CPU uint32
			TS        uint64
		}
		if binary.Read(r, ne, &pe) != nil {
			continue
		}
		ev := cnEvent{What: pe.What, Time: pe.TS, Seq: cn.Seq, Ack: cn.Ack}
		var err error
		switch pe.What {
		case 0:
			err = binary.Read(r, ne, &ev.Err)
		case 1:
			var x [4]uint32
			err = binary.Read(r, ne, &x)
			ev.ParentPID, ev.ParentTGID, ev.PID, ev.TGID = x[0], x[1], x[2], x[3]
		case 2:
			var x [2]uint32
			err = binary.Read(r, ne, &x)
			ev.PID, ev.TGID = x[0], x[1]
		case 0x80000000:
			var x [4]uint32
			err = binary.Read(r, ne, &x)
			ev.PID, ev.TGID, ev.ExitCode, ev.ExitSignal = x[0], x[1], x[2], x[3]
			var p [2]uint32
			if err == nil && binary.Read(r, ne, &p) == nil {
				ev.ParentPID, ev.ParentTGID = p[0], p[1]
			}
		default:
			continue
		}
		if err != nil {
			continue
		}
		out = append(out, ev)
	}
	return out
}

func FuzzConnectorMessages(f *testing.F) {
	f.Add(cnMsg(7, 0, procEventFork, 100, 10, 10, 11, 11))
	f.Add(append(cnMsg(8, 0, procEventExec, 200, 11, 11), cnMsg(9, 0, procEventExit, 300, 11, 11, 2<<8, 17, 10, 10)...))
	f.Add(cnMsg(9, 0, procEventExit, 300, 11, 11, 9, 17))
	f.Add(cnMsg(42, 1, procEventNone, 0, 0))
	f.Add(cnMsg(1, 0, 0x200, 0, 11, 11, 0, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, want := allEvents(b), naiveEvents(b)
		if !slices.Equal(got, want) {
			t.Fatalf("nextEvent read %+v, the oracle %+v", got, want)
		}
	})
}

func TestAppendMcastOp(t *testing.T) {
	b := appendMcastOp(nil, procCnMcastListen, 5, 4)
	ne := binary.NativeEndian
	if len(b) != 40 || ne.Uint32(b) != 40 || ne.Uint16(b[4:]) != nlmsgDone || ne.Uint32(b[16:]) != cnIdxProc ||
		ne.Uint32(b[20:]) != cnValProc || ne.Uint32(b[24:]) != 5 || ne.Uint16(b[32:]) != 4 || ne.Uint32(b[36:]) != procCnMcastListen {
		t.Errorf("LISTEN message % x", b)
	}
	if b := appendMcastOp(nil, procCnMcastListen, 5, 3); len(b) != 39 || ne.Uint16(b[32:]) != 3 {
		t.Errorf("3-byte operation % x", b)
	}
}

func BenchmarkNextEvent(b *testing.B) {
	msg := cnMsg(8, 0, procEventExec, 200, 11, 11)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok, _ := nextEvent(msg); !ok {
			b.Fatal("not decoded")
		}
	}
}

// canConnect skips the test unless the process connector can be used
// here (as root, in the host's namespaces).
func canConnect(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the process connector needs CAP_NET_ADMIN; CI runs this as root")
	}
	if err := ProbeConnector(); err != nil {
		t.Skip("the process connector cannot be used here (CI runs this as root on the host): ", err)
	}
}

// A subscription the kernel does not answer (a message it ignores, as a
// kernel that cannot report to this namespace does) makes the connector
// unavailable after a second; forced, Run fails at once and says so.
func TestConnectorAckTimeout(t *testing.T) {
	canConnect(t)
	start := time.Now()
	cn, err := openConnector(connectorOptions{badListen: true})
	took := time.Since(start)
	if err == nil {
		cn.close()
		t.Fatal("subscribed without the kernel's acknowledgement")
	}
	if !errors.Is(err, ErrConnector) || !errors.Is(err, errConnectorNoAck) || took < connectorAckTimeout || took > 3*connectorAckTimeout {
		t.Errorf("openConnector = %v after %v, want no acknowledgement after %v", err, took, connectorAckTimeout)
	}

	path, _, _ := testbroker.Start(t, server.Options{})
	conn, err := client.Dial(t.Context(), path, client.Options{Name: "procmond"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pc, err := New(conn, Options{Source: SourceConnector, connector: connectorOptions{badListen: true}})
	if err != nil {
		t.Fatal(err)
	}
	err = pc.Run(t.Context())
	if !errors.Is(err, ErrSource) || !errors.Is(err, ErrConnector) || !strings.Contains(err.Error(), "--source connector") || !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
		t.Errorf("Run with --source connector and no acknowledgement = %v, want a failure that says what to do", err)
	}
}

// startCollector runs a Collector on a test broker until the test ends,
// and returns it, after its first scan, with a subscription to every
// message.
func startCollector(t *testing.T, opts Options) (*Collector, *client.Subscription) {
	t.Helper()
	dial := startBroker(t)
	all, err := dial("watch").Subscribe(t.Context(), "#", 1<<17)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := New(dial("procmond"), opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- pc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-ran:
			if err != nil {
				t.Errorf("Run = %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return within 10 s of its context's end")
		}
	})
	wait.Until(t, 10*time.Second, "the first scan", func() bool {
		select {
		case err := <-ran:
			t.Fatalf("Run = %v", err)
		default:
		}
		pc.mu.Lock()
		defer pc.mu.Unlock()
		return pc.scans > 0
	})
	return pc, all
}

// copyTrue copies /bin/true into a new private directory.
func copyTrue(t *testing.T) string {
	t.Helper()
	return testproc.CopyProgram(t, "/bin/true", filepath.Join(t.TempDir(), "dropped"), 0o755)
}

// connectorRuns is how many short processes TestConnectorSeesShortProcesses runs.
const connectorRuns = 200

// Forced --source connector: 200 sequential runs of a copy of /bin/true
// in a private directory are each published once as CREATED (with their
// path and command line when /proc could still be read, else
// accessible=false) and once as TERMINATED, and nothing more of them
// after several scans. The source shows in health and capabilities.
func TestConnectorSeesShortProcesses(t *testing.T) {
	canConnect(t)
	pc, all := startCollector(t, Options{Source: SourceConnector, Interval: 100 * time.Millisecond, HeartbeatInterval: 100 * time.Millisecond})
	if pc.source != SourceConnector {
		t.Fatalf("source %q", pc.source)
	}
	prog := copyTrue(t)
	pids := map[uint32]int{} // runs by pid: pids wrap on a busy machine
	start := time.Now()
	for range connectorRuns {
		cmd := exec.Command(prog)
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		pids[uint32(cmd.Process.Pid)]++
	}
	ran := time.Since(start)

	created, terminated := map[uint32]int{}, map[uint32]int{}
	full, beats, preExec := 0, 0, 0
	// Heartbeats come from the goroutine that scans, after its events:
	// three after the last TERMINATED mean two scans had their say.
	sum := func(m map[uint32]int) (n int) {
		for _, v := range m {
			n += v
		}
		return n
	}
	for timeout := time.After(60 * time.Second); beats < 3; {
		select {
		case m := <-all.C():
			if strings.HasPrefix(m.Topic, "control.health.heartbeat.") {
				if sum(terminated) >= connectorRuns {
					beats++
				}
				continue
			}
			e := new(eventbusv1.EventBusMessage)
			if err := proto.Unmarshal(m.Payload, e); err != nil {
				t.Fatal(err)
			}
			d := e.GetCollectionEvent().GetProcess()
			p := d.GetProcess()
			if pids[p.GetPid()] == 0 || p.GetPpid() != uint32(os.Getpid()) {
				continue // not a run (another process may have reused its pid)
			}
			switch d.GetSubtype() {
			case eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_CREATED:
				if path := p.GetExecutablePath(); path != "" && path != prog {
					// A scan read the child between its fork and its exec:
					// this test's binary. Its exec is published after.
					preExec++
					continue
				}
				created[p.GetPid()]++
				switch {
				case p.GetAccessible() && p.GetExecutablePath() != "":
					// (A scan may still publish an exiting process as
					// accessible with no image: a known gap.)
					if p.GetExecutablePath() != prog || !slices.Equal(p.GetCommandLine(), []string{prog}) {
						t.Errorf("created %v", p)
					}
					full++
				case p.GetStartTime() == nil:
					// Gone before /proc was read (or a zombie the scan
					// read first): its parent (checked above) and start
					// time still come from its fork.
					t.Errorf("created without its start time: %v", p)
				}
			case eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_TERMINATED:
				terminated[p.GetPid()]++
			}
		case <-timeout:
			overflowed(t, pc)
			t.Fatalf("within 60 s: %d of %d runs created, %d terminated, %d heartbeats after; %s",
				sum(created), connectorRuns, sum(terminated), beats, pc.sourceHealth(time.Now(), false).GetMessage())
		}
	}
	overflowed(t, pc)
	t.Logf("--source connector: %d runs in %v; created %d/%d (%d with /proc data, %d without; %d more read by a scan before their exec), terminated %d/%d",
		connectorRuns, ran.Round(time.Millisecond), sum(created), connectorRuns, full, sum(created)-full, preExec, sum(terminated), connectorRuns)
	for pid, runs := range pids {
		if created[pid] != runs || terminated[pid] != runs {
			t.Errorf("pid %d: %d runs created %d times, terminated %d times", pid, runs, created[pid], terminated[pid])
		}
	}
	if n := pc.cn.unreadable.Load(); n < uint64(connectorRuns-full) {
		t.Errorf("unreadable counter %d, want at least %d", n, connectorRuns-full)
	}
	h, err := pc.Health(t.Context(), &eventbusv1.HealthCheckRequest{IncludeMetrics: true, Components: []string{"source"}})
	if err != nil || len(h.GetComponents()) != 1 || h.GetComponents()[0].GetMetrics()["connector"] != 1 ||
		h.GetComponents()[0].GetMetrics()["connector_events"] < 3*connectorRuns || !strings.HasPrefix(h.GetComponents()[0].GetMessage(), "connector:") {
		t.Errorf("health %v, %v", h, err)
	}
	caps, _ := pc.Capabilities(t.Context(), nil)
	if !slices.Contains(caps.GetFeatures(), "process.source.connector") {
		t.Errorf("capabilities %v", caps.GetFeatures())
	}
}

// overflowed skips a test that needs every event when the connector's
// socket overflowed: other work on the machine flooded it with execs while
// the reader read /proc (counted, and tested by
// TestConnectorOverflowRescans).
func overflowed(t *testing.T, pc *Collector) {
	t.Helper()
	if n := pc.cn.enobufs.Load(); n > 0 {
		t.Skipf("the connector's socket overflowed %d times (%s): the machine runs other execs faster than the reader reads them; run this test alone",
			n, pc.sourceHealth(time.Now(), false).GetMessage())
	}
}

// A tiny receive buffer flooded with execs overflows: ENOBUFS is counted,
// health turns degraded, and the collector scans /proc at once (the
// interval here is ten minutes).
func TestConnectorOverflowRescans(t *testing.T) {
	canConnect(t)
	pc, _ := startCollector(t, Options{Source: SourceConnector, Interval: 10 * time.Minute, connector: connectorOptions{rcvBuf: 1}})
	prog := copyTrue(t)
	var wg sync.WaitGroup
	var stop atomic.Bool
	var failed atomic.Value
	for range 4 {
		wg.Go(func() {
			for !stop.Load() {
				if err := exec.Command(prog).Run(); err != nil {
					failed.Store(err)
					return
				}
			}
		})
	}
	defer func() { stop.Store(true); wg.Wait() }()
	wait.Until(t, 30*time.Second, "an overflow of the connector's socket", func() bool { return pc.cn.enobufs.Load() > 0 || failed.Load() != nil })
	if err := failed.Load(); err != nil {
		t.Fatal(err)
	}
	wait.Until(t, 10*time.Second, "a scan after the overflow", func() bool {
		pc.mu.Lock()
		defer pc.mu.Unlock()
		return pc.scans >= 2
	})
	stop.Store(true)
	wg.Wait()
	h, err := pc.Health(t.Context(), &eventbusv1.HealthCheckRequest{IncludeMetrics: true})
	if err != nil || h.GetStatus() != eventbusv1.HealthStatus_HEALTH_STATUS_DEGRADED || h.GetComponents()[2].GetMetrics()["connector_enobufs"] == 0 {
		t.Errorf("health after an overflow %v, %v", h, err)
	}
	t.Logf("%d events, %d overflows", pc.cn.events.Load(), pc.cn.enobufs.Load())
}

// The reader ends when Run's context does, and the socket is closed.
func TestConnectorStops(t *testing.T) {
	canConnect(t)
	var cn *connector
	t.Run("run", func(t *testing.T) {
		pc, _ := startCollector(t, Options{Source: SourceConnector})
		cn = pc.cn
	}) // Run has returned when the subtest's cleanups have run
	if _, err := cn.recv(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("recv after Run = %v, want closed", err)
	}
}

// An exec whose process was gone before /proc could be read is the one
// the scan read when it started at most forkSlack ticks before its fork
// event, or the scan began after the exec.
func TestScannedLocked(t *testing.T) {
	boot := time.Unix(1_000_000, 0)
	tick := uint64(time.Second / userHZ)
	const execTicks = 500
	at := boot.Add(execTicks * time.Duration(tick)) // the exec, in wall time (the offsets are 0)
	rec := func(start uint64, read time.Time) *eventbusv1.ProcessRecord {
		return &eventbusv1.ProcessRecord{Pid: 7, StartTime: timestamppb.New(boot.Add(time.Duration(start * tick))), CollectionTime: timestamppb.New(read)}
	}
	before, after := at.Add(-time.Millisecond), at.Add(time.Millisecond)
	for _, tc := range []struct {
		name      string
		scanned   *eventbusv1.ProcessRecord
		forkTicks uint64 // 0: fork not seen
		want      *Key
	}{
		{"not scanned", nil, 490, nil},
		{"scanned before the exec, started at its fork", rec(490, before), 490, &Key{7, 490}},
		{"started a tick after the fork's time", rec(491, before), 490, &Key{7, 491}},
		{"started a tick before", rec(489, before), 490, &Key{7, 489}},
		{"started 100 ms before the fork event", rec(480, before), 490, &Key{7, 480}},
		{"started 110 ms before", rec(479, before), 490, nil},
		{"an older process with the pid, scanned before", rec(100, before), 490, nil},
		{"fork not seen, scanned before", rec(490, before), 0, nil},
		{"fork not seen, scanned after the exec", rec(490, after), 0, &Key{7, 490}},
		{"scanned after the exec", rec(490, after), 490, &Key{7, 490}},
		{"a newer process with the pid", rec(execTicks+5, after), 0, nil},
		{"gone from the latest scan, created by an earlier one", nil, 490, &Key{7, 489}},
	} {
		// Boot time and CLOCK_BOOTTIME's zero coincide: ticks(ns) = ns/tick.
		c := &Collector{bootTime: boot, cn: &connector{scanCreated: map[uint32]scanCreated{}}, byPID: map[uint32]*eventbusv1.ProcessRecord{}}
		if strings.HasPrefix(tc.name, "gone") {
			c.scans = 3
			c.noteScanCreatedLocked([]Change{{Subtype: eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_CREATED, Key: Key{7, 489}}}, before)
		}
		if tc.scanned != nil {
			c.byPID[7] = tc.scanned
		}
		got := c.scannedLocked(7, Key{PID: 7, Start: tc.forkTicks}, execTicks*tick, at)
		if (got == nil) != (tc.want == nil) || (got != nil && *got != *tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
