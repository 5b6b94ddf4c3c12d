package transport

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// SocketName is the file name of the broker's socket in its directory.
const SocketName = "eventbus.sock"

// ErrInUse is returned by ListenUnix when a live broker already listens on
// the path.
var ErrInUse = errors.New("transport: socket in use")

// DefaultSocketPath returns where the broker listens by default:
// /run/daemoneye/eventbus.sock for root, otherwise
// $XDG_RUNTIME_DIR/daemoneye/eventbus.sock, or /tmp/daemoneye-$UID/eventbus.sock
// when XDG_RUNTIME_DIR is unset.
func DefaultSocketPath() string {
	return defaultSocketPath(os.Getuid(), os.Getenv("XDG_RUNTIME_DIR"), os.TempDir())
}

func defaultSocketPath(uid int, xdgRuntimeDir, tmp string) string {
	switch {
	case uid == 0:
		return filepath.Join("/run/daemoneye", SocketName)
	case xdgRuntimeDir != "":
		return filepath.Join(xdgRuntimeDir, "daemoneye", SocketName)
	}
	return filepath.Join(tmp, "daemoneye-"+strconv.Itoa(uid), SocketName)
}

// ListenUnix listens on a UNIX stream socket at path. It creates the
// directory with mode 0700 if it is missing, and makes the socket 0600.
// Another process's socket at path is replaced if nobody answers on it (a
// broker that crashed); if a broker answers, ListenUnix returns an error
// wrapping ErrInUse. A path that exists and is not a socket is never
// removed. Closing the listener removes the socket file.
func ListenUnix(path string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("transport: create the socket directory: %w", err)
	}
	if err := removeStale(path); err != nil {
		return nil, err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("transport: listen on %s: %w", path, err)
	}
	// The directory is 0700 when we created it, so nobody else can reach
	// the socket in the moment before this chmod.
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("transport: make %s owner-only: %w", path, err)
	}
	return l, nil
}

// removeStale removes a socket file nobody listens on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("transport: inspect %s: %w", path, err)
	case fi.Mode()&fs.ModeSocket == 0:
		return fmt.Errorf("transport: %s exists and is not a socket (%s): move it away or choose another --socket path", path, fi.Mode())
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		c.Close()
		return fmt.Errorf("%w: a broker is already listening on %s: stop it, or choose another --socket path", ErrInUse, path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("transport: probe existing socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("transport: remove stale socket %s: %w", path, err)
	}
	return nil
}

// PeerCred is the identity the kernel reports for the process on the other
// end of a UNIX socket, as of when it connected.
type PeerCred struct {
	PID int32
	UID uint32
	GID uint32
}

// String returns "uid:U gid:G pid:P".
func (c PeerCred) String() string {
	return fmt.Sprintf("uid:%d gid:%d pid:%d", c.UID, c.GID, c.PID)
}

// PeerCredOf reads SO_PEERCRED from a UNIX socket connection.
func PeerCredOf(c *net.UnixConn) (PeerCred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return PeerCred{}, fmt.Errorf("transport: peer credentials: %w", err)
	}
	var uc *syscall.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		uc, serr = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return PeerCred{}, fmt.Errorf("transport: peer credentials: %w", err)
	}
	if serr != nil {
		return PeerCred{}, fmt.Errorf("transport: peer credentials: %w", serr)
	}
	return PeerCred{PID: uc.Pid, UID: uc.Uid, GID: uc.Gid}, nil
}

// ErrPeerNotAllowed is returned by PeerPolicy.Check for a peer outside the
// policy.
var ErrPeerNotAllowed = errors.New("transport: peer not allowed")

// PeerPolicy says which local users may connect. The zero value admits
// only root and the user the broker runs as.
type PeerPolicy struct {
	// UIDs and GIDs are admitted in addition to root and the broker's own
	// user. A peer is admitted if its uid or its primary gid is listed.
	UIDs []uint32
	GIDs []uint32
}

// Check returns nil if the peer may connect, or an error wrapping
// ErrPeerNotAllowed that says how to admit it.
func (p *PeerPolicy) Check(c PeerCred) error {
	if c.UID == 0 || c.UID == uint32(os.Getuid()) || slices.Contains(p.UIDs, c.UID) || slices.Contains(p.GIDs, c.GID) {
		return nil
	}
	return fmt.Errorf("%w: %s is neither root, the broker's user (uid %d), nor in the allow-list: add its uid or gid to the broker's allowed peers",
		ErrPeerNotAllowed, c, os.Getuid())
}
