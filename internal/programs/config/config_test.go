package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDecodeBroker(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       Broker
		err        string // substring; empty: no error
	}{
		{name: "empty", yaml: ""},
		{name: "all", yaml: "socket: /run/x.sock\nmax_conns: 10\ndrain_timeout: 250ms\nallow_uids: [1000, 1001]\ntcp: 127.0.0.1:7879\ntcp_plaintext: true\nallow_certs: [agent]\n",
			want: Broker{Socket: "/run/x.sock", MaxConns: 10, DrainTimeout: Duration(250 * time.Millisecond), AllowUIDs: []uint32{1000, 1001},
				TCP: "127.0.0.1:7879", TCPPlaintext: true, AllowCerts: []string{"agent"}}},
		{name: "unknown key", yaml: "socket: /x\nmax_con: 3\n", err: "field max_con not found"},
		{name: "wrong type", yaml: "max_conns: many\n", err: "cannot unmarshal"},
		{name: "bad duration", yaml: "drain_timeout: 5\n", err: "is not a duration"},
		{name: "two documents", yaml: "socket: /a\n---\nsocket: /b\n", err: "more than one YAML document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got Broker
			err := Decode([]byte(tc.yaml), &got)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrInvalid) {
					t.Fatalf("err = %v, want ErrInvalid containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.Socket != tc.want.Socket || got.MaxConns != tc.want.MaxConns || got.DrainTimeout != tc.want.DrainTimeout ||
				len(got.AllowUIDs) != len(tc.want.AllowUIDs) || got.TCP != tc.want.TCP || got.TCPPlaintext != tc.want.TCPPlaintext ||
				len(got.AllowCerts) != len(tc.want.AllowCerts) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "broker.yaml")
	os.WriteFile(path, []byte("sockett: /x\n"), 0o600)
	var b Broker
	err := Load(path, &b)
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("Load = %v, want an error naming %s and line 1", err, path)
	}
	if err := Load(filepath.Join(t.TempDir(), "missing.yaml"), &b); err == nil {
		t.Error("Load of a missing file succeeded")
	}
}

// A configuration file over MaxFileSize is refused with an error that
// names the file and the limit.
func TestLoadSizeLimit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.yaml")
	os.WriteFile(path, []byte(strings.Repeat("#\n", MaxFileSize/2+1)), 0o600)
	var b Broker
	err := Load(path, &b)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "larger than 1048576 bytes (1 MiB)") {
		t.Errorf("Load = %v, want ErrInvalid naming %s and the limit", err, path)
	}
}
