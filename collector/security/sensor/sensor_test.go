//go:build linux

package sensor

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"go.uber.org/goleak"
	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary a helper process instead of running the
// tests (see TestMain).
const helperEnv = "DAEMONEYE_SECURITY_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		goleak.VerifyTestMain(m)
	case "setresuid":
		// One thread changes its credentials (the raw call: Go's
		// Setresuid would change every thread's).
		runtime.LockOSThread()
		if _, _, errno := unix.RawSyscall(unix.SYS_SETRESUID, 4242, 4242, 4242); errno != 0 {
			fmt.Fprintln(os.Stderr, "setresuid:", errno)
			os.Exit(2)
		}
		os.Exit(0)
	case "bindproc":
		// In a new mount namespace, bind-mount a directory over
		// /proc/<pid>, then unmount it.
		runtime.LockOSThread()
		dir, target := os.Args[1], os.Args[2]
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			fmt.Fprintln(os.Stderr, "unshare:", err)
			os.Exit(2)
		}
		if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
			fmt.Fprintln(os.Stderr, "mount private:", err)
			os.Exit(3)
		}
		if err := unix.Mount(dir, target, "", unix.MS_BIND, ""); err != nil {
			fmt.Fprintln(os.Stderr, "bind mount:", err)
			os.Exit(4)
		}
		if err := unix.Unmount(target, unix.MNT_DETACH); err != nil {
			fmt.Fprintln(os.Stderr, "umount:", err)
			os.Exit(5)
		}
		os.Exit(0)
	default:
		os.Exit(9)
	}
}

// live returns a Sensor for a test that needs the kernel, or skips the test
// when the process is not root. As root a failure to open fails the test:
// every live test fails when the sensor is off.
func live(t testing.TB, opts Options) *Sensor {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the eBPF security sensor needs root: run go test as root to test it")
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

// snapshot is an Event whose byte slices are its own.
func snapshot(e *Event) Event {
	c := *e
	c.Comm = bytes.Clone(e.Comm)
	c.Module.Name = bytes.Clone(e.Module.Name)
	c.Memfd.Name = bytes.Clone(e.Memfd.Name)
	c.BPF.Name = bytes.Clone(e.BPF.Name)
	c.Mount.Source = bytes.Clone(e.Mount.Source)
	c.Mount.FSType = bytes.Clone(e.Mount.FSType)
	c.Mount.Target = bytes.Clone(e.Mount.Target)
	return c
}

var errFound = errors.New("found")

// await reads s until match accepts an event, and returns it; it fails the
// test after 10 s (only a failing test waits that long). The triggering
// calls happen before: the ring buffer keeps their events.
func await(t *testing.T, s *Sensor, what string, match func(*Event) bool) Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got Event
	var seen []string
	err := s.Run(ctx, func(e *Event) error {
		if match(e) {
			got = snapshot(e)
			return errFound
		}
		if len(seen) < 20 {
			seen = append(seen, fmt.Sprintf("%s pid=%d comm=%s", e.Kind, e.PID, e.Comm))
		}
		return nil
	})
	if err != errFound {
		t.Fatalf("no %s event: Run: %v; other events: %v", what, err, seen)
	}
	return got
}

// checkHeader checks what every event carries about its caller.
func checkHeader(t *testing.T, e Event, kind Kind, pid int) {
	t.Helper()
	if e.Kind != kind || e.PID != uint32(pid) || e.TID == 0 || e.CgroupID == 0 || e.Start == 0 || len(e.Comm) == 0 {
		t.Errorf("header: %+v, want kind %s, pid %d and non-zero tid, cgroup, start, comm", e, kind, pid)
	}
	if d := time.Since(e.Time); d < 0 || d > time.Minute {
		t.Errorf("Time %v is %v from now", e.Time, d)
	}
}

// sleeper starts a child that sleeps until the test ends.
func sleeper(t *testing.T) *exec.Cmd {
	t.Helper()
	c := exec.Command("sleep", "60")
	if err := c.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	return c
}

// helper runs this test binary as the helper named mode.
func helper(t *testing.T, mode string, args ...string) int {
	t.Helper()
	c := exec.Command(os.Args[0], args...)
	c.Env = append(os.Environ(), helperEnv+"="+mode)
	out, err := c.CombinedOutput()
	if err != nil {
		t.Fatalf("helper %s: %v: %s", mode, err, out)
	}
	return c.Process.Pid
}

func TestPtraceAttachAndPoke(t *testing.T) {
	s := live(t, Options{})
	child := sleeper(t)
	pid := child.Process.Pid

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.PtraceAttach(pid); err != nil {
		t.Fatal(err)
	}
	var ws unix.WaitStatus
	if _, err := unix.Wait4(pid, &ws, 0, nil); err != nil {
		t.Fatal(err)
	}
	addr := firstMapping(t, pid)
	word := make([]byte, 8)
	if _, err := unix.PtracePeekData(pid, addr, word); err != nil {
		t.Fatal(err)
	}
	if _, err := unix.PtracePokeData(pid, addr, word); err != nil {
		t.Fatal(err)
	}
	if err := unix.PtraceDetach(pid); err != nil {
		t.Fatal(err)
	}

	e := await(t, s, "PTRACE_ATTACH", func(e *Event) bool {
		return e.Kind == KindPtrace && e.Ptrace.TargetPID == uint32(pid) && e.Ptrace.Request == PtraceAttach
	})
	checkHeader(t, e, KindPtrace, os.Getpid())
	if e.Result != 0 {
		t.Errorf("attach result %d", e.Result)
	}
	e = await(t, s, "PTRACE_POKEDATA", func(e *Event) bool {
		return e.Kind == KindPtrace && e.Ptrace.TargetPID == uint32(pid) && e.Ptrace.Request == PtracePokeData
	})
	checkHeader(t, e, KindPtrace, os.Getpid())
	if e.Ptrace.Addr != uint64(addr) || e.Result != 0 {
		t.Errorf("poke: addr %#x result %d, want %#x and 0", e.Ptrace.Addr, e.Result, addr)
	}
}

func TestPtraceSeize(t *testing.T) {
	s := live(t, Options{})
	child := sleeper(t)
	pid := child.Process.Pid
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := unix.PtraceSeize(pid); err != nil {
		t.Fatal(err)
	}
	// A seized tracee runs on; detaching needs it stopped, so the test
	// ends the child instead (its cleanup kills it).
	e := await(t, s, "PTRACE_SEIZE", func(e *Event) bool {
		return e.Kind == KindPtrace && e.Ptrace.TargetPID == uint32(pid) && e.Ptrace.Request == PtraceSeize
	})
	checkHeader(t, e, KindPtrace, os.Getpid())
	if e.Result != 0 {
		t.Errorf("seize result %d", e.Result)
	}
	// A refused attach (the tracee is already traced) is reported with its
	// error.
	if err := unix.PtraceAttach(pid); err == nil {
		t.Fatal("a second attach succeeded")
	}
	e = await(t, s, "refused PTRACE_ATTACH", func(e *Event) bool {
		return e.Kind == KindPtrace && e.Ptrace.TargetPID == uint32(pid) && e.Ptrace.Request == PtraceAttach
	})
	if e.Result != -int64(unix.EPERM) {
		t.Errorf("refused attach result %d, want %d", e.Result, -int64(unix.EPERM))
	}
}

// firstMapping returns the start of pid's first mapping.
func firstMapping(t *testing.T, pid int) uintptr {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		t.Fatal("no mapping")
	}
	start, _, _ := strings.Cut(sc.Text(), "-")
	a, err := strconv.ParseUint(start, 16, 64)
	if err != nil {
		t.Fatal(err)
	}
	return uintptr(a)
}

func TestMemfdCreate(t *testing.T) {
	s := live(t, Options{})
	fd, err := unix.MemfdCreate("daemoneye-test-memfd", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	e := await(t, s, "memfd_create", func(e *Event) bool {
		return e.Kind == KindMemfd && string(e.Memfd.Name) == "daemoneye-test-memfd"
	})
	checkHeader(t, e, KindMemfd, os.Getpid())
	if e.Memfd.Flags != unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING || e.Result != int64(fd) {
		t.Errorf("memfd: flags %#x result %d, want %#x and %d", e.Memfd.Flags, e.Result,
			unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING, fd)
	}
}

func TestSetresuidInChild(t *testing.T) {
	s := live(t, Options{})
	pid := helper(t, "setresuid")
	e := await(t, s, "credentials", func(e *Event) bool {
		return e.Kind == KindCredentials && e.PID == uint32(pid)
	})
	checkHeader(t, e, KindCredentials, pid)
	c := e.Creds
	if c.Syscall != SysSetresuid || c.Old.UID != 0 || c.Old.EUID != 0 || c.New.UID != 4242 || c.New.EUID != 4242 ||
		c.New.GID != c.Old.GID || e.UID != 4242 || e.Result != 0 {
		t.Errorf("creds: %+v (uid %d, result %d)", c, e.UID, e.Result)
	}
	// Root's capabilities go when all its uids leave 0.
	if c.Old.CapEffective == 0 || c.New.CapEffective != 0 || c.New.CapPermitted != 0 {
		t.Errorf("capabilities: old %#x, new effective %#x permitted %#x", c.Old.CapEffective, c.New.CapEffective, c.New.CapPermitted)
	}
}

// loadProg loads a trivial socket filter named name.
func loadProg(t *testing.T, name string) {
	t.Helper()
	p, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: name, Type: ebpf.SocketFilter, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 0), asm.Return()}})
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
}

func TestBPFProgLoad(t *testing.T) {
	// The excluded pid is another one (1, init): this process's loads are
	// reported.
	s := live(t, Options{ExcludeBPF: []uint32{1}})
	loadProg(t, "de_test_prog")
	e := await(t, s, "bpf", func(e *Event) bool {
		return e.Kind == KindBPF && string(e.BPF.Name) == "de_test_prog"
	})
	checkHeader(t, e, KindBPF, os.Getpid())
	if e.BPF.ProgType != uint32(ebpf.SocketFilter) || e.Result <= 0 {
		t.Errorf("bpf: type %d result %d", e.BPF.ProgType, e.Result)
	}

	// Once excluded, this process's loads are not: a memfd marks the end.
	if err := s.ExcludeBPF(uint32(os.Getpid())); err != nil {
		t.Fatal(err)
	}
	loadProg(t, "de_test_excl")
	fd, err := unix.MemfdCreate("daemoneye-test-marker", 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	await(t, s, "marker", func(e *Event) bool {
		if e.Kind == KindBPF && string(e.BPF.Name) == "de_test_excl" {
			t.Errorf("an excluded process's BPF load was reported: %+v", e)
		}
		return e.Kind == KindMemfd && string(e.Memfd.Name) == "daemoneye-test-marker"
	})
}

func TestBindMountOverProcPID(t *testing.T) {
	s := live(t, Options{})
	child := sleeper(t)
	dir := t.TempDir()
	target := fmt.Sprintf("/proc/%d", child.Process.Pid)
	pid := helper(t, "bindproc", dir, target)

	e := await(t, s, "unshare", func(e *Event) bool { return e.Kind == KindNamespace && e.PID == uint32(pid) })
	checkHeader(t, e, KindNamespace, pid)
	if e.Namespace.Syscall != SysUnshare || e.Namespace.Flags != unix.CLONE_NEWNS || e.Namespace.FD != -1 || e.Result != 0 {
		t.Errorf("unshare: %+v result %d", e.Namespace, e.Result)
	}
	e = await(t, s, "bind mount", func(e *Event) bool {
		return e.Kind == KindMount && e.PID == uint32(pid) && e.Mount.Flags&MsBind != 0
	})
	checkHeader(t, e, KindMount, pid)
	if e.Mount.Syscall != SysMount || string(e.Mount.Source) != dir || string(e.Mount.Target) != target ||
		e.Flags&BindOverProcPID == 0 || e.Result != 0 {
		t.Errorf("bind mount: %+v flags %#x result %d", e.Mount, e.Flags, e.Result)
	}
	e = await(t, s, "umount", func(e *Event) bool {
		return e.Kind == KindMount && e.PID == uint32(pid) && e.Mount.Syscall == SysUmount2
	})
	if string(e.Mount.Target) != target || e.Mount.Flags != unix.MNT_DETACH || e.Flags&BindOverProcPID != 0 || e.Result != 0 {
		t.Errorf("umount: %+v flags %#x result %d", e.Mount, e.Flags, e.Result)
	}
}

func TestSetns(t *testing.T) {
	s := live(t, Options{})
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	fd, err := unix.Open("/proc/thread-self/ns/uts", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	// Into the namespace it is already in: allowed, and changes nothing.
	if err := unix.Setns(fd, unix.CLONE_NEWUTS); err != nil {
		t.Fatal(err)
	}
	e := await(t, s, "setns", func(e *Event) bool {
		return e.Kind == KindNamespace && e.PID == uint32(os.Getpid()) && e.Namespace.Syscall == SysSetns
	})
	checkHeader(t, e, KindNamespace, os.Getpid())
	if e.Namespace.FD != int32(fd) || e.Namespace.Flags != unix.CLONE_NEWUTS || e.Result != 0 {
		t.Errorf("setns: %+v result %d", e.Namespace, e.Result)
	}
}

func TestProcMemWrite(t *testing.T) {
	s := live(t, Options{})
	child := sleeper(t)
	pid := child.Process.Pid
	// Own memory first: not reported.
	self, err := os.OpenFile("/proc/self/mem", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	self.Close()
	f, err := os.OpenFile(fmt.Sprintf("/proc/%d/mem", pid), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	addr := firstMapping(t, pid)
	buf := make([]byte, 1)
	r, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.ReadAt(buf, int64(addr)); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := f.WriteAt(buf, int64(addr)); err != nil {
		t.Fatal(err)
	}
	fd := int(f.Fd())
	f.Close()
	e := await(t, s, "procmem open", func(e *Event) bool {
		return e.Kind == KindProcMem && e.PID == uint32(os.Getpid())
	})
	checkHeader(t, e, KindProcMem, os.Getpid())
	if e.ProcMem.Syscall != SysOpenat || e.ProcMem.TargetPID != uint32(pid) || e.ProcMem.FD != int32(fd) ||
		e.ProcMem.OpenFlags&unix.O_ACCMODE != unix.O_WRONLY || e.Result != int64(fd) {
		t.Errorf("procmem open: %+v result %d, want target %d fd %d", e.ProcMem, e.Result, pid, fd)
	}
	e = await(t, s, "procmem write", func(e *Event) bool {
		return e.Kind == KindProcMem && e.PID == uint32(os.Getpid()) && e.ProcMem.Syscall == SysPwrite64
	})
	checkHeader(t, e, KindProcMem, os.Getpid())
	if e.ProcMem.TargetPID != uint32(pid) || e.ProcMem.FD != int32(fd) || e.ProcMem.Count != 1 ||
		e.ProcMem.Pos != int64(addr) || e.Result != 1 {
		t.Errorf("procmem write: %+v result %d, want target %d fd %d count 1 pos %#x", e.ProcMem, e.Result, pid, fd, addr)
	}
}

// TestFinitModule: this kernel has no modules (finit_module answers
// ENOSYS) and no harmless module to load, so what is covered is a failing
// finit_module, reported with the file's name and the error.
func TestFinitModule(t *testing.T) {
	s := live(t, Options{})
	p := filepath.Join(t.TempDir(), "daemoneye-test.ko")
	if err := os.WriteFile(p, []byte("not a module"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	err = unix.FinitModule(int(f.Fd()), "", 0)
	if err == nil {
		t.Fatal("finit_module loaded a file that is not a module")
	}
	e := await(t, s, "finit_module", func(e *Event) bool {
		return e.Kind == KindModule && e.PID == uint32(os.Getpid())
	})
	checkHeader(t, e, KindModule, os.Getpid())
	errno, _ := err.(unix.Errno)
	if e.Module.Syscall != SysFinitModule || e.Module.FD != int32(f.Fd()) || string(e.Module.Name) != "daemoneye-test.ko" ||
		e.Result != -int64(errno) {
		t.Errorf("module: %+v (%q) result %d, want %d (%v)", e.Module, e.Module.Name, e.Result, -int64(errno), err)
	}
}

func TestClosed(t *testing.T) {
	s := live(t, Options{})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Run(context.Background(), func(*Event) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close: %v", err)
	}
	if err := s.ExcludeBPF(1); !errors.Is(err, ErrClosed) {
		t.Errorf("ExcludeBPF after Close: %v", err)
	}
	if st := s.Stats(); st.Lost != 0 || st.Malformed != 0 {
		t.Errorf("Stats: %+v", st)
	}
}

func TestRingBytes(t *testing.T) {
	for _, n := range []int{1, 4095, 3 * 4096} {
		if _, err := Open(Options{RingBytes: n}); !errors.Is(err, ErrRingBytes) {
			t.Errorf("RingBytes %d: %v", n, err)
		}
	}
}
