//go:build linux

package filesystem

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/collector"
	"github.com/daemoneye/daemoneye/collector/filesystem/sensor"
	"github.com/daemoneye/daemoneye/envelope"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/rpc"
	"github.com/daemoneye/daemoneye/server"
	"github.com/daemoneye/daemoneye/topic"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestTopics(t *testing.T) {
	for op := sensor.OpOpenWrite; op <= sensor.OpRead; op++ {
		if err := topic.Validate(Topic(op)); err != nil {
			t.Errorf("%v: %v", op, err)
		}
		if opOperations[op] == 0 || opSubtypes[op] == 0 {
			t.Errorf("%v has no operation or subtype", op)
		}
	}
	if Topic(sensor.OpRead) != "events.filesystem.access.read" || Topic(sensor.OpCreate) != "events.filesystem.operations.create" ||
		Topic(0) != "" || Topic(200) != "" {
		t.Errorf("topics %q %q", Topic(sensor.OpRead), Topic(sensor.OpCreate))
	}
}

func event(op sensor.Op) *sensor.Event {
	return &sensor.Event{Op: op, PID: 42, PPID: 1, UID: 1000, EUID: 0, Start: 5 * time.Second, Comm: []byte("bash"),
		Exe: []byte("/usr/bin/bash"), Path: []byte("/etc/cron.d/job"), Dev: 8<<20 | 1, Ino: 77, Mode: 0o100644, Size: 9,
		OwnerUID: 0, OwnerGID: 0}
}

func TestConvert(t *testing.T) {
	var c converter
	c.init()
	for _, tc := range []struct {
		name  string
		e     *sensor.Event
		check func(*eventbusv1.FilesystemEventData) bool
	}{
		{"create", event(sensor.OpCreate), func(d *eventbusv1.FilesystemEventData) bool {
			r, m := d.GetFilesystem(), d.GetFileMetadata()
			return d.GetSubtype() == eventbusv1.FilesystemEventSubtype_FILESYSTEM_EVENT_SUBTYPE_CREATED &&
				r.GetOperation() == eventbusv1.FileOperation_FILE_OPERATION_CREATE && r.GetPath() == "/etc/cron.d/job" &&
				r.GetPid() == 42 && r.GetPpid() == 1 && r.GetExecutablePath() == "/usr/bin/bash" && r.GetProcessName() == "bash" &&
				r.GetUid() == 1000 && r.GetProcessStartTime().AsTime().Equal(c.bootTime.Add(5*time.Second)) &&
				m.GetFileType() == eventbusv1.FileType_FILE_TYPE_REGULAR && m.GetMode() == 0o644 && m.GetInode() == 77 && m.GetSizeBytes() == 9
		}},
		{"chmod setuid", func() *sensor.Event { e := event(sensor.OpChmod); e.NewMode = 0o4755; return e }(),
			func(d *eventbusv1.FilesystemEventData) bool {
				r := d.GetFilesystem()
				return r.GetNewMode() == 0o4755 && r.GetSetuidSet() && !r.GetSetgidSet() &&
					d.GetSubtype() == eventbusv1.FilesystemEventSubtype_FILESYSTEM_EVENT_SUBTYPE_ATTRIBUTES_CHANGED
			}},
		{"chown", func() *sensor.Event { e := event(sensor.OpChown); e.NewUID, e.NewGID = 0, sensor.Unchanged; return e }(),
			func(d *eventbusv1.FilesystemEventData) bool {
				return d.GetFilesystem().GetNewUid() == 0 && d.GetFilesystem().GetNewGid() == sensor.Unchanged
			}},
		{"rename by path", func() *sensor.Event {
			e := event(sensor.OpRename)
			e.OldPath, e.Ino = []byte("/tmp/x"), 0
			return e
		}(), func(d *eventbusv1.FilesystemEventData) bool {
			return d.GetFilesystem().GetOldPath() == "/tmp/x" && d.GetFileMetadata() == nil &&
				d.GetSubtype() == eventbusv1.FilesystemEventSubtype_FILESYSTEM_EVENT_SUBTYPE_RENAMED
		}},
		{"symlink", func() *sensor.Event { e := event(sensor.OpSymlink); e.Target = []byte("/bin/sh"); return e }(),
			func(d *eventbusv1.FilesystemEventData) bool { return d.GetFilesystem().GetLinkTarget() == "/bin/sh" }},
		{"read", event(sensor.OpRead), func(d *eventbusv1.FilesystemEventData) bool {
			return d.GetSubtype() == eventbusv1.FilesystemEventSubtype_FILESYSTEM_EVENT_SUBTYPE_ACCESSED &&
				d.GetFilesystem().GetOperation() == eventbusv1.FileOperation_FILE_OPERATION_READ
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			topic, d := c.convert(tc.e)
			if topic != Topic(tc.e.Op) || !tc.check(d) {
				t.Errorf("%s: %v", topic, d)
			}
		})
	}
	// The process's strings are shared by its events, and renewed after
	// an exec.
	_, a := c.convert(event(sensor.OpCreate))
	_, b := c.convert(event(sensor.OpUnlink))
	if a.GetFilesystem().GetProcessStartTime() != b.GetFilesystem().GetProcessStartTime() {
		t.Error("the process was not cached")
	}
	e := event(sensor.OpUnlink)
	e.Exe = []byte("/usr/bin/python3")
	if _, d := c.convert(e); d.GetFilesystem().GetExecutablePath() != "/usr/bin/python3" {
		t.Errorf("after an exec: %q", d.GetFilesystem().GetExecutablePath())
	}
}

// BenchmarkConvert is the event -> envelope data path of one event of a
// cached process: its allocations are the path string and the protobuf
// messages the bus keeps.
func BenchmarkConvert(b *testing.B) {
	var c converter
	c.init()
	e := event(sensor.OpCreate)
	b.ReportAllocs()
	for b.Loop() {
		_, d := c.convert(e)
		if d == nil {
			b.Fatal("nil")
		}
	}
}

// fsmond over the bus: a file written in a watched directory becomes an
// event on events.filesystem.operations.create with the writer's context;
// health reports the sensor; a shutdown over RPC ends Run.
func TestCollectorOverTheBus(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("fsmond's sensor needs root: run go test as root to test it")
	}
	path, _, _ := testbroker.Start(t, server.Options{})
	dial := func(name string) *client.Conn {
		c, err := client.Dial(t.Context(), path, client.Options{Name: name})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	watch := dial("watch")
	events, err := watch.Subscribe(t.Context(), "events.filesystem.#", 1<<16)
	if err != nil {
		t.Fatal(err)
	}
	fc, err := New(dial("fsmond"), Options{SoftwareVersion: "test", Watches: []sensor.Watch{{Path: dir, Flags: sensor.WatchWrites}}})
	if err != nil {
		t.Fatal(err)
	}
	ran := make(chan error, 1)
	go func() { ran <- fc.Run(context.Background()) }()
	cc := collector.NewClient(rpc.NewClient(dial("agent"), rpc.ClientOptions{}))
	defer func() {
		if _, err := cc.GracefulShutdown(t.Context(), "fsmond", &eventbusv1.ShutdownRequest{}); err != nil {
			t.Error(err)
		}
		select {
		case err := <-ran:
			if err != ErrShutdown {
				t.Errorf("Run: %v, want ErrShutdown", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not return")
		}
	}()

	// Health answers once Run serves; the sensor is open by then.
	var h *eventbusv1.HealthCheckResponse
	for deadline := time.Now().Add(10 * time.Second); ; {
		if h, err = cc.Health(t.Context(), "fsmond", &eventbusv1.HealthCheckRequest{IncludeMetrics: true}); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
	}
	if h.GetStatus() != eventbusv1.HealthStatus_HEALTH_STATUS_HEALTHY || len(h.GetComponents()) != 2 {
		t.Errorf("health %v", h)
	}
	if err := os.WriteFile(dir+"/job", []byte("* * * * * root sh\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(dir+"/job", 0o4755); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	exe, _ = filepath.EvalSymlinks(exe)
	want := map[string]bool{"events.filesystem.operations.create": true, "events.filesystem.operations.chmod": true}
	for timeout := time.After(10 * time.Second); len(want) > 0; {
		select {
		case m := <-events.C():
			e := new(eventbusv1.EventBusMessage)
			if err := proto.Unmarshal(m.Payload, e); err != nil {
				t.Fatal(err)
			}
			if err := envelope.Validate(e); err != nil {
				t.Fatal(err)
			}
			d := e.GetCollectionEvent().GetFilesystem()
			r := d.GetFilesystem()
			if r.GetPath() != dir+"/job" {
				continue
			}
			if r.GetPid() != uint32(os.Getpid()) || r.GetExecutablePath() != exe || e.GetMetadata().GetSourceId() != "fsmond" ||
				r.GetCollectionTime() == nil || (m.Topic == "events.filesystem.operations.chmod" && !r.GetSetuidSet()) {
				t.Errorf("%s: %v", m.Topic, d)
			}
			delete(want, m.Topic)
		case <-timeout:
			t.Fatalf("events not seen within 10 s: %v", want)
		}
	}
	caps, err := cc.Capabilities(t.Context(), "fsmond", &eventbusv1.GetCapabilitiesRequest{})
	if err != nil || len(caps.GetPublishedTopics()) != 3 {
		t.Errorf("capabilities %v, %v", caps, err)
	}
}
