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

// ErrUnsafeDir is wrapped by ListenUnix's errors about the socket's
// directory or one of its parents: owned by another user, writable by
// others, or a symbolic link. Another user who controls the directory
// could replace the socket with their own and collect every client's
// token and messages.
var ErrUnsafeDir = errors.New("transport: unsafe socket directory")

// ListenUnix listens on a UNIX stream socket at path, and makes the
// socket 0600. Closing the listener removes the socket file.
//
// The socket's directory must be safe: ListenUnix creates it with mode
// 0700 if it is missing (its missing parents too), and otherwise requires
// that it is a directory, not a symbolic link, owned by this process's
// effective user, and not writable by group or others. Every parent must
// be owned by root or this user and not writable by group or others unless
// it is sticky (as /tmp is); symbolic links among the parents are
// resolved and the directories they lead to are checked instead. Anything
// else is refused with an error wrapping ErrUnsafeDir that says what to
// do. The directory is checked through a descriptor opened with
// O_NOFOLLOW, and checked again after the bind, so a directory swapped in
// between is detected and the listener closed.
//
// Another process's socket at path is replaced if nobody answers on it (a
// broker that crashed); if a broker answers, ListenUnix returns an error
// wrapping ErrInUse. A path that exists and is not a socket is never
// removed.
func ListenUnix(path string) (*net.UnixListener, error) {
	dir := filepath.Dir(path)
	dirfd, id, err := openSocketDir(dir)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(dirfd)
	if err := removeStale(path); err != nil {
		return nil, err
	}
	l, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("transport: listen on %s: %w", path, err)
	}
	// The directory we checked must still be the one path leads to: if
	// it was swapped between the check and the bind, the socket is in
	// someone else's directory.
	if err := sameDir(dir, id); err != nil {
		l.SetUnlinkOnClose(false) // not ours to remove
		l.Close()
		return nil, err
	}
	// Only this user can enter the directory unless its owner opened it
	// up for reading; connecting needs write permission on the socket.
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("transport: make %s owner-only: %w", path, err)
	}
	return l, nil
}

// dirID identifies a directory: its device and inode.
type dirID struct{ dev, ino uint64 }

// openSocketDir creates dir 0700 if it is missing, opens it without
// following a symbolic link, and checks it and its parents (see
// ListenUnix).
func openSocketDir(dir string) (int, dirID, error) {
	parent := filepath.Dir(dir)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return -1, dirID{}, fmt.Errorf("transport: create the socket directory's parent %s: %w", parent, err)
	}
	if err := checkParents(parent); err != nil {
		return -1, dirID{}, err
	}
	// Mkdir is atomic: either it creates the directory with our owner and
	// 0700, or the directory was there, and is checked below as found.
	if err := os.Mkdir(dir, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return -1, dirID{}, fmt.Errorf("transport: create the socket directory %s: %w", dir, err)
	}
	fd, err := syscall.Open(dir, syscall.O_RDONLY|syscall.O_DIRECTORY|syscall.O_NOFOLLOW|syscall.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, syscall.ELOOP) || errors.Is(err, syscall.ENOTDIR) {
			if fi, lerr := os.Lstat(dir); lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
				return -1, dirID{}, fmt.Errorf("%w: %s is a symbolic link: remove it (the broker never follows a link to its socket directory), or set --socket or XDG_RUNTIME_DIR to a directory of your own",
					ErrUnsafeDir, dir)
			}
			return -1, dirID{}, fmt.Errorf("%w: %s is not a directory: move it away, or set --socket or XDG_RUNTIME_DIR to a directory of your own", ErrUnsafeDir, dir)
		}
		return -1, dirID{}, fmt.Errorf("transport: open the socket directory %s: %w", dir, err)
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return -1, dirID{}, fmt.Errorf("transport: inspect the socket directory %s: %w", dir, err)
	}
	if err := checkSocketDir(dir, &st); err != nil {
		syscall.Close(fd)
		return -1, dirID{}, err
	}
	return fd, dirID{uint64(st.Dev), st.Ino}, nil
}

// checkSocketDir checks the socket's own directory.
func checkSocketDir(dir string, st *syscall.Stat_t) error {
	euid := uint32(os.Geteuid())
	switch {
	case st.Uid != euid:
		return fmt.Errorf("%w: %s is owned by uid %d, not by this user (uid %d): remove it (another user may have created it to take over the socket), or set --socket or XDG_RUNTIME_DIR to a directory of your own",
			ErrUnsafeDir, dir, st.Uid, euid)
	case st.Mode&0o022 != 0:
		return fmt.Errorf("%w: %s has mode %04o, writable by others, who could replace the socket: run 'chmod 700 %s' or remove it, or set --socket or XDG_RUNTIME_DIR to a directory of your own",
			ErrUnsafeDir, dir, st.Mode&0o7777, dir)
	}
	return nil
}

// checkParents checks dir and each of its parents, after resolving
// symbolic links: each must be owned by root or this user, and not
// writable by group or others unless sticky.
func checkParents(dir string) error {
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("transport: resolve the socket directory's parent %s: %w", dir, err)
	}
	real, err = filepath.Abs(real)
	if err != nil {
		return fmt.Errorf("transport: resolve the socket directory's parent %s: %w", dir, err)
	}
	euid := uint32(os.Geteuid())
	for p := real; ; p = filepath.Dir(p) {
		var st syscall.Stat_t
		if err := syscall.Lstat(p, &st); err != nil {
			return fmt.Errorf("transport: inspect %s: %w", p, err)
		}
		switch {
		case st.Mode&syscall.S_IFMT != syscall.S_IFDIR:
			return fmt.Errorf("%w: %s, a parent of the socket directory, is not a directory (it changed while it was checked?)", ErrUnsafeDir, p)
		case st.Uid != 0 && st.Uid != euid:
			return fmt.Errorf("%w: %s, a parent of the socket directory, is owned by uid %d, who could replace the socket: choose a --socket path (or XDG_RUNTIME_DIR) under directories owned by root or by you (uid %d)",
				ErrUnsafeDir, p, st.Uid, euid)
		case st.Mode&0o022 != 0 && st.Mode&syscall.S_ISVTX == 0:
			return fmt.Errorf("%w: %s, a parent of the socket directory, has mode %04o: others can write to it and replace the socket directory; run 'chmod go-w %s' (or 'chmod +t' for a shared directory), or choose another --socket path",
				ErrUnsafeDir, p, st.Mode&0o7777, p)
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

// sameDir checks that dir is still the directory id, and not a link.
func sameDir(dir string, id dirID) error {
	var st syscall.Stat_t
	if err := syscall.Lstat(dir, &st); err != nil {
		return fmt.Errorf("transport: inspect the socket directory %s: %w", dir, err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR || uint64(st.Dev) != id.dev || st.Ino != id.ino {
		return fmt.Errorf("%w: %s was replaced while the broker started listening: someone else may be trying to take over the socket; check who owns it, remove it and start again",
			ErrUnsafeDir, dir)
	}
	return nil
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
