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

// Another user must not be able to prepare the socket's directory for
// the broker: a directory writable by others, a link to a directory they
// control, or one they own.
func TestListenUnixRefusesUnsafeDir(t *testing.T) {
	const nobody = 65534
	tests := []struct {
		name     string
		root     bool // needs root (chown)
		setup    func(t *testing.T, base string) (dir string)
		want     string
		untouchd string // a directory that must stay empty
	}{
		{name: "world-writable", setup: func(t *testing.T, base string) string {
			dir := filepath.Join(base, "daemoneye-1000")
			mustMkdir(t, dir, 0o777)
			return dir
		}, want: "writable by others"},
		{name: "group-writable", setup: func(t *testing.T, base string) string {
			dir := filepath.Join(base, "daemoneye-1000")
			mustMkdir(t, dir, 0o770)
			return dir
		}, want: "writable by others"},
		{name: "symlink", setup: func(t *testing.T, base string) string {
			target := filepath.Join(base, "attacker")
			mustMkdir(t, target, 0o700)
			dir := filepath.Join(base, "daemoneye-1000")
			if err := os.Symlink(target, dir); err != nil {
				t.Fatal(err)
			}
			return dir
		}, want: "symbolic link", untouchd: "attacker"},
		{name: "not a directory", setup: func(t *testing.T, base string) string {
			dir := filepath.Join(base, "daemoneye-1000")
			if err := os.WriteFile(dir, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return dir
		}, want: "not a directory"},
		{name: "owned by another user", root: true, setup: func(t *testing.T, base string) string {
			dir := filepath.Join(base, "daemoneye-1000")
			mustMkdir(t, dir, 0o700)
			mustChown(t, dir, nobody)
			return dir
		}, want: "owned by uid 65534"},
		{name: "symlink to another user's directory", root: true, setup: func(t *testing.T, base string) string {
			target := filepath.Join(base, "attacker")
			mustMkdir(t, target, 0o700)
			mustChown(t, target, nobody)
			dir := filepath.Join(base, "daemoneye-1000")
			if err := os.Symlink(target, dir); err != nil {
				t.Fatal(err)
			}
			return dir
		}, want: "symbolic link", untouchd: "attacker"},
		{name: "parent owned by another user", root: true, setup: func(t *testing.T, base string) string {
			parent := filepath.Join(base, "shared")
			mustMkdir(t, parent, 0o755)
			mustChown(t, parent, nobody)
			return filepath.Join(parent, "daemoneye")
		}, want: "parent of the socket directory, is owned by uid 65534"},
		{name: "parent writable by others, not sticky", setup: func(t *testing.T, base string) string {
			parent := filepath.Join(base, "shared")
			mustMkdir(t, parent, 0o777)
			return filepath.Join(parent, "daemoneye")
		}, want: "others can write to it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.root && os.Geteuid() != 0 {
				t.Skip("needs root to give a directory to another user (CI runs as root)")
			}
			base := t.TempDir()
			dir := tt.setup(t, base)
			path := filepath.Join(dir, SocketName)
			l, err := ListenUnix(path)
			if err == nil {
				l.Close()
				t.Fatalf("ListenUnix in %s: listening, want ErrUnsafeDir", tt.name)
			}
			if !errors.Is(err, ErrUnsafeDir) || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "--socket") {
				t.Errorf("ListenUnix: %v; want ErrUnsafeDir saying %q and what to do", err, tt.want)
			}
			if tt.untouchd != "" {
				if ents, _ := os.ReadDir(filepath.Join(base, tt.untouchd)); len(ents) != 0 {
					t.Errorf("the link's target got %v", ents)
				}
			}
		})
	}
}

// A sticky, world-writable parent (as /tmp) is fine, and a directory the
// broker made earlier is reused.
func TestListenUnixStickyParentAndReuse(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "tmp")
	mustMkdir(t, parent, 0o777|os.ModeSticky)
	path := filepath.Join(parent, "daemoneye-1000", SocketName)
	for range 2 {
		l, err := ListenUnix(path)
		if err != nil {
			t.Fatal(err)
		}
		l.Close()
	}
	fi, err := os.Lstat(filepath.Dir(path))
	if err != nil || fi.Mode().Perm() != 0o700 || !fi.IsDir() {
		t.Errorf("socket directory %v (%v), want a 0700 directory", fi.Mode(), err)
	}
}

func mustMkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil { // beyond the umask
		t.Fatal(err)
	}
}

func mustChown(t *testing.T, path string, uid int) {
	t.Helper()
	if err := os.Lchown(path, uid, uid); err != nil {
		t.Fatal(err)
	}
}
