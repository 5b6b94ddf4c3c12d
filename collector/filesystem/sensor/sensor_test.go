//go:build linux

package sensor

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// live returns a Sensor watching watches, or skips the test when this
// process cannot load BPF programs (not root, no BTF); CI runs as root.
func live(t testing.TB, watches []Watch) *Sensor {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the eBPF filesystem sensor needs root (or CAP_BPF and CAP_PERFMON): run go test as root to test it")
	}
	if _, err := os.Stat(kernelBTF); err != nil {
		t.Skipf("the eBPF filesystem sensor needs kernel BTF (%v)", err)
	}
	s, err := Open(Options{Watches: watches, Wakeup: time.Millisecond})
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

// collect runs s until want events under dir were seen (or the deadline),
// and returns the events under dir, copied.
func collect(t *testing.T, s *Sensor, dir string, want int) []Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got []Event
	err := s.Run(ctx, func(e *Event) error {
		if strings.HasPrefix(string(e.Path), dir+"/") || string(e.Path) == dir {
			got = append(got, e.Clone())
			if len(got) >= want {
				return errDone
			}
		}
		return nil
	})
	if err != errDone {
		t.Fatalf("Run: %v, with %d of %d events: %v", err, len(got), want, summary(got))
	}
	return got
}

func summary(es []Event) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Op.String()+" "+string(e.Path))
	}
	return out
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestOps makes one of each operation in a watched directory and checks
// each event: operation, path, process and the operation's own fields.
func TestOps(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	must(t, err)
	must(t, os.WriteFile(dir+"/secret", []byte("k"), 0o600)) // before Open: not reported
	must(t, os.WriteFile(dir+"/existing", []byte("k"), 0o644))
	s := live(t, []Watch{{Path: dir, Flags: WatchWrites}, {Path: dir + "/secret", Flags: WatchReads}})
	exe, err := os.Executable()
	must(t, err)
	exe, err = filepath.EvalSymlinks(exe)
	must(t, err)

	type check struct {
		op   Op
		path string
		ok   func(*Event) bool
	}
	checks := []check{}
	step := func(op Op, path string, ok func(*Event) bool, do func() error) {
		must(t, do())
		checks = append(checks, check{op, path, ok})
	}
	step(OpCreate, dir+"/new", func(e *Event) bool { return e.Mode&unix.S_IFMT == unix.S_IFREG && e.Ino != 0 },
		func() error { return os.WriteFile(dir+"/new", []byte("x"), 0o644) })
	step(OpOpenWrite, dir+"/existing", nil, func() error {
		f, err := os.OpenFile(dir+"/existing", os.O_WRONLY|os.O_APPEND, 0)
		if err == nil {
			f.Close()
		}
		return err
	})
	step(OpTruncate, dir+"/existing", func(e *Event) bool { return e.OpenFlags&unix.O_TRUNC != 0 },
		func() error { return os.WriteFile(dir+"/existing", []byte("y"), 0o644) })
	step(OpTruncate, dir+"/new", nil, func() error { return unix.Truncate(dir+"/new", 0) })
	step(OpRead, dir+"/secret", func(e *Event) bool { return e.Match == WatchReads },
		func() error { _, err := os.ReadFile(dir + "/secret"); return err })
	step(OpChmod, dir+"/new", func(e *Event) bool { return e.NewMode == 0o4755 && e.SetUID() && !e.SetGID() },
		func() error { return unix.Chmod(dir+"/new", 0o4755) })
	step(OpChown, dir+"/new", func(e *Event) bool { return e.NewUID == 1234 && e.NewGID == 5678 },
		func() error { return unix.Chown(dir+"/new", 1234, 5678) })
	step(OpRename, dir+"/renamed", func(e *Event) bool { return string(e.OldPath) == dir+"/new" },
		func() error { return os.Rename(dir+"/new", dir+"/renamed") })
	step(OpLink, dir+"/hard", func(e *Event) bool { return string(e.OldPath) == dir+"/renamed" },
		func() error { return os.Link(dir+"/renamed", dir+"/hard") })
	step(OpSymlink, dir+"/soft", func(e *Event) bool { return string(e.Target) == "/etc/passwd" },
		func() error { return os.Symlink("/etc/passwd", dir+"/soft") })
	step(OpUnlink, dir+"/hard", nil, func() error { return os.Remove(dir + "/hard") })
	// Relative to a directory descriptor, and through "..".
	step(OpUnlink, dir+"/soft", nil, func() error {
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Unlinkat(fd, "soft", 0)
	})
	step(OpChmod, dir+"/renamed", nil, func() error { return unix.Chmod(dir+"/../"+filepath.Base(dir)+"/renamed", 0o600) })
	step(OpChmod, dir+"/renamed", func(e *Event) bool { return e.NewMode == 0o2700 && e.SetGID() && e.Ino != 0 }, func() error {
		f, err := os.Open(dir + "/renamed")
		if err != nil {
			return err
		}
		defer f.Close()
		return unix.Fchmod(int(f.Fd()), 0o2700)
	})

	got := collect(t, s, dir, len(checks))
	for i, c := range checks {
		e := &got[i]
		if e.Op != c.op || string(e.Path) != c.path {
			t.Errorf("event %d: %v %s, want %v %s (all: %v)", i, e.Op, e.Path, c.op, c.path, summary(got))
			continue
		}
		if e.PID != uint32(os.Getpid()) || string(e.Exe) != exe || e.UID != 0 || e.Start == 0 || len(e.Comm) == 0 {
			t.Errorf("%v %s: pid %d exe %q uid %d start %v comm %q, want pid %d exe %q", e.Op, e.Path, e.PID, e.Exe, e.UID, e.Start, e.Comm, os.Getpid(), exe)
		}
		if c.ok != nil && !c.ok(e) {
			t.Errorf("%v %s: fields wrong: %+v", e.Op, e.Path, *e)
		}
	}
	if st := s.Stats(); st.Lost != 0 || st.Malformed != 0 || st.Matched < uint64(len(checks)) {
		t.Errorf("stats %+v", st)
	}
}

// TestNames watches names that do not exist yet and a file replaced by a
// rename: both stay watched without a Resolve.
func TestNames(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	must(t, err)
	must(t, os.Mkdir(dir+"/home", 0o755))
	s := live(t, []Watch{{Path: dir + "/home/.bashrc", Flags: WatchWrites}, {Path: dir + "/home/shadow", Flags: WatchReads}})
	must(t, os.WriteFile(dir+"/home/other", []byte("x"), 0o644)) // not watched
	must(t, os.WriteFile(dir+"/home/.bashrc", []byte("x"), 0o644))
	must(t, os.WriteFile(dir+"/home/nshadow", []byte("x"), 0o600))
	must(t, os.Rename(dir+"/home/nshadow", dir+"/home/shadow")) // not a read
	_, err = os.ReadFile(dir + "/home/shadow")
	must(t, err)
	got := collect(t, s, dir, 2)
	if got[0].Op != OpCreate || string(got[0].Path) != dir+"/home/.bashrc" ||
		got[1].Op != OpRead || string(got[1].Path) != dir+"/home/shadow" {
		t.Errorf("got %v", summary(got))
	}
}

// TestUnwatchedStaysInKernel makes heavy file activity in a directory
// nothing watches: the kernel examines every call and sends none of them.
func TestUnwatchedStaysInKernel(t *testing.T) {
	watched := t.TempDir()
	busy := t.TempDir()
	s := live(t, []Watch{{Path: watched, Flags: WatchWrites | WatchReads}})
	before := s.Stats()
	const n = 2000
	for i := range n {
		p := filepath.Join(busy, "f"+string(rune('a'+i%26))+strings.Repeat("x", i%7))
		must(t, os.WriteFile(p, []byte("data"), 0o644))
		_, err := os.ReadFile(p)
		must(t, err)
		must(t, unix.Chmod(p, 0o700)) // a setuid bit would be reported anywhere
		must(t, os.Rename(p, p+".r"))
		must(t, os.Remove(p+".r"))
	}
	after := s.Stats()
	if calls := after.Calls - before.Calls; calls < 5*n {
		t.Errorf("the kernel examined %d calls, want at least %d: is the program attached?", calls, 5*n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	err := s.Run(ctx, func(e *Event) error {
		if strings.HasPrefix(string(e.Path), busy) {
			t.Errorf("an event from the unwatched directory: %v %s", e.Op, e.Path)
		}
		return nil
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatal(err)
	}
	// Other processes on the machine may touch the default-free watch set
	// only through the temp dir, which nobody else writes.
	if m := after.Matched - before.Matched; m != 0 {
		t.Errorf("%d calls matched in the kernel, want 0", m)
	}
}

func TestWatchValidate(t *testing.T) {
	for _, w := range []Watch{
		{Path: "etc", Flags: WatchWrites},
		{Path: "/", Flags: WatchWrites},
		{Path: "/etc/", Flags: WatchWrites},
		{Path: "/etc", Flags: 0},
		{Path: "/etc", Flags: 8},
		{Path: "/etc/[x", Flags: WatchReads},
		{Path: "/etc/" + strings.Repeat("n", 64), Flags: WatchReads},
	} {
		if _, err := Open(Options{Watches: []Watch{w}}); !errors.Is(err, ErrWatch) {
			t.Errorf("%+v: %v, want ErrWatch", w, err)
		}
	}
	for _, w := range DefaultWatches() {
		if _, _, err := w.validate(); err != nil {
			t.Error(err)
		}
	}
}

// TestResolveDefaults resolves the default sets on this machine.
func TestResolveDefaults(t *testing.T) {
	s := live(t, nil)
	res, err := s.Resolve()
	if err != nil {
		t.Fatal(err)
	}
	if res.Entries == 0 || res.Names == 0 || res.Prefixes == 0 || res.Skipped != 0 {
		t.Errorf("%+v", res)
	}
	t.Logf("%+v", res)
}

func TestCloseInterruptsRun(t *testing.T) {
	s := live(t, []Watch{{Path: t.TempDir(), Flags: WatchWrites}})
	done := make(chan error)
	go func() { done <- s.Run(context.Background(), func(*Event) error { return nil }) }()
	must(t, s.Close())
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: %v", err)
	}
	if _, err := s.Resolve(); !errors.Is(err, ErrClosed) {
		t.Errorf("Resolve after Close: %v", err)
	}
}

// TestUnresolved: an absolute path with ".." that leads out of the watched
// directory reaches user space as unresolved and is dropped; one that
// leads into it is reported.
func TestUnresolved(t *testing.T) {
	dir, err := filepath.EvalSymlinks(t.TempDir())
	must(t, err)
	other, err := filepath.EvalSymlinks(t.TempDir())
	must(t, err)
	must(t, os.WriteFile(dir+"/a", nil, 0o644))
	must(t, os.WriteFile(other+"/b", nil, 0o644))
	s := live(t, []Watch{{Path: dir, Flags: WatchWrites}})
	must(t, unix.Chmod(dir+"/../"+filepath.Base(other)+"/b", 0o600)) // out of it
	must(t, unix.Chmod(other+"/../"+filepath.Base(dir)+"/a", 0o600)) // into it
	got := collect(t, s, dir, 1)
	if got[0].Op != OpChmod || string(got[0].Path) != dir+"/a" || got[0].Match != WatchWrites {
		t.Errorf("got %+v", got[0])
	}
	if st := s.Stats(); st.Unresolved != 1 {
		t.Errorf("Unresolved %d, want 1", st.Unresolved)
	}
}

// TestSetIDAnywhere: a chmod that sets the setuid or setgid bit is
// reported outside the watched sets; other chmods there are not.
func TestSetIDAnywhere(t *testing.T) {
	watched := t.TempDir()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	must(t, err)
	must(t, os.WriteFile(dir+"/x", nil, 0o755))
	s := live(t, []Watch{{Path: watched, Flags: WatchWrites}})
	must(t, unix.Chmod(dir+"/x", 0o700)) // not reported
	must(t, unix.Chmod(dir+"/x", 0o4755))
	f, err := os.Open(dir + "/x")
	must(t, err)
	must(t, unix.Fchmod(int(f.Fd()), 0o2755))
	f.Close()
	got := collect(t, s, dir, 2)
	if got[0].Op != OpChmod || got[0].NewMode != 0o4755 || !got[0].SetUID() ||
		got[1].Op != OpChmod || got[1].NewMode != 0o2755 || !got[1].SetGID() {
		t.Errorf("got %+v", got)
	}
}
