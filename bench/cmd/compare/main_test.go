package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/daemoneye/daemoneye/bench"
)

func TestJSON(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--msgs", "200", "--reqs", "50", "--scenario", "inproc", "--json", "--quiet"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	var rep bench.Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("not one JSON document: %v\n%s", err, out.String())
	}
	if len(rep.Results) != len(bench.Select("inproc")) || rep.Msgs != 200 || rep.Requests != 50 {
		t.Fatalf("report: %d results, msgs %d, requests %d", len(rep.Results), rep.Msgs, rep.Requests)
	}
	for _, r := range rep.Results {
		if r.DaemonEye.Median.Err != "" || r.NATS.Median.Err != "" || r.Ratio <= 0 {
			t.Errorf("%s: DaemonEye %q, NATS %q, ratio %v", r.ID, r.DaemonEye.Median.Err, r.NATS.Median.Err, r.Ratio)
		}
	}
	if errOut.Len() != 0 {
		t.Errorf("--quiet wrote to stderr: %s", errOut.String())
	}

	saved := filepath.Join(t.TempDir(), "report.json")
	if err := os.WriteFile(saved, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var table bytes.Buffer
	if code := run([]string{"--from", saved}, &table, &errOut); code != 0 {
		t.Fatalf("--from: exit %d: %s", code, errOut.String())
	}
	if !strings.Contains(table.String(), "pub/sub 1:10, inproc vs in-process") {
		t.Errorf("--from printed:\n%s", table.String())
	}
}

func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{{"--msgs", "0"}, {"--count", "-1"}, {"extra"}, {"--nope"}} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != 2 {
			t.Errorf("%q: exit %d, want 2", args, code)
		}
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"--scenario", "nothing"}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "no scenario matches") {
		t.Errorf("no scenario: exit %d, %s", code, errOut.String())
	}
}

func TestList(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run([]string{"--list", "--scenario", "req"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if n := strings.Count(out.String(), "\n"); n != 2 {
		t.Errorf("--list --scenario req printed %d lines:\n%s", n, out.String())
	}
}
