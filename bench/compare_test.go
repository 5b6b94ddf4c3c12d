package bench

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

// TestScenariosDeliverEverything runs every scenario with tiny counts and
// checks that both systems deliver every message (or answer every
// request) without drops, errors or lost connections.
func TestScenariosDeliverEverything(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	var progress bytes.Buffer
	rep, err := Run(ctx, Config{Msgs: 300, Requests: 100, Count: 1, TrialTimeout: 20 * time.Second, Progress: &progress})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(rep.Results), len(Scenarios()); got != want {
		t.Fatalf("%d results, want one per scenario (%d)", got, want)
	}
	for _, res := range rep.Results {
		for _, m := range []*Measurement{&res.DaemonEye, &res.NATS} {
			if m.Skipped != "" {
				if res.Transport == MTLS && m.System == "DaemonEye" {
					t.Logf("%s %s: %s", res.ID, m.System, m.Skipped)
					continue
				}
				t.Errorf("%s %s: skipped: %s", res.ID, m.System, m.Skipped)
				continue
			}
			if len(m.Trials) != 1 {
				t.Errorf("%s %s: %d trials, want 1", res.ID, m.System, len(m.Trials))
				continue
			}
			tr := m.Median
			if tr.Err != "" || !tr.Complete || tr.Dropped != 0 || tr.Disconnects != 0 {
				t.Errorf("%s %s: err %q, complete %v, dropped %d, disconnects %d", res.ID, m.System, tr.Err, tr.Complete, tr.Dropped, tr.Disconnects)
			}
			switch res.Kind {
			case PubSub:
				if want := uint64(300 * res.Subs); tr.Expected != want || tr.Delivered != want {
					t.Errorf("%s %s: delivered %d of %d, want %d", res.ID, m.System, tr.Delivered, tr.Expected, want)
				}
				if tr.MsgsPerSec <= 0 || tr.DeliveriesPerSec < tr.MsgsPerSec {
					t.Errorf("%s %s: rates %v msgs/s, %v deliveries/s", res.ID, m.System, tr.MsgsPerSec, tr.DeliveriesPerSec)
				}
			case ReqReply, RPC:
				if tr.Calls != 100 || tr.CallsPerSec <= 0 || tr.P50us <= 0 || tr.P99us < tr.P50us {
					t.Errorf("%s %s: %d calls, %v calls/s, p50 %v µs, p99 %v µs", res.ID, m.System, tr.Calls, tr.CallsPerSec, tr.P50us, tr.P99us)
				}
			}
		}
		if res.DaemonEye.Skipped == "" && res.Ratio <= 0 {
			t.Errorf("%s: ratio %v", res.ID, res.Ratio)
		}
	}
	var table strings.Builder
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"pub/sub 1:10, UNIX vs TCP", "req/reply, inproc vs in-process", "RPC health check, UNIX vs TCP", "mTLS vs mTLS", "ratio"} {
		if !strings.Contains(table.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, table.String())
		}
	}
	if t.Failed() {
		t.Logf("progress:\n%s", progress.String())
	}
}

func TestSelect(t *testing.T) {
	for filter, want := range map[string]int{"": len(Scenarios()), "1:10": 6, "INPROC": 8, "req": 2, "rpc": 2, "mtls": 1, "socket/128B": 2, "nothing": 0} {
		if got := len(Select(filter)); got != want {
			t.Errorf("Select(%q): %d scenarios, want %d", filter, got, want)
		}
	}
	if _, err := Run(t.Context(), Config{Filter: "nothing"}); err == nil {
		t.Error("Run with a filter that matches nothing: no error")
	}
}

func TestMedianAndQuantile(t *testing.T) {
	m := median([]Trial{
		{MsgsPerSec: 3, Dropped: 1, Complete: true},
		{MsgsPerSec: 1, Complete: true},
		{MsgsPerSec: 2, Disconnects: 2, Complete: false},
	})
	if m.MsgsPerSec != 2 || m.Dropped != 1 || m.Disconnects != 2 || m.Complete {
		t.Errorf("median = %+v", m)
	}
	if m := median([]Trial{{CallsPerSec: 1}, {CallsPerSec: 4}}); m.CallsPerSec != 2.5 {
		t.Errorf("median of two = %v, want 2.5", m.CallsPerSec)
	}
	lat := make([]time.Duration, 100)
	for i := range lat {
		lat[i] = time.Duration(i+1) * time.Microsecond
	}
	if p50, p99 := quantile(lat, 0.5), quantile(lat, 0.99); p50 != 50 || p99 != 99 {
		t.Errorf("p50 %v, p99 %v; want 50, 99", p50, p99)
	}
}
