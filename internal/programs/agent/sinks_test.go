package agent

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func testAlert(rule string) *eventbusv1.Alert {
	return &eventbusv1.Alert{AlertId: "a-" + rule, RuleId: rule, Title: "T", Severity: eventbusv1.AlertSeverity_ALERT_SEVERITY_HIGH,
		Process: &eventbusv1.ProcessRecord{Pid: 42, ExecutablePath: "/tmp/x"}, Timestamp: timestamppb.Now()}
}

// The webhook is retried until it answers 2xx.
func TestWebhookRetries(t *testing.T) {
	var calls atomic.Int32
	var got []byte
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		got, _ = io.ReadAll(r.Body)
	}))
	defer srv.Close()
	s := &webhookSink{url: srv.URL, client: srv.Client(), retries: 3, backoff: time.Millisecond}
	if err := s.send(t.Context(), testAlert("r1")); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if calls.Load() != 3 || json.Unmarshal(got, &m) != nil || m["rule_id"] != "r1" {
		t.Errorf("%d calls, body %s", calls.Load(), got)
	}
	s.retries = 1
	calls.Store(-10)
	if err := s.send(t.Context(), testAlert("r2")); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("a webhook that keeps failing: %v", err)
	}
}

// blockingSink never finishes until released.
type blockingSink struct {
	release chan struct{}
	n       atomic.Int32
}

func (b *blockingSink) name() string { return "blocking" }
func (b *blockingSink) send(ctx context.Context, _ *eventbusv1.Alert) error {
	b.n.Add(1)
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return nil
}

// A stuck sink neither blocks dispatch nor the other sinks; what does not
// fit its queue is counted.
func TestStuckSinkBlocksNothing(t *testing.T) {
	dir := t.TempDir()
	file, closer, err := openFileSink(filepath.Join(dir, "alerts.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer closer.Close()
	stuck := &blockingSink{release: make(chan struct{})}
	d := newDispatcher(t.Context(), []sink{stuck, file}, slog.New(slog.DiscardHandler))
	const n = sinkQueueLen + 100
	done := make(chan struct{})
	go func() {
		for range n {
			d.dispatch(testAlert("r"))
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("dispatch blocked behind a stuck sink")
	}
	// The file sink goes on while the other is stuck.
	wait.For(t, 10*time.Second, "the file sink to take every alert while the other is stuck", func() error {
		if st := d.stats()[1]; st.Sent+st.Dropped+st.Failed != n {
			return fmt.Errorf("file sink %+v", st)
		}
		return nil
	})
	close(stuck.release)
	d.close()
	st := d.stats()
	if st[0].Dropped == 0 || st[0].Sent+st[0].Dropped != n {
		t.Errorf("stuck sink: %+v, want drops counted and nothing lost silently", st[0])
	}
	f, _ := os.Open(filepath.Join(dir, "alerts.jsonl"))
	defer f.Close()
	lines := 0
	for sc := bufio.NewScanner(f); sc.Scan(); lines++ {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil || m["rule_id"] != "r" {
			t.Fatalf("line %d: %s", lines+1, sc.Bytes())
		}
	}
	if want := int(d.stats()[1].Sent); lines != want || lines == 0 {
		t.Errorf("%d lines in the file, want %d (the alerts it took)", lines, want)
	}
}

// The configuration file is strict, and flags override it.
func TestMainConfig(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("sokcet: /tmp/x\n"), 0o600)
	var stderr strings.Builder
	if code := Main(t.Context(), []string{"--config", bad}, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "sokcet") {
		t.Errorf("unknown key: exit %d, %q", code, stderr.String())
	}
	rules := filepath.Join(dir, "rules.yaml")
	os.WriteFile(rules, []byte("rules:\n  - {id: broken, title: B, severity: low, expression: 'process.nmae == 1'}\n"), 0o600)
	stderr.Reset()
	if code := Main(t.Context(), []string{"--rules", rules}, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), `rule "broken"`) {
		t.Errorf("invalid rule: exit %d, %q", code, stderr.String())
	}
	stderr.Reset()
	if code := Main(t.Context(), []string{"--alerts", "loud"}, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "text, json or off") {
		t.Errorf("bad --alerts: exit %d, %q", code, stderr.String())
	}
	stderr.Reset()
	if code := Main(t.Context(), []string{"collector", "nosuchmond"}, io.Discard, &stderr); code != 2 {
		t.Errorf("unknown collector kind: exit %d, %q", code, stderr.String())
	}
}
