package cli

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
	"github.com/daemoneye/daemoneye/server"
)

// syncBuffer is a bytes.Buffer safe for a command and a test at once;
// gate, if not nil, holds up writes until it is closed.
type syncBuffer struct {
	mu   sync.Mutex
	b    bytes.Buffer
	gate chan struct{}
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	if s.gate != nil {
		<-s.gate
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startSub runs 'daemoneye-cli sub' with args against the socket, and
// waits until it has subscribed. wait returns its exit code, waiting at
// most a minute before interrupting it; stop interrupts it at once.
func startSub(t *testing.T, path string, stdout *syncBuffer, args ...string) (stderr *syncBuffer, waitExit, stop func() int) {
	t.Helper()
	stderr = &syncBuffer{}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan int, 1)
	go func() { done <- Main(ctx, append([]string{"--socket", path, "sub"}, args...), stdout, stderr) }()
	exit := sync.OnceValue(func() int { return <-done })
	t.Cleanup(func() { cancel(); exit() })
	exited := make(chan struct{})
	go func() { exit(); close(exited) }()
	wait.For(t, 30*time.Second, "sub to subscribe", func() error {
		select {
		case <-exited:
			t.Fatalf("sub exited with %d: %s", exit(), stderr)
		default:
		}
		if !strings.Contains(stderr.String(), "subscribed to") {
			return fmt.Errorf("stderr %q", stderr)
		}
		return nil
	})
	waitExit = func() int {
		timer := time.AfterFunc(time.Minute, cancel)
		defer timer.Stop()
		return exit()
	}
	stop = func() int { cancel(); return exit() }
	return stderr, waitExit, stop
}

func publishN(t *testing.T, path, name string, n int) {
	t.Helper()
	pub, err := client.Dial(t.Context(), path, client.Options{Name: "pub"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	for i := range n {
		if err := pub.Publish(name, []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
}

// sub keeps up with a flood: it prints every message.
func TestSubPrintsEveryMessage(t *testing.T) {
	path, _, _ := testbroker.Start(t, server.Options{})
	stdout := &syncBuffer{}
	stderr, wait, _ := startSub(t, path, stdout, "--count", "200000", "events.bulk.#")
	publishN(t, path, "events.bulk.flood", 200000)
	code := wait()
	lines := strings.Count(stdout.String(), "\n")
	if code != 0 || lines != 200000 || strings.Contains(stderr.String(), "missed") {
		t.Errorf("exit %d, printed %d of 200000; stderr: %s", code, lines, stderr)
	}
}

// When sub falls so far behind that the broker drops messages for it, it
// says how many it missed, and exits with status 1: every message is
// printed or counted.
func TestSubReportsMissed(t *testing.T) {
	path, _, b := testbroker.Start(t, server.Options{MaxPending: 16 << 10})
	stdout := &syncBuffer{gate: make(chan struct{})}
	stderr, _, stop := startSub(t, path, stdout, "events.bulk.#")
	const n = 200000
	published := make(chan struct{})
	go func() { defer close(published); publishN(t, path, "events.bulk.flood", n) }()
	// sub cannot print until the broker has dropped some.
	wait.Until(t, time.Minute, "the broker to drop messages for sub", func() bool { return b.Stats().Dropped.Total() > 0 })
	close(stdout.gate)
	<-published
	// Markers until one is printed: all before it have been printed or
	// skipped.
	pub, err := client.Dial(t.Context(), path, client.Options{Name: "marker"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	markers := 0
	wait.For(t, time.Minute, "a marker printed", func() error {
		if strings.Contains(stdout.String(), "marker") {
			return nil
		}
		markers++
		pub.Publish("events.bulk.flood", fmt.Appendf(nil, "marker %d", markers))
		pub.Flush(t.Context())
		return fmt.Errorf("%d markers published, none printed; stderr: %s", markers, stderr)
	})
	// Interrupted now, sub reports what it missed: every message up to
	// the last it printed was printed or counted as missed.
	code := stop()
	lines, last := 0, uint64(0)
	for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var seq uint64
		if _, err := fmt.Sscanf(l, "[#%d]", &seq); err != nil {
			t.Fatalf("line %q: %v", l, err)
		}
		lines++
		last = max(last, seq)
	}
	var missed uint64
	if m := regexp.MustCompile(`missed (?:at least )?(\d+) \(`).FindStringSubmatch(stderr.String()); m != nil {
		missed, _ = strconv.ParseUint(m[1], 10, 64)
	}
	if code != 1 || missed == 0 || uint64(lines)+missed != last || last <= n {
		t.Errorf("exit %d, printed %d + missed %d, want the last printed, %d (> %d); the broker dropped %d; stderr: %s",
			code, lines, missed, last, n, b.Stats().Dropped.Total(), stderr)
	}
}
