//go:build linux

package sensor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/internal/testutil/testproc"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary a helper process instead of running the
// tests (see TestMain).
const helperEnv = "DAEMONEYE_SENSOR_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		goleak.VerifyTestMain(m)
	case "open":
		// Open the sensor, as whatever user this runs as: exit 0 if it was
		// refused with ErrUnsupported and a message saying what is needed.
		s, err := Open(Options{})
		if err == nil {
			s.Close()
			fmt.Println("Open succeeded")
			os.Exit(3)
		}
		fmt.Println(err)
		if !errors.Is(err, ErrUnsupported) || !strings.Contains(err.Error(), "CAP_BPF and CAP_PERFMON") {
			os.Exit(4)
		}
		os.Exit(0)
	default:
		os.Exit(5)
	}
}

// live returns a Sensor for a test that needs the kernel, or skips the test
// when this process cannot load BPF programs (not root, no BTF): CI runs as
// root on a kernel with BTF, where a failure to open fails the test.
func live(t testing.TB, opts Options) *Sensor {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the eBPF process sensor needs root (or CAP_BPF and CAP_PERFMON): run go test as root to test it")
	}
	if _, err := os.Stat(kernelBTF); err != nil {
		t.Skipf("the eBPF process sensor needs kernel BTF (%v)", err)
	}
	s, err := Open(opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

var errDone = errors.New("done")

// collect runs s until done returns true for the events kept so far, and
// returns them. keep selects the events to keep. It fails the test after
// timeout (only a failing test waits that long).
func collect(t *testing.T, s *Sensor, timeout time.Duration, keep func(*Event) bool, done func([]Event) bool) []Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var kept []Event
	err := s.Run(ctx, func(e *Event) error {
		if keep(e) {
			kept = append(kept, *e)
			if done(kept) {
				return errDone
			}
		}
		return nil
	})
	if err != errDone {
		t.Fatalf("Run: %v, with %d events kept: %+v", err, len(kept), kept)
	}
	return kept
}

// realPath resolves symlinks, as the kernel does for the executed file.
func realPath(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// publicDir returns a new directory that every user can read and search.
func publicDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "daemoneye-sensor-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return realPath(t, dir)
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dst, mode); err != nil { // past the umask
		t.Fatal(err)
	}
}

func nsInode(t *testing.T, kind string) uint32 {
	t.Helper()
	l, err := os.Readlink("/proc/self/ns/" + kind)
	if err != nil {
		t.Fatal(err)
	}
	n, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(l, kind+":["), "]"), 10, 32)
	if err != nil {
		t.Fatalf("%s: %v", l, err)
	}
	return uint32(n)
}

// TestExecStorm runs 2,000 short-lived execs from 8 shells at once and
// requires every one to be reported once, with its exact argv and path.
func TestExecStorm(t *testing.T) {
	s := live(t, Options{})
	const shells, per = 8, 250
	tag := fmt.Sprintf("storm-%d", os.Getpid())
	truePath := realPath(t, "/bin/true")

	want := make(map[string]bool, shells*per)
	for k := range shells {
		for i := 1; i <= per; i++ {
			want[fmt.Sprintf("%s-%d-%d", tag, k, i)] = true
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, shells)
	shellPIDs := make(chan int, shells)
	for k := range shells {
		wg.Go(func() {
			cmd := exec.Command("/bin/sh", "-c",
				fmt.Sprintf(`i=1; while [ $i -le %d ]; do /bin/true %s-%d-$i; i=$((i+1)); done`, per, tag, k))
			if err := cmd.Start(); err != nil {
				errs <- err
				return
			}
			shellPIDs <- cmd.Process.Pid
			if err := cmd.Wait(); err != nil {
				errs <- fmt.Errorf("shell %d: %w", k, err)
			}
		})
	}
	seen := make(map[string]int, len(want))
	start := time.Now()
	kept := collect(t, s, 60*time.Second, func(e *Event) bool {
		return e.Kind == KindExec && len(e.Exec.Args) == 2 && strings.HasPrefix(e.Exec.Args[1], tag)
	}, func(kept []Event) bool {
		seen[kept[len(kept)-1].Exec.Args[1]]++
		return len(seen) == len(want)
	})
	elapsed := time.Since(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	close(shellPIDs)
	shells1 := map[uint32]bool{}
	for p := range shellPIDs {
		shells1[uint32(p)] = true
	}
	for _, e := range kept {
		x := &e.Exec
		if !want[x.Args[1]] || seen[x.Args[1]] != 1 {
			t.Errorf("unexpected or repeated argv %q (seen %d times)", x.Args, seen[x.Args[1]])
		}
		if x.Args[0] != "/bin/true" || x.Path != truePath || x.Filename != "/bin/true" || x.Flags != 0 {
			t.Errorf("exec %+v: want argv[0] /bin/true, path %s, filename /bin/true, no flags", *x, truePath)
		}
		if !shells1[x.PPID] || e.PID != e.TID || e.PID == 0 {
			t.Errorf("exec of pid %d tid %d has parent %d, not one of the shells %v", e.PID, e.TID, x.PPID, shells1)
		}
	}
	st := s.Stats()
	if st.Lost != 0 || st.Malformed != 0 {
		t.Errorf("stats %+v: want nothing lost or malformed", st)
	}
	t.Logf("%d execs seen in %v; %+v", len(kept), elapsed.Round(time.Millisecond), st)
}

// execCase is one process to run and what its exec event must say.
type execCase struct {
	name string
	// cmd returns the process to start, with token among its arguments.
	cmd func(t *testing.T, dir, token string) *exec.Cmd
	// check checks the (last) exec event of that process.
	check func(t *testing.T, dir, token string, cmd *exec.Cmd, e *Event)
	// execs is how many execs of the process have token in their argv
	// (0 means 1).
	execs int
}

// TestExec starts processes that the kernel resolves in particular ways
// and checks what their exec events say.
func TestExec(t *testing.T) {
	s := live(t, Options{})
	truePath := realPath(t, "/bin/true")
	hostPidNS, hostMntNS := nsInode(t, "pid"), nsInode(t, "mnt")
	var wantTTY uint32 // set by the tty case's cmd for its check

	cases := []execCase{{
		name: "plain",
		cmd: func(t *testing.T, dir, token string) *exec.Cmd {
			cmd := exec.Command("/bin/true", token, "", "two words")
			cmd.Dir = dir
			return cmd
		},
		check: func(t *testing.T, dir, token string, cmd *exec.Cmd, e *Event) {
			x := &e.Exec
			wantArgs := []string{"/bin/true", token, "", "two words"}
			if x.Path != truePath || x.Filename != "/bin/true" || x.Cwd != dir || !slices.Equal(x.Args, wantArgs) || x.Flags != 0 {
				t.Errorf("got path %q filename %q cwd %q args %q flags %v; want %q /bin/true %q %q 0",
					x.Path, x.Filename, x.Cwd, x.Args, x.Flags, truePath, dir, wantArgs)
			}
			if x.ArgsBytes != uint32(len(strings.Join(wantArgs, "\x00"))+1) {
				t.Errorf("ArgsBytes %d", x.ArgsBytes)
			}
			if x.TTY != 0 || x.LoginUID != readLoginUID(t) {
				t.Errorf("tty %d login uid %d: want none and this process's", x.TTY, x.LoginUID)
			}
			if x.PPID != uint32(os.Getpid()) || x.UID != 0 || x.EUID != 0 || x.GID != 0 || x.EGID != 0 {
				t.Errorf("ppid %d uid %d euid %d gid %d egid %d: want %d and root", x.PPID, x.UID, x.EUID, x.GID, x.EGID, os.Getpid())
			}
			if x.PidNS != hostPidNS || x.MntNS != hostMntNS || x.NSPID != e.PID {
				t.Errorf("pidns %d mntns %d nspid %d: want %d %d %d", x.PidNS, x.MntNS, x.NSPID, hostPidNS, hostMntNS, e.PID)
			}
			if x.CgroupID == 0 || x.Start == 0 || x.Start > time.Duration(bootNow(t)) {
				t.Errorf("cgroup id %d, start %v: want both set, start before now", x.CgroupID, x.Start)
			}
			if d := time.Since(e.Time); d < 0 || d > time.Minute {
				t.Errorf("event time %v is %v from now", e.Time, d)
			}
			var st unix.Stat_t
			if err := unix.Stat(truePath, &st); err != nil {
				t.Fatal(err)
			}
			want := FileID{Ino: st.Ino, Size: st.Size, ModTime: st.Mtim.Nano()}
			if got := x.File; got.Ino != want.Ino || got.Size != want.Size || got.ModTime != want.ModTime || got.StatDev() != st.Dev {
				t.Errorf("file %+v (stat dev %#x): want %+v, stat dev %#x", got, got.StatDev(), want, st.Dev)
			}
			if !x.HasMemory || x.VMBytes < uint64(st.Size) {
				t.Errorf("memory known %v, virtual size %d: want at least the image's %d bytes", x.HasMemory, x.VMBytes, st.Size)
			}
		},
	}, {
		name: "symlink",
		cmd: func(t *testing.T, dir, token string) *exec.Cmd {
			link := filepath.Join(dir, "link")
			if err := os.Symlink("/bin/true", link); err != nil {
				t.Fatal(err)
			}
			return exec.Command(link, token)
		},
		check: func(t *testing.T, dir, token string, cmd *exec.Cmd, e *Event) {
			x := &e.Exec
			if x.Path != truePath || x.Filename != filepath.Join(dir, "link") || x.Flags != 0 {
				t.Errorf("path %q filename %q flags %v: want the link's target %q, the link, no flags", x.Path, x.Filename, x.Flags, truePath)
			}
		},
	}, {
		name: "bind mount",
		cmd: func(t *testing.T, dir, token string) *exec.Cmd {
			// The path crosses a mount point: dir/b is dir/a mounted again.
			a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
			for _, d := range []string{a, b} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			copyFile(t, "/bin/true", filepath.Join(a, "true"), 0o755)
			if err := unix.Mount(a, b, "", unix.MS_BIND, ""); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				if err := unix.Unmount(b, unix.MNT_DETACH); err != nil {
					t.Error(err)
				}
			})
			return exec.Command(filepath.Join(b, "true"), token)
		},
		check: func(t *testing.T, dir, token string, cmd *exec.Cmd, e *Event) {
			x := &e.Exec
			if want := filepath.Join(dir, "b", "true"); x.Path != want || x.Flags != 0 {
				t.Errorf("path %q flags %v: want %q through the mount, no flags", x.Path, x.Flags, want)
			}
		},
	}, {
		name: "login uid",
		cmd: func(t *testing.T, dir, token string) *exec.Cmd {
			if _, err := os.Stat("/proc/self/loginuid"); err != nil {
				t.Skipf("no login uid on this kernel (CONFIG_AUDIT): %v", err)
			}
			// The shell sets its own login uid (root may, once), then execs.
			return exec.Command("/bin/sh", "-c", `echo 4321 > /proc/self/loginuid && exec /bin/true "$1"`, "sh", token)
		},
		execs: 2,
		check: func(t *testing.T, dir, token string, cmd *exec.Cmd, e *Event) {
			if e.Exec.LoginUID != 4321 {
				t.Errorf("login uid %d, want 4321", e.Exec.LoginUID)
			}
		},
	}, {
		name: "tty",
		cmd: func(t *testing.T, dir, token string) *exec.Cmd {
			// A pts other than number 0, so that a minor number that
			// ignored the index would show.
			var pts *os.File
			for range 2 {
				var n int
				if pts, n = testproc.OpenPTS(t); n != 0 {
					break
				}
			}
			var st unix.Stat_t
			if err := unix.Fstat(int(pts.Fd()), &st); err != nil {
				t.Fatal(err)
			}
			wantTTY = unix.Major(st.Rdev)<<20 | unix.Minor(st.Rdev)
			// A new session whose controlling terminal is the pts.
			cmd := exec.Command("/bin/true", token)
			cmd.Stdin = pts
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
			return cmd
		},
		check: func(t *testing.T, dir, token string, cmd *exec.Cmd, e *Event) {
			if e.Exec.TTY != wantTTY || e.Exec.TTYMajor() < 136 {
				t.Errorf("tty %d:%d, want %d:%d (a pts)", e.Exec.TTYMajor(), e.Exec.TTYMinor(), wantTTY>>20, wantTTY&(1<<20-1))
			}
		},
	}, {
		name: "script",
		cmd: func(t *testing.T, dir, token string) *exec.Cmd {
			script := filepath.Join(dir, "script")
			if err := os.WriteFile(script, []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
				t.Fatal(err)
			}
			return exec.Command(script, token)
		},
		check: func(t *testing.T, dir, token string, cmd *exec.Cmd, e *Event) {
			x := &e.Exec
			script := filepath.Join(dir, "script")
			if x.Path != realPath(t, "/bin/sh") || x.Filename != script || !slices.Equal(x.Args, []string{"/bin/sh", script, token}) {
				t.Errorf("path %q filename %q args %q: want the interpreter, the script, the interpreter's argv", x.Path, x.Filename, x.Args)
			}
		},
	}, {
		name: "deleted",
		cmd: func(t *testing.T, dir, token string) *exec.Cmd {
			victim := filepath.Join(dir, "victim")
			copyFile(t, "/bin/true", victim, 0o755)
			f, err := os.Open(victim)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { f.Close() })
			if err := os.Remove(victim); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("/proc/self/fd/3", token)
			cmd.ExtraFiles = []*os.File{f}
			return cmd
		},
		check: func(t *testing.T, dir, token string, cmd *exec.Cmd, e *Event) {
			x := &e.Exec
			if x.Path != filepath.Join(dir, "victim") || x.Flags != Deleted || x.Filename != "/proc/self/fd/3" {
				t.Errorf("path %q flags %v filename %q: want the removed name, Deleted, /proc/self/fd/3", x.Path, x.Flags, x.Filename)
			}
		},
	}, {
		name: "memfd",
		cmd: func(t *testing.T, dir, token string) *exec.Cmd {
			fd, err := unix.MemfdCreate("daemoneye-sensor-test", unix.MFD_CLOEXEC|unix.MFD_EXEC)
			if errors.Is(err, unix.EINVAL) { // before Linux 6.3
				fd, err = unix.MemfdCreate("daemoneye-sensor-test", unix.MFD_CLOEXEC)
			}
			if err != nil {
				t.Fatal(err)
			}
			f := os.NewFile(uintptr(fd), "memfd")
			t.Cleanup(func() { f.Close() })
			src, err := os.Open("/bin/true")
			if err != nil {
				t.Fatal(err)
			}
			defer src.Close()
			if _, err := io.Copy(f, src); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("/proc/self/fd/3", token)
			cmd.ExtraFiles = []*os.File{f}
			return cmd
		},
		check: func(t *testing.T, dir, token string, cmd *exec.Cmd, e *Event) {
			x := &e.Exec
			if x.Path != "/memfd:daemoneye-sensor-test" || x.Flags&(MemFD|Detached) != MemFD|Detached || x.Flags&^(MemFD|Detached|Deleted) != 0 {
				t.Errorf("path %q flags %v: want /memfd:daemoneye-sensor-test, MemFD|Detached", x.Path, x.Flags)
			}
		},
	}, {
		name: "pid namespace",
		cmd: func(t *testing.T, dir, token string) *exec.Cmd {
			cmd := exec.Command("/bin/true", token)
			cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID | syscall.CLONE_NEWNS}
			return cmd
		},
		check: func(t *testing.T, dir, token string, cmd *exec.Cmd, e *Event) {
			x := &e.Exec
			if e.PID != uint32(cmd.Process.Pid) || x.NSPID != 1 || x.PidNS == hostPidNS || x.PidNS == 0 || x.MntNS == hostMntNS || x.MntNS == 0 {
				t.Errorf("pid %d nspid %d pidns %d mntns %d: want %d, 1, and new namespaces (host %d %d)",
					e.PID, x.NSPID, x.PidNS, x.MntNS, cmd.Process.Pid, hostPidNS, hostMntNS)
			}
		},
	}, {
		name: "setuid",
		cmd: func(t *testing.T, dir, token string) *exec.Cmd {
			var st unix.Statfs_t
			if err := unix.Statfs(dir, &st); err != nil {
				t.Fatal(err)
			}
			if st.Flags&unix.ST_NOSUID != 0 {
				t.Skipf("%s is on a nosuid mount: set TMPDIR to a directory that allows setuid", dir)
			}
			suid := filepath.Join(dir, "suid")
			copyFile(t, "/bin/true", suid, 0o755)
			if err := os.Chown(suid, 0, 0); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(suid, os.ModeSetuid|0o755); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(suid, token)
			cmd.Dir = "/"
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
			return cmd
		},
		check: func(t *testing.T, dir, token string, cmd *exec.Cmd, e *Event) {
			x := &e.Exec
			if x.UID != 65534 || x.EUID != 0 || x.GID != 65534 || x.EGID != 65534 || x.Path != filepath.Join(dir, "suid") {
				t.Errorf("uid %d euid %d gid %d egid %d path %q: want 65534 0 65534 65534 and the setuid copy", x.UID, x.EUID, x.GID, x.EGID, x.Path)
			}
		},
	}, {
		name: "long argv",
		cmd: func(t *testing.T, dir, token string) *exec.Cmd {
			args := []string{token}
			for i := range 100 {
				args = append(args, fmt.Sprintf("%03d", i)+strings.Repeat("x", 96))
			}
			return exec.Command("/bin/true", args...)
		},
		check: func(t *testing.T, dir, token string, cmd *exec.Cmd, e *Event) {
			x := &e.Exec
			total := len(strings.Join(cmd.Args, "\x00")) + 1
			joined := strings.Join(x.Args, "\x00")
			if x.Flags != ArgsTruncated || int(x.ArgsBytes) != total || len(joined) != MaxArgsBytes ||
				joined != strings.Join(cmd.Args, "\x00")[:MaxArgsBytes] {
				t.Errorf("flags %v, ArgsBytes %d (want %d), %d args of %d bytes: want ArgsTruncated and the first %d bytes",
					x.Flags, x.ArgsBytes, total, len(x.Args), len(joined), MaxArgsBytes)
			}
		},
	}, {
		name: "cwd removed",
		cmd: func(t *testing.T, dir, token string) *exec.Cmd {
			gone := filepath.Join(dir, "gone")
			if err := os.Mkdir(gone, 0o755); err != nil {
				t.Fatal(err)
			}
			// The shell enters the directory, removes it, and execs.
			return exec.Command("/bin/sh", "-c", `cd "$1" && rmdir "$1" && exec /bin/true "$2"`, "sh", gone, token)
		},
		execs: 2,
		check: func(t *testing.T, dir, token string, cmd *exec.Cmd, e *Event) {
			x := &e.Exec
			if x.Cwd != filepath.Join(dir, "gone") || x.Flags != CwdDeleted|ImageReplaced {
				t.Errorf("cwd %q flags %v: want the removed directory, CwdDeleted|ImageReplaced (the shell's exec)", x.Cwd, x.Flags)
			}
		},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := publicDir(t)
			token := fmt.Sprintf("daemoneye-sensor-%d-%s", os.Getpid(), strings.ReplaceAll(tc.name, " ", "-"))
			cmd := tc.cmd(t, dir, token)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid := uint32(cmd.Process.Pid)
			var execs, exits int
			kept := collect(t, s, 20*time.Second, func(e *Event) bool {
				return e.PID == pid && (e.Kind == KindExit || e.Kind == KindExec && slices.Contains(e.Exec.Args, token))
			}, func(kept []Event) bool {
				switch kept[len(kept)-1].Kind {
				case KindExec:
					execs++
				case KindExit:
					exits++
				}
				return exits > 0
			})
			if err := cmd.Wait(); err != nil {
				t.Fatalf("%v: %v", cmd.Args[:1], err)
			}
			if want := max(tc.execs, 1); execs != want || len(kept) != want+1 || kept[want-1].Kind != KindExec {
				t.Fatalf("want %d exec events and then the exit, got %+v", want, kept)
			}
			tc.check(t, dir, token, cmd, &kept[len(kept)-2])
		})
	}
}

func readLoginUID(t *testing.T) uint32 {
	b, err := os.ReadFile("/proc/self/loginuid")
	if err != nil {
		return NoLoginUID
	}
	n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 32)
	if err != nil {
		t.Fatal(err)
	}
	return uint32(n)
}

func bootNow(t *testing.T) int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano()
}

// TestImageReplaced checks that an exec replacing the image of a process
// that had exec'd already (a shell's exec) is flagged ImageReplaced, and
// that the first exec after a fork is not, also for the child of a shell
// that was itself an image replacement.
func TestImageReplaced(t *testing.T) {
	s := live(t, Options{})
	for _, tc := range []struct {
		name string
		args []string // run with the token appended as the last argument
		// want lists, for each exec event whose argv holds the token (in
		// order), whether it must be flagged; pids says whether each is
		// the started process (true) or a child of it.
		want []bool
		own  []bool
	}{
		{"fork and exec", []string{"/bin/true"}, []bool{false}, []bool{true}},
		{"shell exec", []string{"/bin/sh", "-c", `exec /bin/true "$0"`}, []bool{false, true}, []bool{true, true}},
		{"exec twice", []string{"/bin/sh", "-c", `exec /bin/sh -c 'exec /bin/true "$0"' "$0"`},
			[]bool{false, true, true}, []bool{true, true, true}},
		{"child of a replaced image", []string{"/bin/sh", "-c", `exec /bin/sh -c '/bin/true "$0"; exit 0' "$0"`},
			[]bool{false, true, false}, []bool{true, true, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			token := fmt.Sprintf("daemoneye-sensor-%d-replaced-%s", os.Getpid(), strings.ReplaceAll(tc.name, " ", "-"))
			cmd := exec.Command(tc.args[0], append(tc.args[1:], token)...)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid := uint32(cmd.Process.Pid)
			kept := collect(t, s, 20*time.Second, func(e *Event) bool {
				return e.Kind == KindExit && e.PID == pid || e.Kind == KindExec && slices.Contains(e.Exec.Args, token)
			}, func(kept []Event) bool { return kept[len(kept)-1].Kind == KindExit })
			if err := cmd.Wait(); err != nil {
				t.Fatalf("%v: %v", cmd.Args, err)
			}
			execs := kept[:len(kept)-1]
			if len(execs) != len(tc.want) {
				t.Fatalf("got %d exec events, want %d: %+v", len(execs), len(tc.want), execs)
			}
			for i, e := range execs {
				if got := e.Exec.Flags&ImageReplaced != 0; got != tc.want[i] || (e.PID == pid) != tc.own[i] {
					t.Errorf("exec %d of %q (pid %d, started %d): flags %v, want ImageReplaced %v, own pid %v",
						i, e.Exec.Args, e.PID, pid, e.Exec.Flags, tc.want[i], tc.own[i])
				}
			}
		})
	}
}

// TestExit checks exit codes and signals against what wait(2) says.
func TestExit(t *testing.T) {
	s := live(t, Options{})
	for _, tc := range []struct {
		script       string
		code, signal int
	}{
		{"exit 0", 0, 0},
		{"exit 7", 7, 0},
		{"exit 255", 255, 0},
		{"kill -TERM $$", 0, int(syscall.SIGTERM)},
		{"kill -KILL $$", 0, int(syscall.SIGKILL)},
	} {
		t.Run(tc.script, func(t *testing.T) {
			cmd := exec.Command("/bin/sh", "-c", tc.script)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			pid := uint32(cmd.Process.Pid)
			kept := collect(t, s, 20*time.Second, func(e *Event) bool {
				return e.Kind == KindExit && e.PID == pid
			}, func([]Event) bool { return true })
			_ = cmd.Wait()
			ws := cmd.ProcessState.Sys().(syscall.WaitStatus)
			x := &kept[0].Exit
			if x.Code() != tc.code || x.Signal() != tc.signal || x.CoreDumped() || x.Status != uint32(ws) {
				t.Errorf("exit status %#x (code %d signal %d), wait status %#x: want code %d signal %d",
					x.Status, x.Code(), x.Signal(), uint32(ws), tc.code, tc.signal)
			}
			if kept[0].TID != pid || x.Start == 0 {
				t.Errorf("exit of tid %d start %v: want the leader %d and its start", kept[0].TID, x.Start, pid)
			}
		})
	}
}

// TestFork checks that a shell's fork is reported with parent and child,
// followed by the child's exec and exit, and that the threads of a
// process are not reported as processes.
func TestFork(t *testing.T) {
	s := live(t, Options{})
	token := fmt.Sprintf("daemoneye-sensor-%d-fork", os.Getpid())
	cmd := exec.Command("/bin/sh", "-c", `/bin/true "$1" & wait`, "sh", token)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	shell := uint32(cmd.Process.Pid)
	self := uint32(os.Getpid())
	var child uint32
	var forks, execs, exits int
	collect(t, s, 20*time.Second, func(e *Event) bool {
		switch e.Kind {
		case KindFork:
			if e.PID == self && e.Fork.ChildPID == shell {
				return true // the test forked the shell
			}
			if e.PID == shell && child == 0 {
				child = e.Fork.ChildPID
				return true
			}
			if e.PID == shell || e.Fork.ChildPID == shell {
				t.Errorf("unexpected fork %+v", *e)
			}
		case KindExec:
			if e.PID == shell || child != 0 && e.PID == child {
				return true
			}
		case KindExit:
			if e.PID == shell || child != 0 && e.PID == child {
				return true
			}
		}
		return false
	}, func(kept []Event) bool {
		e := &kept[len(kept)-1]
		switch e.Kind {
		case KindFork:
			forks++
			if e.PID == shell && e.Fork.ChildStart == 0 {
				t.Errorf("fork without the child's start time: %+v", *e)
			}
		case KindExec:
			execs++
			if e.PID == child && (e.Exec.PPID != shell || !slices.Equal(e.Exec.Args, []string{"/bin/true", token})) {
				t.Errorf("child exec %+v: want parent %d, argv /bin/true %s", e.Exec, shell, token)
			}
			if e.PID == shell && e.Exec.PPID != self {
				t.Errorf("shell exec %+v: want parent %d", e.Exec, self)
			}
		case KindExit:
			exits++
		}
		return forks == 2 && execs == 2 && exits == 2
	})
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestNoForks checks that with Options.NoForks no fork event comes, while
// the exec and the exit of the same process do.
func TestNoForks(t *testing.T) {
	s := live(t, Options{NoForks: true})
	token := fmt.Sprintf("daemoneye-sensor-%d-noforks", os.Getpid())
	cmd := exec.Command("/bin/true", token)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid, self := uint32(cmd.Process.Pid), uint32(os.Getpid())
	var forks int
	collect(t, s, 20*time.Second, func(e *Event) bool {
		if e.Kind == KindFork && e.PID == self {
			forks++
		}
		return e.PID == pid && e.Kind != KindFork
	}, func(kept []Event) bool {
		return len(kept) == 2 // the exec and the exit
	})
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	if forks != 0 {
		t.Errorf("%d fork events from this process with NoForks", forks)
	}
}

// TestThreadsAreNotProcesses checks that a process whose threads start and
// end yields no fork or exit events for the threads: the test binary's own
// runtime starts threads; a helper that locks goroutines to new threads
// makes sure some do while the sensor runs.
func TestThreadsAreNotProcesses(t *testing.T) {
	s := live(t, Options{})
	self := uint32(os.Getpid())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			runtime.LockOSThread() // a goroutine that exits locked ends its thread
		})
	}
	wg.Wait()
	// A marker process ends the collection: everything before it in the
	// ring buffer has been seen.
	cmd := exec.Command("/bin/true", "marker")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	marker := uint32(cmd.Process.Pid)
	collect(t, s, 20*time.Second, func(e *Event) bool {
		if e.Kind == KindFork && e.PID == self && e.Fork.ChildPID != marker {
			t.Errorf("a thread of this process reported as a fork: %+v", *e)
		}
		if e.Kind == KindExit && e.PID == self {
			t.Errorf("a thread of this process reported as an exit: %+v", *e)
		}
		return e.Kind == KindExit && e.PID == marker
	}, func([]Event) bool { return true })
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}

// TestLossCounted fills a one-page ring buffer that nobody reads and
// requires the kernel to count what did not fit; reading then resumes.
func TestLossCounted(t *testing.T) {
	s := live(t, Options{RingBytes: os.Getpagesize()})
	if st := s.Stats(); st.Lost != 0 {
		t.Fatalf("lost %d before anything ran", st.Lost)
	}
	// 4 shells of 50 execs: far more than a page of exec events.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if err := exec.Command("/bin/sh", "-c", `i=0; while [ $i -lt 50 ]; do /bin/true flood; i=$((i+1)); done`).Run(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	st := s.Stats()
	if st.LostExec == 0 || st.Lost != st.LostExec+st.LostFork+st.LostExit {
		t.Fatalf("stats %+v: want exec events lost and counted", st)
	}
	// What did fit is still delivered.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := s.Read(ctx); err != nil {
		t.Fatalf("Read after the loss: %v", err)
	}
	t.Logf("%+v", st)
}

// TestCloseInterruptsRun closes the Sensor while Run waits for events.
func TestCloseInterruptsRun(t *testing.T) {
	s := live(t, Options{})
	started := make(chan struct{})
	errc := make(chan error, 1)
	go func() {
		var once sync.Once
		errc <- s.Run(context.Background(), func(*Event) error {
			once.Do(func() { close(started) })
			return nil
		})
	}()
	// Some event comes soon on a live system; start one to be sure.
	if err := exec.Command("/bin/true").Run(); err != nil {
		t.Fatal(err)
	}
	<-started
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("Run after Close: %v, want ErrClosed", err)
	}
	if _, err := s.Read(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("Read after Close: %v, want ErrClosed", err)
	}
	if st := s.Stats(); st.Events == 0 {
		t.Errorf("stats after Close: %+v, want the events delivered", st)
	}
}

// TestRunBatchesCaughtUp checks that RunBatches calls caughtUp once it has
// handed over what the ring buffer held: the exit of a process is in a
// batch that is completed without another event after it.
func TestRunBatchesCaughtUp(t *testing.T) {
	s := live(t, Options{NoForks: true})
	cmd := exec.Command("/bin/true", fmt.Sprintf("daemoneye-sensor-%d-batch", os.Getpid()))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := uint32(cmd.Process.Pid)
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var pending, batches int
	exited := false
	done := errors.New("done")
	err := s.RunBatches(ctx, func(e *Event) error {
		pending++
		exited = exited || e.Kind == KindExit && e.PID == pid
		return nil
	}, func() error {
		if pending == 0 {
			t.Error("caughtUp without an event since the last call")
		}
		pending = 0
		batches++
		if exited {
			return done
		}
		return nil
	})
	if err != done {
		t.Fatalf("RunBatches: %v, want the batch with the exit of %d completed", err, pid)
	}
	t.Logf("%d batches", batches)
}

// TestRunContext cancels Run's context from its callback and while it
// waits: Run returns context.Canceled both times, and the Sensor can run
// again.
func TestRunContext(t *testing.T) {
	s := live(t, Options{})
	for range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		if err := exec.Command("/bin/true").Run(); err != nil {
			t.Fatal(err)
		}
		err := s.Run(ctx, func(*Event) error {
			cancel()
			return nil
		})
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run: %v, want context.Canceled", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Read(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read with a cancelled context: %v", err)
	}
}

// TestUnprivileged opens the sensor as nobody, in a copy of this test
// binary: it must fail with ErrUnsupported and say what is needed.
func TestUnprivileged(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a helper as nobody")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := publicDir(t)
	bin := filepath.Join(dir, "sensor.test")
	copyFile(t, self, bin, 0o755)
	cmd := exec.Command(bin)
	cmd.Dir = "/"
	cmd.Env = append(os.Environ(), helperEnv+"=open")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper as nobody: %v: %s", err, out)
	}
	t.Logf("as nobody: %s", strings.TrimSpace(string(out)))
}

func TestOpenRingBytes(t *testing.T) {
	for _, n := range []int{1, 4095, 3 * 4096, -4096} {
		if _, err := Open(Options{RingBytes: n}); !errors.Is(err, ErrRingBytes) {
			t.Errorf("Open(RingBytes: %d): %v, want ErrRingBytes", n, err)
		}
	}
}

// TestRunIdleDeadline detaches the programs, so that no event can come,
// drains the ring buffer, and requires Run to return at its context's
// deadline while it waits for an event that never comes.
func TestRunIdleDeadline(t *testing.T) {
	s := live(t, Options{})
	for _, l := range s.links {
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
	s.links = nil
	// Drain what came before the detach, if anything.
	if s.rd.AvailableBytes() > 0 {
		ctx, cancel := context.WithCancel(context.Background())
		err := s.Run(ctx, func(*Event) error {
			if s.rd.AvailableBytes() == 0 {
				cancel()
			}
			return nil
		})
		cancel()
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("draining: %v", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := s.Run(ctx, func(e *Event) error {
		return fmt.Errorf("an event after the programs were detached: %+v", *e)
	}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run: %v, want context.DeadlineExceeded", err)
	}
}

// TestWakeupEveryEvent runs the sensor with a kernel wakeup per event (no
// polling): events still arrive, and promptly.
func TestWakeupEveryEvent(t *testing.T) {
	s := live(t, Options{Wakeup: -1})
	if s.poll != 0 {
		t.Fatalf("poll %v with Wakeup -1", s.poll)
	}
	cmd := exec.Command("/bin/true", "wakeup-every-event")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := uint32(cmd.Process.Pid)
	collect(t, s, 20*time.Second, func(e *Event) bool {
		return e.Kind == KindExit && e.PID == pid
	}, func([]Event) bool { return true })
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
}
