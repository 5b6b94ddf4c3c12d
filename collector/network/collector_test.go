package network

import (
	"net/netip"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/collector/network/sensor"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestContainerID(t *testing.T) {
	id := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, c := range []struct{ name, cgroup, want string }{
		{"docker scope", "0::/system.slice/docker-" + id + ".scope\n", id},
		{"cgroup v1 docker", "12:cpu:/docker/" + id + "\n", id},
		{"containerd", "0::/kubepods/pod1/cri-containerd-" + id + ".scope\n", id},
		{"host", "0::/user.slice/user-0.slice/session-1.scope\n", ""},
		{"65 digits", "0::/x-" + id + "0\n", ""},
		{"upper case is not an id", "0::/x-0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef\n", ""},
	} {
		if got := containerID([]byte(c.cgroup)); got != c.want {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}

var hex64 = regexp.MustCompile(`(^|[^0-9a-f])([0-9a-f]{64})([^0-9a-f]|$)`)

// FuzzContainerID checks containerID against a regular expression.
func FuzzContainerID(f *testing.F) {
	f.Add([]byte("0::/docker-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.scope"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, b []byte) {
		want := ""
		if m := hex64.FindSubmatch(b); m != nil {
			want = string(m[2])
		}
		if got := containerID(b); got != want {
			t.Fatalf("containerID(%q) = %q, oracle %q", b, got, want)
		}
	})
}

func event() sensor.Event {
	return sensor.Event{Kind: sensor.KindConnect, Time: time.Now(), PID: uint32(os.Getpid()), UID: 0, Start: time.Second,
		CgroupID: 7, Family: sensor.FamilyIPv4, Protocol: sensor.ProtocolTCP,
		Local: netip.MustParseAddrPort("127.0.0.1:40000"), Remote: netip.MustParseAddrPort("127.0.0.1:443")}
}

// Each kind becomes its topic, state, subtype and direction; the process
// context comes from /proc.
func TestEnvelope(t *testing.T) {
	c, err := New(nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	for _, tc := range []struct {
		kind    sensor.Kind
		result  int32
		topic   string
		state   eventbusv1.ConnectionState
		subtype eventbusv1.NetworkEventSubtype
		inbound bool
	}{
		{sensor.KindConnect, 0, TopicOpened, eventbusv1.ConnectionState_CONNECTION_STATE_ESTABLISHED, eventbusv1.NetworkEventSubtype_NETWORK_EVENT_SUBTYPE_CONNECTION_OPENED, false},
		{sensor.KindConnect, -111, TopicOpened, eventbusv1.ConnectionState_CONNECTION_STATE_CLOSED, eventbusv1.NetworkEventSubtype_NETWORK_EVENT_SUBTYPE_STATE_CHANGED, false},
		{sensor.KindAccept, 0, TopicAccepted, eventbusv1.ConnectionState_CONNECTION_STATE_ESTABLISHED, eventbusv1.NetworkEventSubtype_NETWORK_EVENT_SUBTYPE_CONNECTION_OPENED, true},
		{sensor.KindListen, 0, TopicListening, eventbusv1.ConnectionState_CONNECTION_STATE_LISTEN, eventbusv1.NetworkEventSubtype_NETWORK_EVENT_SUBTYPE_LISTEN_STARTED, false},
		{sensor.KindUDPSend, 1, TopicUDP, eventbusv1.ConnectionState_CONNECTION_STATE_UNSPECIFIED, eventbusv1.NetworkEventSubtype_NETWORK_EVENT_SUBTYPE_CONNECTION_OPENED, false},
	} {
		e := event()
		e.Kind, e.Result = tc.kind, tc.result
		topic, msg := c.envelope(&e)
		n := msg.GetCollectionEvent().GetNetwork()
		r := n.GetNetwork()
		if topic != tc.topic || msg.GetMetadata().GetTopic() != tc.topic || r.GetState() != tc.state || n.GetSubtype() != tc.subtype ||
			n.GetConnectionMetadata().GetInbound() != tc.inbound || r.GetExecutablePath() != exe || r.GetLocalPort() != 40000 ||
			r.GetCgroupId() != 7 || r.GetIpVersion() != 4 || r.GetProcessName() == "" {
			t.Errorf("%v result %d: topic %s, %v", tc.kind, tc.result, topic, msg)
		}
		if (tc.kind == sensor.KindListen) != (r.GetRemoteAddress() == "") {
			t.Errorf("%v: remote address %q", tc.kind, r.GetRemoteAddress())
		}
	}
	if c.procs.misses != 1 {
		t.Errorf("/proc read %d times for one process, want 1", c.procs.misses)
	}
}

// BenchmarkEnvelope: the event-to-envelope path for a cached process.
func BenchmarkEnvelope(b *testing.B) {
	c, err := New(nil, Options{})
	if err != nil {
		b.Fatal(err)
	}
	e := event()
	c.envelope(&e)
	b.ReportAllocs()
	for b.Loop() {
		c.envelope(&e)
	}
}
