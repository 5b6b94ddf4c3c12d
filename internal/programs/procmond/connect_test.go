package procmond

import (
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/daemoneye/daemoneye/client"
	"github.com/daemoneye/daemoneye/internal/testutil/testbroker"
	"github.com/daemoneye/daemoneye/internal/testutil/testproc"
	"github.com/daemoneye/daemoneye/server"
)

// records is a slog.Handler that sends each record's message and
// attributes on a channel, dropping what does not fit.
type records chan string

func (r records) Enabled(context.Context, slog.Level) bool { return true }
func (r records) Handle(_ context.Context, rec slog.Record) error {
	line := rec.Level.String() + " " + rec.Message
	rec.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	select {
	case r <- line:
	default:
	}
	return nil
}
func (r records) WithAttrs([]slog.Attr) slog.Handler { return r }
func (r records) WithGroup(string) slog.Handler      { return r }

// expect waits up to 15 s for a record containing want.
func (r records) expect(t *testing.T, want string) string {
	t.Helper()
	timeout := time.After(15 * time.Second)
	for {
		select {
		case l := <-r:
			if strings.Contains(l, want) {
				return l
			}
		case <-timeout:
			t.Fatalf("no log record with %q within 15 s", want)
		}
	}
}

// A collector that cannot reach the broker at start retries with backoff,
// saying why, and connects once the broker is there.
func TestConnectRetriesUntilTheBrokerIsThere(t *testing.T) {
	path := filepath.Join(t.TempDir(), "eventbus.sock")
	logs := make(records, 100)
	type result struct {
		conn *client.Conn
		err  error
	}
	done := make(chan result, 1)
	go func() {
		c, err := connect(t.Context(), path, client.Options{Name: "procmond"}, 10*time.Millisecond, 50*time.Millisecond, slog.New(logs))
		done <- result{c, err}
	}()
	logs.expect(t, "WARN procmond: cannot reach the broker; retrying")
	logs.expect(t, "attempt=2")
	testbroker.StartAt(t, path, server.Options{}, nil)
	select {
	case r := <-done:
		if r.err != nil {
			t.Fatalf("connect = %v", r.err)
		}
		defer r.conn.Close()
		if err := r.conn.Publish("events.process.x", []byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := r.conn.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("connect did not return within 15 s of the broker's start")
	}
	logs.expect(t, "procmond: connected to the broker")
}

// connect ends with its context, and at once for an address that cannot
// work.
func TestConnectEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	logs := make(records, 100)
	done := make(chan error, 1)
	go func() {
		_, err := connect(ctx, filepath.Join(t.TempDir(), "none.sock"), client.Options{}, 10*time.Millisecond, 50*time.Millisecond, slog.New(logs))
		done <- err
	}()
	logs.expect(t, "retrying")
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("connect = %v after its context ended", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("connect did not return within 15 s of its context's end")
	}
	if _, err := connect(t.Context(), "ftp://host", client.Options{}, time.Hour, time.Hour, slog.New(logs)); !errors.Is(err, client.ErrAddress) {
		t.Errorf("connect to ftp://host = %v, want client.ErrAddress at once", err)
	}
}

// procmond as a process, started before its broker: it keeps retrying
// rather than exiting, and collects once the broker listens.
func TestProcmondWaitsForTheBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("builds binaries and runs processes")
	}
	dir := t.TempDir()
	broker := testproc.Build(t, dir, "github.com/daemoneye/daemoneye/cmd/daemoneye-broker")
	bin := testproc.Build(t, dir, "github.com/daemoneye/daemoneye/cmd/procmond")
	sock := filepath.Join(dir, "run", "eventbus.sock")
	pm := exec.Command(bin, "--socket", sock, "--no-hash")
	stderr, _ := pm.StderrPipe()
	if err := pm.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pm.Process.Kill(); pm.Wait() })
	logs := testproc.Lines(stderr)
	testproc.ExpectLine(t, logs, "procmond", "cannot reach the broker; retrying")
	testproc.StartBroker(t, broker, sock)
	testproc.ExpectLine(t, logs, "procmond", "procmond: collecting")
}

// The waits between attempts double from the first wait to the bound,
// each jittered by ±50%: over two minutes of (fake) time a broker that is
// not there is tried a bounded number of times, never more than 1.5 times
// the bound apart.
func TestConnectBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "none.sock")
		logs := make(records, 1000)
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		start := time.Now()
		var times []time.Time
		h := slog.New(timestamps{logs, &times})
		if _, err := connect(ctx, path, client.Options{}, 100*time.Millisecond, 5*time.Second, h); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("connect = %v, want the context's end", err)
		}
		if elapsed := time.Since(start); elapsed != 2*time.Minute {
			t.Errorf("connect returned after %v, want 2m (its context)", elapsed)
		}
		// 100ms, 200ms ... 3.2s, then 5s: about 6 s for the first 6 and
		// 114 s / 5 s for the rest, with jitter: between 20 and 80.
		if n := len(times); n < 20 || n > 80 {
			t.Errorf("%d attempts in 2 minutes, want 20 to 80", n)
		}
		for i := 1; i < len(times); i++ {
			if gap := times[i].Sub(times[i-1]); gap > 7500*time.Millisecond || gap < 50*time.Millisecond {
				t.Errorf("attempt %d came %v after the one before: want 50ms to 7.5s", i+1, gap)
			}
		}
	})
}

// timestamps records when each retry was logged.
type timestamps struct {
	records
	at *[]time.Time
}

func (ts timestamps) Handle(ctx context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "retrying") {
		*ts.at = append(*ts.at, time.Now())
	}
	return ts.records.Handle(ctx, r)
}
