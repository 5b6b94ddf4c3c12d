package netmond

import (
	"context"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/collector/network"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/server"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// netmond (Main) on a real broker publishes a TCP connect of this process
// to a listener on 127.0.0.1 as an envelope on
// events.network.connections.opened, with the process context, and stops
// with exit code 0 when its context ends.
func TestMainPublishesConnect(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("netmond's eBPF sensor needs root: run go test as root to test it")
	}
	sock, _, _ := testbroker.Start(t, server.Options{})
	watch, err := client.Dial(t.Context(), sock, client.Options{Name: "watch"})
	if err != nil {
		t.Fatal(err)
	}
	defer watch.Close()
	sub, err := watch.Subscribe(t.Context(), "events.network.connections.+", 1<<12)
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	ctx, cancel := context.WithCancel(t.Context())
	code := make(chan int, 1)
	go func() { code <- Main(ctx, []string{"--socket", sock, "--heartbeat", "200ms"}, &stderr) }()
	defer func() {
		cancel()
		if c := <-code; c != 0 {
			t.Errorf("netmond exited with %d:\n%s", c, stderr.String())
		}
	}()

	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := uint32(l.Addr().(*net.TCPAddr).Port)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	// netmond attaches some time after it starts: connect every 100 ms
	// until an envelope of ours arrives.
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(15 * time.Second)
	exe, _ := os.Executable()
	for {
		select {
		case <-tick.C:
			if c, err := net.Dial("tcp4", l.Addr().String()); err == nil {
				c.Close()
			}
			continue
		case m := <-sub.C():
			var e eventbusv1.EventBusMessage
			if err := proto.Unmarshal(m.Payload, &e); err != nil {
				t.Fatal(err)
			}
			n := e.GetCollectionEvent().GetNetwork()
			r := n.GetNetwork()
			if m.Topic != network.TopicOpened || r.GetRemotePort() != port || r.GetPid() != uint32(os.Getpid()) {
				continue
			}
			if r.GetProtocol() != eventbusv1.NetworkProtocol_NETWORK_PROTOCOL_TCP || r.GetRemoteAddress() != "127.0.0.1" ||
				r.GetLocalAddress() != "127.0.0.1" || r.GetLocalPort() == 0 || r.GetState() != eventbusv1.ConnectionState_CONNECTION_STATE_ESTABLISHED ||
				r.GetExecutablePath() != exe || r.GetIpVersion() != 4 || r.GetCgroupId() == 0 || r.GetUid() != uint32(os.Getuid()) ||
				r.GetProcessName() == "" || !r.GetCollectionTime().IsValid() || !r.GetProcessStartTime().IsValid() ||
				n.GetSubtype() != eventbusv1.NetworkEventSubtype_NETWORK_EVENT_SUBTYPE_CONNECTION_OPENED || n.GetConnectionMetadata().GetInbound() ||
				e.GetMetadata().GetSourceId() != "netmond" {
				t.Errorf("envelope on %s: %v", m.Topic, &e)
			}
			return
		case <-timeout:
			t.Fatalf("no connect envelope within 15 s; netmond said:\n%s", stderr.String())
		}
	}
}

// Flag errors exit with 2, as procmond's.
func TestMainUsage(t *testing.T) {
	var stderr lockedBuffer
	if c := Main(t.Context(), []string{"--nope"}, &stderr); c != 2 {
		t.Errorf("exit %d: %s", c, stderr.String())
	}
	if c := Main(t.Context(), []string{"extra"}, &stderr); c != 2 {
		t.Errorf("exit %d: %s", c, stderr.String())
	}
}
