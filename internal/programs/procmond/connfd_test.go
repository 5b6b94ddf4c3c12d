package procmond

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
	"github.com/daemoneye/daemoneye/server"
)

// lockedBuffer is a strings.Builder safe for the logger and the test.
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

// With --conn-fd, procmond uses the connection it inherited, as the
// identity the broker gave it; when that connection breaks it cannot
// dial it again, so it exits with an error and leaves the restart to the
// agent.
func TestConnFDExitsWhenTheConnectionBreaks(t *testing.T) {
	_, srv, _ := testbroker.Start(t, server.Options{})
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	f := os.NewFile(uintptr(fds[0]), "broker-end")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.ServeConn(nc, "collector:procmond"); err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	code := make(chan int, 1)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		code <- Main(ctx, []string{"--conn-fd", strconv.Itoa(fds[1]), "--interval", "100ms", "--no-hash"}, &stderr)
	}()
	wait.For(t, 15*time.Second, "procmond to start collecting", func() error {
		if !strings.Contains(stderr.String(), "identity=collector:procmond") {
			return fmt.Errorf("stderr:\n%s", stderr.String())
		}
		return nil
	})
	srv.Close()
	select {
	case c := <-code:
		if c != 1 || !strings.Contains(stderr.String(), "lost the connection the agent handed over") {
			t.Errorf("exit %d, stderr:\n%s", c, stderr.String())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("procmond still running 15 s after its connection broke:\n%s", stderr.String())
	}
}

// --conn-fd excludes the ways of dialling.
func TestConnFDExcludesDialling(t *testing.T) {
	var stderr lockedBuffer
	if c := Main(t.Context(), []string{"--conn-fd", "3", "--socket", "/nonexistent"}, &stderr); c != 2 || !strings.Contains(stderr.String(), "excludes") {
		t.Errorf("exit %d: %s", c, stderr.String())
	}
}
