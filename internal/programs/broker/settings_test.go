package broker

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/internal/programs/config"
)

func TestSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "broker.yaml")
	os.WriteFile(file, []byte("socket: /from/file.sock\nmax_conns: 7\ndrain_timeout: 2s\nallow_uids: [1000]\n"), 0o600)
	for _, tc := range []struct {
		name string
		env  string
		args []string
		want config.Broker
	}{
		{"file", "", []string{"--config", file},
			config.Broker{Socket: "/from/file.sock", MaxConns: 7, DrainTimeout: config.Duration(2 * time.Second), AllowUIDs: []uint32{1000}}},
		{"env over file", "/from/env.sock", []string{"--config", file},
			config.Broker{Socket: "/from/env.sock", MaxConns: 7, DrainTimeout: config.Duration(2 * time.Second), AllowUIDs: []uint32{1000}}},
		{"flags over env and file", "/from/env.sock", []string{"--config", file, "--socket", "/from/flag.sock", "--max-conns", "3", "--allow-uid", "5", "--allow-uid", "6"},
			config.Broker{Socket: "/from/flag.sock", MaxConns: 3, DrainTimeout: config.Duration(2 * time.Second), AllowUIDs: []uint32{5, 6}}},
		{"defaults", "/from/env.sock", nil,
			config.Broker{Socket: "/from/env.sock", MaxConns: 1024, DrainTimeout: config.Duration(5 * time.Second)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("DAEMONEYE_SOCKET", tc.env)
			got, _, err := settings(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if got.Socket != tc.want.Socket || got.MaxConns != tc.want.MaxConns || got.DrainTimeout != tc.want.DrainTimeout ||
				len(got.AllowUIDs) != len(tc.want.AllowUIDs) || (len(got.AllowUIDs) > 0 && got.AllowUIDs[0] != tc.want.AllowUIDs[0]) {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestSettingsErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("sokcet: /x\n"), 0o600)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--config", bad}, "sokcet"},
		{[]string{"--allow-uid", "alice"}, "numeric id"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		if _, _, err := settings(tc.args); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("settings(%q) = %v, want an error containing %q", tc.args, err, tc.want)
		}
	}
}

// TCP without TLS is refused unless asked for, and then only on loopback.
func TestListenTCPRules(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "eventbus.sock")
	for _, tc := range []struct {
		cfg  config.Broker
		want string // error substring; empty: listens
	}{
		{config.Broker{Socket: sock, TCP: "127.0.0.1:0"}, "--tls-ca"},
		{config.Broker{Socket: sock, TCP: "0.0.0.0:0", TCPPlaintext: true}, "loopback"},
		{config.Broker{Socket: sock, TCP: "127.0.0.1:0", TCPPlaintext: true}, ""},
	} {
		ls, err := listen(&tc.cfg)
		if tc.want == "" {
			if err != nil {
				t.Errorf("listen(%+v) = %v", tc.cfg, err)
				continue
			}
			for _, l := range ls {
				l.Close()
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("listen(%+v) = %v, want an error containing %q", tc.cfg, err, tc.want)
		}
		for _, l := range ls {
			l.Close()
		}
	}
}

// The bounds on what a client that does not read can cost: defaults, the
// file, and flags over the file.
func TestSettingsSlowConsumerBounds(t *testing.T) {
	file := filepath.Join(t.TempDir(), "broker.yaml")
	os.WriteFile(file, []byte("max_pending: 1048576\nmax_stall: 20ms\nmax_subscriptions: 500\n"), 0o600)
	for _, tc := range []struct {
		name string
		args []string
		want config.Broker
	}{
		{"defaults", nil, config.Broker{MaxPending: 4 << 20, MaxPendingTotal: 128 << 20, MaxStall: config.Duration(50 * time.Millisecond), MaxSubscriptions: 65536, MaxConnSubscriptions: 4096}},
		{"file", []string{"--config", file}, config.Broker{MaxPending: 1 << 20, MaxPendingTotal: 128 << 20, MaxStall: config.Duration(20 * time.Millisecond), MaxSubscriptions: 500, MaxConnSubscriptions: 4096}},
		{"flags over file", []string{"--config", file, "--max-stall", "5ms", "--max-pending-total", "1000000", "--max-conn-subscriptions", "9"},
			config.Broker{MaxPending: 1 << 20, MaxPendingTotal: 1000000, MaxStall: config.Duration(5 * time.Millisecond), MaxSubscriptions: 500, MaxConnSubscriptions: 9}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, _, err := settings(tc.args)
			if err != nil {
				t.Fatal(err)
			}
			if got.MaxPending != tc.want.MaxPending || got.MaxPendingTotal != tc.want.MaxPendingTotal || got.MaxStall != tc.want.MaxStall ||
				got.MaxSubscriptions != tc.want.MaxSubscriptions || got.MaxConnSubscriptions != tc.want.MaxConnSubscriptions {
				t.Errorf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

// --may-block and may_block name the identities, beyond the local
// operator, whose block subscriptions may hold publishers back.
func TestSettingsMayBlock(t *testing.T) {
	file := filepath.Join(t.TempDir(), "broker.yaml")
	if err := os.WriteFile(file, []byte("may_block: [cert:archiver]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{nil, nil},
		{[]string{"--config", file}, []string{"cert:archiver"}},
		{[]string{"--config", file, "--may-block", "token:a", "--may-block", "token:b"}, []string{"token:a", "token:b"}},
	} {
		cfg, _, err := settings(tc.args)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(cfg.MayBlock, tc.want) {
			t.Errorf("%q: may_block %q, want %q", tc.args, cfg.MayBlock, tc.want)
		}
		if f := mayBlock(cfg.MayBlock); (f == nil) != (len(tc.want) == 0) || f != nil && (!f(tc.want[0]) || f("uid:4242")) {
			t.Errorf("%q: mayBlock admits the wrong identities", tc.args)
		}
	}
}
