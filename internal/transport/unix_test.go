package transport

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestListenUnixModes(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "daemoneye", SocketName)
	l, err := ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	dir, _ := os.Stat(filepath.Dir(path))
	sock, _ := os.Stat(path)
	if dir.Mode().Perm() != 0o700 || sock.Mode().Perm() != 0o600 || sock.Mode()&os.ModeSocket == 0 {
		t.Errorf("directory %v, socket %v; want 0700 and a 0600 socket", dir.Mode(), sock.Mode())
	}
}

func TestListenUnixLiveAndStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketName)
	live, err := ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	// A broker is listening: a second one must not take over.
	if _, err := ListenUnix(path); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "already listening") {
		t.Errorf("second listener: %v, want ErrInUse", err)
	}
	// Simulate a crash: the socket file stays behind, nobody listens.
	live.SetUnlinkOnClose(false)
	live.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("test setup: stale socket missing: %v", err)
	}
	l, err := ListenUnix(path)
	if err != nil {
		t.Fatalf("listen over a stale socket: %v", err)
	}
	l.Close()
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("socket file left after Close: %v", err)
	}
}

func TestListenUnixNeverRemovesOtherFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketName)
	if err := os.WriteFile(path, []byte("precious"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ListenUnix(path); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("ListenUnix over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Error("the regular file was touched")
	}
}

func TestPeerCred(t *testing.T) {
	path := filepath.Join(t.TempDir(), SocketName)
	l, err := ListenUnix(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan *net.UnixConn, 1)
	go func() {
		c, err := l.AcceptUnix()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	server, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	defer server.Close()
	cred, err := PeerCredOf(server)
	if err != nil {
		t.Fatal(err)
	}
	if cred.UID != uint32(os.Getuid()) || cred.GID != uint32(os.Getgid()) || cred.PID != int32(os.Getpid()) {
		t.Errorf("peer %v, want this process (uid %d gid %d pid %d)", cred, os.Getuid(), os.Getgid(), os.Getpid())
	}
}

func TestPeerPolicy(t *testing.T) {
	self := uint32(os.Getuid())
	stranger := self + 4242
	tests := []struct {
		policy PeerPolicy
		cred   PeerCred
		ok     bool
	}{
		{PeerPolicy{}, PeerCred{UID: 0}, true},
		{PeerPolicy{}, PeerCred{UID: self}, true},
		{PeerPolicy{}, PeerCred{UID: stranger, GID: 5000}, false},
		{PeerPolicy{UIDs: []uint32{stranger}}, PeerCred{UID: stranger}, true},
		{PeerPolicy{GIDs: []uint32{5000}}, PeerCred{UID: stranger, GID: 5000}, true},
		{PeerPolicy{GIDs: []uint32{5001}}, PeerCred{UID: stranger, GID: 5000}, false},
	}
	for _, tt := range tests {
		err := tt.policy.Check(tt.cred)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, ErrPeerNotAllowed)) {
			t.Errorf("%+v.Check(%v) = %v, want ok=%v", tt.policy, tt.cred, err, tt.ok)
		}
	}
}

func TestDefaultSocketPath(t *testing.T) {
	tests := []struct {
		uid      int
		xdg, tmp string
		want     string
	}{
		{0, "/run/user/0", "/tmp", "/run/daemoneye/eventbus.sock"},
		{1000, "/run/user/1000", "/tmp", "/run/user/1000/daemoneye/eventbus.sock"},
		{1000, "", "/tmp", "/tmp/daemoneye-1000/eventbus.sock"},
		{1000, "", "/var/tmp", "/var/tmp/daemoneye-1000/eventbus.sock"},
	}
	for _, tt := range tests {
		if got := defaultSocketPath(tt.uid, tt.xdg, tt.tmp); got != tt.want {
			t.Errorf("defaultSocketPath(%d, %q, %q) = %s, want %s", tt.uid, tt.xdg, tt.tmp, got, tt.want)
		}
	}
	if filepath.Base(DefaultSocketPath()) != SocketName {
		t.Errorf("DefaultSocketPath = %s", DefaultSocketPath())
	}
}
