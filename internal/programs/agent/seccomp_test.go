//go:build linux

package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/collector/process"
	"github.com/daemoneye/daemoneye/collector/process/sensor"
	"golang.org/x/sys/unix"
)

// seccompChildEnv names the environment variable that makes the test
// binary a collector-mode child: it confines itself as collector mode
// does, then tries what a compromised procmond would against the process
// whose pid the variable holds, and prints one line per attempt.
const seccompChildEnv = "DAEMONEYE_TEST_SECCOMP_TARGET"

// seccompSourceEnv is procmond's --source in the child.
const seccompSourceEnv = "DAEMONEYE_TEST_SECCOMP_SOURCE"

// seccompChild is the child's side; it returns the exit code.
func seccompChild(target string) int {
	pid, err := strconv.Atoi(target)
	if err != nil {
		fmt.Println("bad target", err)
		return 2
	}
	// Threads that exist before the filter: TSYNC must reach them too.
	const threads = 4
	start, done := make(chan struct{}), make(chan error, threads)
	for range threads {
		go func() {
			runtime.LockOSThread() // never unlocked: the thread ends with the goroutine
			<-start
			b := make([]byte, 1)
			_, err := unix.ProcessVMReadv(pid, []unix.Iovec{{Base: &b[0], Len: 1}}, []unix.RemoteIovec{{Base: 0x1000, Len: 1}}, 0)
			done <- err
		}()
	}
	if err := confineCollector(procmondUsesBPF([]string{"--source", os.Getenv(seccompSourceEnv)})); err != nil {
		fmt.Println("confine", err)
		return 1
	}
	close(start)
	for i := range threads {
		report(fmt.Sprintf("process_vm_readv-thread-%d", i), <-done)
	}
	report("ptrace", unix.PtraceAttach(pid))
	mem := fmt.Sprintf("/proc/%d/mem", pid)
	f, err := os.OpenFile(mem, os.O_RDWR, 0)
	if err == nil {
		f.Close()
	}
	report("open-mem-rdwr", err)
	_, err = unix.Openat2(unix.AT_FDCWD, mem, &unix.OpenHow{Flags: unix.O_RDWR})
	report("openat2", err)
	b := make([]byte, 1)
	remote := []unix.RemoteIovec{{Base: 0x1000, Len: 1}} // never mapped: EFAULT if the call were allowed
	_, err = unix.ProcessVMWritev(pid, []unix.Iovec{{Base: &b[0], Len: 1}}, remote, 0)
	report("process_vm_writev", err)
	_, err = unix.ProcessVMReadv(pid, []unix.Iovec{{Base: &b[0], Len: 1}}, remote, 0)
	report("process_vm_readv", err)
	if pidfd, err := unix.PidfdOpen(pid, 0); err != nil {
		report("pidfd_getfd", err)
	} else {
		fd, err := unix.PidfdGetfd(pidfd, 0, 0)
		if err == nil {
			unix.Close(fd)
		}
		report("pidfd_getfd", err)
		unix.Close(pidfd)
	}
	_, _, errno := unix.Syscall(unix.SYS_UNSHARE, unix.CLONE_NEWUSER, 0, 0)
	report("unshare", errnoErr(errno))
	// What procmond needs: the exe link of another user's process and its
	// contents, and reading files.
	_, err = os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	report("readlink-exe", err)
	exe, err := os.Open(fmt.Sprintf("/proc/%d/exe", pid))
	if err == nil {
		_, err = exe.Read(b)
		exe.Close()
	}
	report("read-exe", err)
	_, err = os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	report("read-status", err)
	// The eBPF sensor: with --source ebpf or auto only.
	s, err := sensor.Open(sensor.Options{})
	if err == nil {
		s.Stats()
		err = s.Close()
	}
	if err != nil {
		err = errors.New("failed")
	}
	report("sensor", err)
	// The process connector: with --source connector or auto only (its
	// socket, bind, setsockopt and recvfrom pass the filter; joining the
	// group needs CAP_NET_ADMIN).
	if err := process.ProbeConnector(); err != nil {
		fmt.Println("connector failed:", err)
	} else {
		fmt.Println("connector ok")
	}
	return 0
}

func errnoErr(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func report(name string, err error) {
	var errno syscall.Errno
	switch {
	case err == nil:
		fmt.Println(name, "ok")
	case errors.As(err, &errno):
		fmt.Println(name, unix.ErrnoName(errno))
	default:
		fmt.Println(name, err)
	}
}

// A collector-mode process with procmond's user and capabilities (the
// same SysProcAttr as spawn) cannot attach to a root process, write its
// memory or take its descriptors, from any thread; it still reads the
// process's exe link and executable; it can open the eBPF sensor with
// --source ebpf or auto, and not with --source poll or connector; it can
// subscribe to the process connector with --source connector or auto only.
func TestCollectorSeccomp(t *testing.T) {
	for _, tc := range []struct{ source, sensor, connector string }{
		{"poll", "failed", "failed"}, {"ebpf", "ok", "failed"}, {"connector", "failed", "ok"}, {"auto", "ok", "ok"},
	} {
		t.Run(tc.source, func(t *testing.T) { testCollectorSeccomp(t, tc.source, tc.sensor, tc.connector) })
	}
}

func testCollectorSeccomp(t *testing.T, source, wantSensor, wantConnector string) {
	if os.Geteuid() != 0 {
		t.Skip("collectors get CAP_SYS_PTRACE only under a root agent; run as root to test what the seccomp filter refuses")
	}
	if testing.Short() {
		t.Skip("runs processes")
	}
	if runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64" {
		t.Skip("the collector's seccomp filter exists for amd64 and arm64 only; collectors fail closed elsewhere")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	target := exec.CommandContext(ctx, "sleep", "600")
	if err := target.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { target.Process.Kill(); target.Wait() })

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer exe.Close()
	cmd := exec.CommandContext(ctx, "/proc/self/fd/3")
	cmd.ExtraFiles = []*os.File{exe}
	cmd.Env = append(os.Environ(), seccompChildEnv+"="+strconv.Itoa(target.Process.Pid), seccompSourceEnv+"="+source)
	cmd.Stderr = os.Stderr
	cred := &syscall.Credential{Uid: DefaultCollectorUID, Gid: DefaultCollectorGID, Groups: []uint32{}}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true, Credential: cred, AmbientCaps: kindCaps("procmond", []string{"--source", source})}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("the collector-mode child: %v\n%s", err, out)
	}
	got := map[string]string{}
	for sc := bufio.NewScanner(strings.NewReader(string(out))); sc.Scan(); {
		k, v, _ := strings.Cut(sc.Text(), " ")
		got[k] = v
	}
	want := map[string]string{
		"ptrace": "EPERM", "open-mem-rdwr": "EPERM", "openat2": "ENOSYS",
		"process_vm_writev": "EPERM", "process_vm_readv": "EPERM", "pidfd_getfd": "EPERM", "unshare": "EPERM",
		"readlink-exe": "ok", "read-exe": "ok", "read-status": "ok", "sensor": wantSensor, "connector": wantConnector,
	}
	if wantSensor == "ok" {
		if s, err := sensor.Open(sensor.Options{}); err != nil {
			t.Logf("the eBPF sensor cannot run here, even as root: %v", err)
			want["sensor"] = "failed"
		} else {
			s.Close()
		}
	}
	if wantConnector == "ok" {
		if err := process.ProbeConnector(); err != nil {
			t.Logf("the process connector cannot be used here, even as root: %v", err)
			want["connector"] = "failed"
		}
	}
	for i := range 4 {
		want[fmt.Sprintf("process_vm_readv-thread-%d", i)] = "EPERM"
	}
	if c, _, _ := strings.Cut(got["connector"], " "); c == "failed:" {
		got["connector"] = "failed" // and why, in the report
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %s", k, got[k], v)
		}
	}
	if t.Failed() {
		t.Logf("the child's report:\n%s", out)
	}
}
