package process

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/internal/testutil/wait"

	"github.com/daemoneye/daemoneye/collector/process/sensor"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/testutil/testproc"
	"golang.org/x/sys/unix"
	"google.golang.org/protobuf/proto"
)

func TestTTYName(t *testing.T) {
	for _, tc := range []struct {
		major, minor uint32
		want         string
	}{
		{0, 0, ""},
		{0, 5, ""},
		{136, 3, "pts/3"},
		{137, 5, "pts/261"},
		{143, 255, "pts/2047"},
		{4, 1, "tty1"},
		{4, 63, "tty63"},
		{4, 64, "ttyS0"},
		{4, 67, "ttyS3"},
		{5, 0, "tty"},
		{5, 1, "console"},
		{5, 2, "char/5:2"},
		{204, 64, "char/204:64"},
	} {
		if got := ttyName(tc.major, tc.minor); got != tc.want {
			t.Errorf("ttyName(%d, %d) = %q, want %q", tc.major, tc.minor, got, tc.want)
		}
		// stat's tty_nr: new_encode_dev.
		nr := uint64(tc.minor&0xff) | uint64(tc.major)<<8 | uint64(tc.minor&^0xff)<<12
		if got := ttyOfStat(nr); got != tc.want {
			t.Errorf("ttyOfStat(%#x) = %q, want %q", nr, got, tc.want)
		}
	}
}

const (
	cid  = "3f4e1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7"
	cid2 = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
)

func TestContainerID(t *testing.T) {
	for _, tc := range []struct{ path, want string }{
		{"", ""},
		{"/", ""},
		{"/user.slice/user-1000.slice/session-3.scope", ""},
		{"/system.slice/docker-" + cid + ".scope", cid},
		{"/docker/" + cid, cid},
		{"/system.slice/containerd.service/kubepods-besteffort-pod1.slice:cri-containerd:" + cid, ""},
		{"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podx.slice/cri-containerd-" + cid + ".scope", cid},
		{"/kubepods/besteffort/pod0a1b/" + cid, cid},
		{"/kubepods.slice/kubepods-pod1.slice/crio-" + cid + ".scope", cid},
		{"/kubepods.slice/kubepods-pod1.slice/crio-conmon-" + cid + ".scope", ""},
		{"/machine.slice/libpod-" + cid + ".scope/container", cid},
		{"/machine.slice/libpod-conmon-" + cid + ".scope", ""},
		{"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + cid + ".scope", cid},
		{"/docker/" + cid2 + "/docker/" + cid, cid}, // nested: the innermost
		{"/docker/" + strings.ToUpper(cid), ""},
		{"/docker/" + cid[:63], ""},
		{"/docker/" + cid + "0", ""},
	} {
		if got := containerID(tc.path); got != tc.want {
			t.Errorf("containerID(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

func TestParseCgroup(t *testing.T) {
	for _, tc := range []struct{ file, path, container string }{
		{"", "", ""},
		{"0::/\n", "/", ""},
		{"0::/system.slice/docker-" + cid + ".scope\n", "/system.slice/docker-" + cid + ".scope", cid},
		{"12:memory:/docker/" + cid + "\n1:name=systemd:/docker/" + cid + "\n0::/\n", "/", cid}, // v1 names the container
		{"4:memory:/x\n0::/a:b\n", "/a:b", ""},
		{"garbage\n0:/\n", "", ""},
	} {
		path, container := parseCgroup([]byte(tc.file))
		if path != tc.path || container != tc.container {
			t.Errorf("parseCgroup(%q) = %q, %q; want %q, %q", tc.file, path, container, tc.path, tc.container)
		}
	}
}

func TestChangeFill(t *testing.T) {
	i32 := func(v int32) *int32 { return &v }
	for _, tc := range []struct {
		name string
		ch   Change
		want *eventbusv1.ProcessEventData
	}{
		{"scan", Change{}, &eventbusv1.ProcessEventData{}},
		{"exec", Change{KernelEvent: eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_EXEC, ImageReplaced: true},
			&eventbusv1.ProcessEventData{KernelEvent: eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_EXEC, ImageReplaced: true}},
		{"exit 0", Change{KernelEvent: eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_EXIT},
			&eventbusv1.ProcessEventData{KernelEvent: eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_EXIT, ExitCode: i32(0)}},
		{"exit 7", Change{KernelEvent: eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_EXIT, ExitStatus: 7 << 8},
			&eventbusv1.ProcessEventData{KernelEvent: eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_EXIT, ExitCode: i32(7)}},
		{"SIGKILL", Change{KernelEvent: eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_EXIT, ExitStatus: 9},
			&eventbusv1.ProcessEventData{KernelEvent: eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_EXIT, ExitSignal: i32(9)}},
		{"SIGSEGV core", Change{KernelEvent: eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_EXIT, ExitStatus: 0x80 | 11},
			&eventbusv1.ProcessEventData{KernelEvent: eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_EXIT, ExitSignal: i32(11)}},
	} {
		got := &eventbusv1.ProcessEventData{}
		tc.ch.fill(got)
		if !proto.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestSetExecContext(t *testing.T) {
	x := &sensor.Exec{Cwd: "/tmp/x", TTY: 136<<20 | 7, LoginUID: 1000, PidNS: 11, MntNS: 12, NSPID: 1, CgroupID: 99,
		Flags: sensor.ArgsTruncated | sensor.MemFD | sensor.Deleted | sensor.Detached}
	var r eventbusv1.ProcessRecord
	setExecContext(&r, x)
	got := fmt.Sprintf("%q %q %d %d %d %d %d %v %v", r.GetCwd(), r.GetTty(), r.GetLoginUid(), r.GetPidNamespace(), r.GetMountNamespace(),
		r.GetNamespacePid(), r.GetCgroupId(), r.GetCommandLineTruncated(), r.GetExecutableMemfd())
	if want := `"/tmp/x" "pts/7" 1000 11 12 1 99 true true`; got != want || r.LoginUid == nil || r.NamespacePid == nil {
		t.Errorf("got %s, want %s", got, want)
	}
	r = eventbusv1.ProcessRecord{}
	setExecContext(&r, &sensor.Exec{LoginUID: sensor.NoLoginUID})
	if r.LoginUid != nil || r.NamespacePid != nil || r.Tty != "" || r.ExecutableMemfd || r.CommandLineTruncated {
		t.Errorf("no login uid, no tty, no flags: got %v", &r)
	}
}

// A process with its own working directory, login uid, pid namespace and
// controlling terminal, in a cgroup named as Docker names a
// container's: the scan reads them when it first sees the process, and
// carries them over unchanged, without reporting changes.
func TestScanReadsContext(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a pid namespace, a login uid and a cgroup")
	}
	root := cgroup2Root()
	if root == "" {
		t.Skip("no cgroup2 file system mounted")
	}
	if _, err := os.Stat("/proc/self/loginuid"); err != nil {
		t.Skipf("no login uid on this kernel: %v", err)
	}
	cg := filepath.Join(root, "docker-"+cid+".scope")
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Skipf("cannot create a cgroup: %v", err)
	}
	t.Cleanup(func() {
		if err := os.Remove(cg); err != nil {
			t.Errorf("remove the test cgroup: %v", err)
		}
	})
	dir := t.TempDir()
	// The shell sets its login uid, enters the cgroup, says so, and
	// becomes the sleep.
	cmd := exec.Command("/bin/sh", "-c", `echo 4321 > /proc/self/loginuid && echo $$ > "$1/cgroup.procs" && echo ready && exec sleep 30`, "sh", cg)
	cmd.Dir = dir
	pts, n := testproc.OpenPTS(t)
	ptsName := fmt.Sprintf("pts/%d", n)
	cmd.Stdin = pts // a new session, whose controlling terminal it is
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Setsid: true, Setctty: true, Ctty: 0}
	out := testproc.Start(t, cmd, cmd.StdoutPipe)
	if line, err := bufio.NewReader(out).ReadString('\n'); line != "ready\n" {
		t.Fatalf("the shell said %q, %v", line, err)
	}
	pid := cmd.Process.Pid
	// "ready" comes before the shell's exec of sleep: the scans must not
	// see that exec.
	wait.For(t, 10*time.Second, "the shell to become sleep", func() error {
		if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || string(comm) != "sleep\n" {
			return fmt.Errorf("comm %q, %v", comm, err)
		}
		return nil
	})
	var cgStat syscall.Stat_t
	if err := syscall.Stat(cg, &cgStat); err != nil {
		t.Fatal(err)
	}
	pidNS, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pid))
	if err != nil {
		t.Fatal(err)
	}
	mntNS, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("cwd=%q tty=%q login=%d pidns=%s mntns=%s nspid=%d cgroup=%d %q %q",
		dir, ptsName, 4321, pidNS, mntNS, 1, cgStat.Ino, "/docker-"+cid+".scope", cid)

	for _, max := range []int{0, -1} { // files kept open, and reopened
		s, err := NewScanner(ScannerOptions{MaxTracked: max})
		if err != nil {
			t.Fatal(err)
		}
		var prev map[Key]*eventbusv1.ProcessRecord
		for scan := range cmdlineRefresh + 2 { // the process exec'd in between, and past the periodic reads
			cur, err := s.Scan(time.Now())
			if err != nil {
				t.Fatal(err)
			}
			r := find(cur, pid)
			if r == nil {
				t.Fatalf("scan %d: pid %d missing", scan, pid)
			}
			got := fmt.Sprintf("cwd=%q tty=%q login=%d pidns=pid:[%d] mntns=mnt:[%d] nspid=%d cgroup=%d %q %q",
				r.GetCwd(), r.GetTty(), r.GetLoginUid(), r.GetPidNamespace(), r.GetMountNamespace(), r.GetNamespacePid(),
				r.GetCgroupId(), r.GetCgroupPath(), r.GetContainerId())
			if got != want || r.LoginUid == nil || r.NamespacePid == nil {
				t.Fatalf("MaxTracked %d, scan %d:\n got %s\nwant %s", max, scan, got, want)
			}
			if prev != nil {
				for _, ch := range Diff(prev, cur) {
					if ch.Record.GetPid() == uint32(pid) {
						t.Errorf("scan %d: %v %v of the unchanged process", scan, ch.Subtype, ch.Changed)
					}
				}
			}
			prev = cur
		}
		s.Close()
	}
}

// A process run from a memfd is executable_memfd (and executable_deleted,
// as before); one with a command line past maxRead is
// command_line_truncated; a plain one is neither.
func TestScanMemfdAndTruncation(t *testing.T) {
	fd, err := unix.MemfdCreate("daemoneye-scan-test", unix.MFD_CLOEXEC|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) { // before Linux 6.3
		fd, err = unix.MemfdCreate("daemoneye-scan-test", unix.MFD_CLOEXEC)
	}
	if err != nil {
		t.Skipf("memfd_create: %v", err)
	}
	f := os.NewFile(uintptr(fd), "memfd")
	defer f.Close()
	src, err := os.Open(copySleep(t, t.TempDir()))
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.Copy(f, src)
	src.Close()
	if err != nil {
		t.Fatal(err)
	}
	memfd := exec.Command("/proc/self/fd/3", "30")
	memfd.ExtraFiles = []*os.File{f}
	args := []string{"-c", "read x", "sh"} // waits on its standard input
	for range maxRead/(100<<10) + 1 {      // an argument holds at most 128 KiB
		args = append(args, strings.Repeat("x", 100<<10))
	}
	long := exec.Command("/bin/sh", args...)
	if _, err := long.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	plain := startChild(t, copySleep(t, t.TempDir()))
	for _, c := range []*exec.Cmd{memfd, long} {
		if err := c.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Process.Kill(); c.Wait() })
	}
	s, err := NewScanner(ScannerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for scan := range cmdlineRefresh + 2 {
		cur := mustScan(t, s)
		for _, tc := range []struct {
			name                      string
			cmd                       *exec.Cmd
			memfd, deleted, truncated bool
		}{
			{"memfd", memfd, true, true, false},
			{"long command line", long, false, false, true},
			{"plain", plain, false, false, false},
		} {
			r := find(cur, tc.cmd.Process.Pid)
			if r == nil {
				t.Fatalf("scan %d: %s missing", scan, tc.name)
			}
			if r.GetExecutableMemfd() != tc.memfd || r.GetExecutableDeleted() != tc.deleted || r.GetCommandLineTruncated() != tc.truncated {
				t.Errorf("scan %d: %s (%q): memfd %v deleted %v truncated %v, want %v %v %v", scan, tc.name, r.GetExecutablePath(),
					r.GetExecutableMemfd(), r.GetExecutableDeleted(), r.GetCommandLineTruncated(), tc.memfd, tc.deleted, tc.truncated)
			}
		}
	}
}
