package agent

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/client"
)

// The agent's server limits come from flags and the configuration file,
// named as daemoneye-broker names them; a flag overrides the file, and 0
// leaves the default to Run.
func TestSettingsLimits(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "agent.yaml")
	os.WriteFile(cfg, []byte("max_conns: 9\nmax_preauth: 4\nmax_subscriptions: 10\nhandshake_timeout: 2s\nidle_timeout: 1m\nsupervision:\n  start_timeout: 30s\n"), 0o600)
	type limits struct {
		conns, preauth, subs          int
		handshake, idle, startTimeout time.Duration
	}
	for _, tc := range []struct {
		name string
		args []string
		want limits
	}{
		{"defaults", nil, limits{}},
		{"flags", []string{"--max-conns", "7", "--max-preauth", "5", "--max-subscriptions", "8", "--handshake-timeout", "3s"}, limits{conns: 7, preauth: 5, subs: 8, handshake: 3 * time.Second}},
		{"file", []string{"--config", cfg}, limits{9, 4, 10, 2 * time.Second, time.Minute, 30 * time.Second}},
		{"flag over file", []string{"--config", cfg, "--max-conns", "3"}, limits{3, 4, 10, 2 * time.Second, time.Minute, 30 * time.Second}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			opts, code, ok := parseArgs(append(tc.args, "--alerts", "off"), io.Discard, &stderr)
			if !ok {
				t.Fatalf("exit %d: %s", code, stderr.String())
			}
			got := limits{opts.MaxConns, opts.MaxPreAuth, opts.MaxSubscriptions, opts.HandshakeTimeout, opts.IdleTimeout, opts.StartTimeout}
			if got != tc.want {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

// Bad settings are refused with exit status 2 and a message that says
// what is wrong: a negative limit, a rules file over the size limit.
func TestSettingsRefused(t *testing.T) {
	big := filepath.Join(t.TempDir(), "rules.yaml")
	if err := os.WriteFile(big, bytes.Repeat([]byte("# padding\n"), 110<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-conns", "-1"}, "must not be negative"},
		{[]string{"--rules", big}, "is larger than 1048576 bytes (1 MiB), the limit for a rules file"},
	} {
		var stderr bytes.Buffer
		if _, code, ok := parseArgs(tc.args, io.Discard, &stderr); ok || code != 2 || !strings.Contains(stderr.String(), tc.want) {
			t.Errorf("%q: ok %v, exit %d, %q; want exit 2 and %q", tc.args, ok, code, stderr.String(), tc.want)
		}
	}
}

// The limits reach the agent's server: a connection over MaxConns and a
// subscription over MaxSubscriptions are refused, saying which limit.
func TestServerLimitsApply(t *testing.T) {
	a := runAgent(t, Options{Exe: script(t, "exec sleep 300"), StopTimeout: 100 * time.Millisecond, MaxConns: 1, MaxSubscriptions: 2})
	c, err := client.Dial(t.Context(), a.Socket(), client.Options{Name: "first", NoReconnect: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, p := range []string{"events.a", "events.b"} {
		if _, err := c.Subscribe(t.Context(), p, 1); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Subscribe(t.Context(), "events.c", 1); err == nil || !strings.Contains(err.Error(), "limit of 2 subscriptions") {
		t.Errorf("a third subscription: %v, want the limit of 2", err)
	}
	// The local operator may have a few connections beyond the limit
	// (so that others cannot lock it out), but not 32.
	var err2 error
	for n := 1; n < 32 && err2 == nil; n++ {
		var c2 *client.Conn
		if c2, err2 = client.Dial(t.Context(), a.Socket(), client.Options{Name: "more", NoReconnect: true}); err2 == nil {
			defer c2.Close()
		}
	}
	if err2 == nil || !strings.Contains(err2.Error(), "limit of 1 connections") {
		t.Errorf("32 connections over MaxConns 1: %v, want the limit of 1", err2)
	}
}
