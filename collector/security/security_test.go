package security

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/collector/security/sensor"
	"github.com/daemoneye/daemoneye/envelope"
	"github.com/daemoneye/daemoneye/eventbus"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/topics"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTopicAndConvert(t *testing.T) {
	now := time.Unix(1700000000, 0)
	base := sensor.Event{Time: now, BootNS: 5, PID: 10, TID: 11, UID: 1000, EUID: 1000, CgroupID: 7, Start: 3,
		Comm: []byte("gdb"), Result: 0}
	for _, tc := range []struct {
		name  string
		set   func(e *sensor.Event)
		topic string
		prio  eventbus.Priority
		check func(d *eventbusv1.SecurityEventData) bool
	}{
		{"ptrace", func(e *sensor.Event) {
			e.Kind = sensor.KindPtrace
			e.Ptrace = sensor.Ptrace{Request: sensor.PtraceAttach, TargetPID: 42, Addr: 9}
		}, topics.SecurityPtrace, eventbus.PriorityHigh, func(d *eventbusv1.SecurityEventData) bool {
			return d.GetPtrace().GetRequest() == sensor.PtraceAttach && d.GetPtrace().GetTargetPid() == 42 && d.GetPtrace().GetAddr() == 9
		}},
		{"module", func(e *sensor.Event) {
			e.Kind = sensor.KindModule
			e.Module = sensor.Module{Syscall: sensor.SysFinitModule, Name: []byte("evil.ko")}
		}, topics.SecurityModule, eventbus.PriorityHigh, func(d *eventbusv1.SecurityEventData) bool {
			return d.GetModule().GetName() == "evil.ko" && d.GetModule().GetSyscall() == "finit_module"
		}},
		{"credentials to root", func(e *sensor.Event) {
			e.Kind = sensor.KindCredentials
			e.Creds = sensor.Creds{Syscall: sensor.SysSetuid, Old: sensor.Cred{UID: 1000, EUID: 1000}, New: sensor.Cred{CapEffective: 1}}
		}, topics.SecurityCredentials, eventbus.PriorityHigh, func(d *eventbusv1.SecurityEventData) bool {
			c := d.GetCredentials()
			return c.GetSyscall() == "setuid" && c.GetOldUid() == 1000 && c.GetNewUid() == 0 && c.GetNewCapEffective() == 1
		}},
		{"credentials dropped", func(e *sensor.Event) {
			e.Kind = sensor.KindCredentials
			e.Creds = sensor.Creds{Syscall: sensor.SysSetresuid, New: sensor.Cred{UID: 1000, EUID: 1000}}
		}, topics.SecurityCredentials, eventbus.PriorityNormal, func(d *eventbusv1.SecurityEventData) bool {
			return d.GetCredentials().GetNewEuid() == 1000
		}},
		{"memfd", func(e *sensor.Event) {
			e.Kind = sensor.KindMemfd
			e.Memfd = sensor.Memfd{Name: []byte("x"), Flags: 1}
			e.Flags = sensor.NameTruncated
		}, topics.SecurityMemfd, eventbus.PriorityNormal, func(d *eventbusv1.SecurityEventData) bool {
			return d.GetMemfd().GetName() == "x" && d.GetMemfd().GetFlags() == 1 && d.GetTruncated()
		}},
		{"bpf", func(e *sensor.Event) {
			e.Kind = sensor.KindBPF
			e.BPF = sensor.BPFLoad{ProgType: 2, Name: []byte("p")}
		}, topics.SecurityBPF, eventbus.PriorityNormal, func(d *eventbusv1.SecurityEventData) bool {
			return d.GetBpf().GetProgType() == 2 && d.GetBpf().GetName() == "p"
		}},
		{"bind over /proc/1", func(e *sensor.Event) {
			e.Kind = sensor.KindMount
			e.Mount = sensor.Mount{Syscall: sensor.SysMount, Flags: sensor.MsBind, Source: []byte("/tmp/x"), Target: []byte("/proc/1")}
			e.Flags = sensor.BindOverProcPID
		}, topics.SecurityMount, eventbus.PriorityHigh, func(d *eventbusv1.SecurityEventData) bool {
			m := d.GetMount()
			return m.GetBindOverProcPid() && m.GetSource() == "/tmp/x" && m.GetTarget() == "/proc/1" && m.GetSyscall() == "mount" && !d.GetTruncated()
		}},
		{"unshare", func(e *sensor.Event) {
			e.Kind = sensor.KindNamespace
			e.Namespace = sensor.Namespace{Syscall: sensor.SysUnshare, FD: -1, Flags: unix.CLONE_NEWNS}
		}, topics.SecurityNamespace, eventbus.PriorityNormal, func(d *eventbusv1.SecurityEventData) bool {
			return d.GetNamespace().GetSyscall() == "unshare" && d.GetNamespace().GetFd() == -1 && d.GetNamespace().GetFlags() == unix.CLONE_NEWNS
		}},
		{"procmem", func(e *sensor.Event) {
			e.Kind = sensor.KindProcMem
			e.ProcMem = sensor.ProcMem{Syscall: sensor.SysPwrite64, TargetPID: 42, OpenFlags: unix.O_RDWR, Count: 8, Pos: 0x1000}
		}, topics.SecurityProcMem, eventbus.PriorityHigh, func(d *eventbusv1.SecurityEventData) bool {
			p := d.GetProcMem()
			return p.GetTargetPid() == 42 && p.GetOpenFlags() == unix.O_RDWR && p.GetSyscall() == "pwrite64" && p.GetCount() == 8 && p.GetPos() == 0x1000
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := base
			tc.set(&e)
			topic, prio := Topic(&e)
			if topic != tc.topic || prio != tc.prio {
				t.Errorf("Topic: %s %v, want %s %v", topic, prio, tc.topic, tc.prio)
			}
			d := Convert(&e, "/usr/bin/gdb")
			if d.GetKind() != eventbusv1.SecurityEventKind(e.Kind) || d.GetPid() != 10 || d.GetTid() != 11 || d.GetUid() != 1000 ||
				d.GetComm() != "gdb" || d.GetExecutablePath() != "/usr/bin/gdb" || d.GetCgroupId() != 7 || d.GetKernelTimeNs() != 5 ||
				d.GetProcessStartNs() != 3 || !d.GetTime().AsTime().Equal(now) || !tc.check(d) {
				t.Errorf("Convert: %v", d)
			}
		})
	}
}

// TestRunPublishes: a real memfd_create reaches publish as an envelope on
// events.process.anomaly.memfd with this process's executable.
func TestRunPublishes(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the eBPF security sensor needs root: run go test as root to test it")
	}
	r, err := Open(Options{SourceID: "procmond"})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	found := make(chan *eventbusv1.EventBusMessage, 1)
	var once sync.Once
	done := make(chan error, 1)
	go func() {
		done <- r.Run(ctx, func(m *client.Msg) error {
			msg, _ := envelope.FromValue(m.Value)
			if m.Topic == topics.SecurityMemfd && msg.GetCollectionEvent().GetSecurity().GetMemfd().GetName() == "de-runner-test" {
				once.Do(func() { found <- msg; cancel() })
			}
			return nil
		})
	}()
	fd, err := unix.MemfdCreate("de-runner-test", 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	var msg *eventbusv1.EventBusMessage
	select {
	case msg = <-found:
	case <-ctx.Done():
	}
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if msg == nil {
		t.Fatal("no memfd envelope published")
	}
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	d := msg.GetCollectionEvent().GetSecurity()
	if d.GetPid() != uint32(os.Getpid()) || d.GetExecutablePath() != exe || msg.GetMetadata().GetSourceId() != "procmond" ||
		msg.GetMetadata().GetTopic() != topics.SecurityMemfd {
		t.Errorf("envelope: %v (exe %q)", msg, exe)
	}
	if err := envelope.Validate(msg); err != nil {
		t.Errorf("Validate: %v", err)
	}
	st := r.Stats()
	if st.Published == 0 || st.Sensor.Events == 0 || st.Sensor.Lost != 0 {
		t.Errorf("Stats: %+v", st)
	}
	h := r.Health(time.Now(), true)
	if h.GetName() != "security" || h.GetStatus() != eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY || h.GetMetrics()["lost_memfd"] != 0 {
		t.Errorf("Health: %v", h)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Run(context.Background(), nil); !errors.Is(err, sensor.ErrClosed) {
		t.Errorf("Run after Close: %v", err)
	}
}

// TestExeCache: a process's path is read once per (pid, start), and a
// gone process has none.
func TestExeCache(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "7"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("/bin/first", filepath.Join(dir, "7", "exe")); err != nil {
		t.Fatal(err)
	}
	r := &Runner{opts: Options{ProcRoot: dir}, exe: make(map[procKey]string)}
	if p := r.exePath(7, 1); p != "/bin/first" {
		t.Fatalf("exePath: %q", p)
	}
	os.Remove(filepath.Join(dir, "7", "exe"))
	os.Symlink("/bin/second", filepath.Join(dir, "7", "exe"))
	if p := r.exePath(7, 1); p != "/bin/first" {
		t.Errorf("cached: %q", p)
	}
	if p := r.exePath(7, 2); p != "/bin/second" {
		t.Errorf("reused pid: %q", p)
	}
	if p := r.exePath(8, 1); p != "" {
		t.Errorf("gone: %q", p)
	}
}
