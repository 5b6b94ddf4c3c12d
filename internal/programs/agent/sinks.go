package agent

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"log/syslog"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/programs/agentapi"
	"google.golang.org/protobuf/encoding/protojson"
)

// A sink delivers alerts somewhere. Send may block (a slow webhook); the
// dispatcher gives each sink its own goroutine and queue, so a failing or
// slow sink delays neither detection nor the other sinks.
type sink interface {
	name() string
	send(ctx context.Context, a *eventbusv1.Alert) error
}

// alertJSON is an alert as one line of JSON (protobuf JSON).
func alertJSON(a *eventbusv1.Alert) ([]byte, error) {
	return protojson.MarshalOptions{UseProtoNames: true}.Marshal(a)
}

// writerSink writes alerts to a stream, one line each.
type writerSink struct {
	label string
	mu    sync.Mutex
	w     io.Writer
	json  bool
}

func (s *writerSink) name() string { return s.label }

func (s *writerSink) send(_ context.Context, a *eventbusv1.Alert) error {
	var line []byte
	if s.json {
		b, err := alertJSON(a)
		if err != nil {
			return err
		}
		line = append(b, '\n')
	} else {
		line = []byte(agentapi.FormatAlert(a) + "\n")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, err := s.w.Write(line)
	return err
}

// openFileSink appends JSON lines to path (created 0600).
func openFileSink(path string) (*writerSink, io.Closer, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("alert file: %w", err)
	}
	return &writerSink{label: "file " + path, w: f, json: true}, f, nil
}

// syslogSink sends alerts to the local syslog daemon, facility auth, at
// the alert's severity.
type syslogSink struct{ w *syslog.Writer }

func openSyslogSink() (*syslogSink, io.Closer, error) {
	w, err := syslog.New(syslog.LOG_AUTH|syslog.LOG_WARNING, "daemoneye")
	if err != nil {
		return nil, nil, fmt.Errorf("syslog: %w (is a syslog daemon running?)", err)
	}
	return &syslogSink{w: w}, w, nil
}

func (s *syslogSink) name() string { return "syslog" }

func (s *syslogSink) send(_ context.Context, a *eventbusv1.Alert) error {
	msg := agentapi.FormatAlert(a)
	switch a.GetSeverity() {
	case eventbusv1.AlertSeverity_ALERT_SEVERITY_CRITICAL:
		return s.w.Crit(msg)
	case eventbusv1.AlertSeverity_ALERT_SEVERITY_HIGH:
		return s.w.Err(msg)
	case eventbusv1.AlertSeverity_ALERT_SEVERITY_MEDIUM:
		return s.w.Warning(msg)
	}
	return s.w.Notice(msg)
}

// webhookSink POSTs each alert as JSON, retrying failures (network errors
// and 5xx answers) with exponential backoff.
type webhookSink struct {
	url     string
	client  *http.Client
	retries int
	backoff time.Duration
}

func (s *webhookSink) name() string { return "webhook " + s.url }

func (s *webhookSink) send(ctx context.Context, a *eventbusv1.Alert) error {
	body, err := alertJSON(a)
	if err != nil {
		return err
	}
	wait := s.backoff
	for attempt := 0; ; attempt++ {
		err = s.post(ctx, body)
		if err == nil || attempt >= s.retries || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(wait/2 + rand.N(wait))
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		wait = min(2*wait, 30*time.Second)
	}
}

func (s *webhookSink) post(ctx context.Context, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("webhook answered %s", resp.Status)
	}
	return nil
}

// dispatcher fans alerts out to the sinks, each with its own bounded queue
// and goroutine. An alert that finds a sink's queue full is dropped for
// that sink and counted.
type dispatcher struct {
	queues []*sinkQueue
	log    *slog.Logger
	wg     sync.WaitGroup
}

type sinkQueue struct {
	s                  sink
	ch                 chan *eventbusv1.Alert
	sent, failed, drop atomic.Uint64
}

// sinkQueueLen bounds the alerts waiting for one sink.
const sinkQueueLen = 1024

func newDispatcher(ctx context.Context, sinks []sink, log *slog.Logger) *dispatcher {
	d := &dispatcher{log: log}
	for _, s := range sinks {
		q := &sinkQueue{s: s, ch: make(chan *eventbusv1.Alert, sinkQueueLen)}
		d.queues = append(d.queues, q)
		d.wg.Go(func() {
			for a := range q.ch {
				if err := q.s.send(ctx, a); err != nil {
					q.failed.Add(1)
					log.Warn("agent: an alert sink failed", "sink", q.s.name(), "rule", a.GetRuleId(), "err", err)
					continue
				}
				q.sent.Add(1)
			}
		})
	}
	return d
}

// dispatch queues a for every sink; it never blocks.
func (d *dispatcher) dispatch(a *eventbusv1.Alert) {
	for _, q := range d.queues {
		select {
		case q.ch <- a:
		default:
			if q.drop.Add(1) == 1 {
				d.log.Warn("agent: an alert sink is behind; alerts for it are dropped and counted", "sink", q.s.name())
			}
		}
	}
}

// close stops taking alerts and waits for the sinks to finish the queued
// ones (bounded by the context given to newDispatcher).
func (d *dispatcher) close() {
	for _, q := range d.queues {
		close(q.ch)
	}
	d.wg.Wait()
}

// SinkStats counts one sink's alerts (agentapi's).
type SinkStats = agentapi.SinkStats

func (d *dispatcher) stats() []SinkStats {
	out := make([]SinkStats, 0, len(d.queues))
	for _, q := range d.queues {
		out = append(out, SinkStats{Sink: q.s.name(), Sent: q.sent.Load(), Failed: q.failed.Load(), Dropped: q.drop.Load()})
	}
	return out
}
