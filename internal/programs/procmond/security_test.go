package procmond

import (
	"os"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/client"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/topics"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

// With --source ebpf, procmond runs the security sensor too: a
// memfd_create by this test reaches the bus on
// events.process.anomaly.memfd with its pid and executable.
func TestSecurityEventsPublished(t *testing.T) {
	events := startEBPF(t, topics.AllSecurity)
	fd, err := unix.MemfdCreate("procmond-security-test", 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	timeout := time.After(10 * time.Second)
	for {
		var m client.Msg
		select {
		case m = <-events.C():
		case <-timeout:
			t.Fatal("no memfd event from procmond within 10 s")
		}
		msg := new(eventbusv1.EventBusMessage)
		if err := proto.Unmarshal(m.Payload, msg); err != nil {
			t.Fatal(err)
		}
		d := msg.GetCollectionEvent().GetSecurity()
		if d.GetMemfd().GetName() != "procmond-security-test" {
			continue
		}
		exe, _ := os.Readlink("/proc/self/exe")
		if m.Topic != topics.SecurityMemfd || d.GetKind() != eventbusv1.SecurityEventKind_SECURITY_EVENT_KIND_MEMFD ||
			d.GetPid() != uint32(os.Getpid()) || d.GetExecutablePath() != exe || msg.GetMetadata().GetSourceId() != "procmond" {
			t.Errorf("on %s: %v (exe %q)", m.Topic, msg, exe)
		}
		return
	}
}
