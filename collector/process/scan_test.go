package process

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"github.com/daemoneye/daemoneye/internal/testutil/wait"
	"github.com/prometheus/procfs"
)

// The scanner's records agree with procfs, both when it keeps the files
// of the processes open between scans and when it opens them every time,
// and on the first scan (everything read) and the later ones (what did
// not change shared with the previous record).
func TestScanMatchesProcfs(t *testing.T) {
	bin := copySleep(t, t.TempDir())
	var pids []int
	for i := range 3 {
		cmd := exec.Command(bin, fmt.Sprint(30+i))
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		pids = append(pids, cmd.Process.Pid)
	}
	pids = append(pids, os.Getpid())
	pfs, err := procfs.NewDefaultFS()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		max  int
	}{{"kept open", 0}, {"reopened", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := NewScanner(ScannerOptions{MaxTracked: tc.max, Hashes: &HashCache{}})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			for scan := range statusRefresh + 2 { // past every periodic read
				cur, err := s.Scan(time.Now())
				if err != nil {
					t.Fatal(err)
				}
				for _, pid := range pids {
					r := find(cur, pid)
					if r == nil {
						t.Fatalf("scan %d: pid %d missing", scan, pid)
					}
					compareWithProcfs(t, pfs, pid, r)
				}
				if want := []string{bin, "30"}; !slices.Equal(find(cur, pids[0]).GetCommandLine(), want) {
					t.Errorf("command line %q, want %q", find(cur, pids[0]).GetCommandLine(), want)
				}
				if n := s.kept; (n == 0) != (tc.max < 0) {
					t.Errorf("%d processes with files kept open", n)
				}
			}
		})
	}
}

func compareWithProcfs(t *testing.T, pfs procfs.FS, pid int, r *eventbusv1.ProcessRecord) {
	t.Helper()
	p, err := pfs.Proc(pid)
	if err != nil {
		t.Fatal(err)
	}
	st, err1 := p.Stat()
	status, err2 := p.NewStatus()
	cmd, err3 := p.CmdLine()
	exe, err4 := p.Executable()
	if err := errorsJoin(err1, err2, err3); err != nil {
		t.Fatalf("procfs: %v", err)
	}
	want := fmt.Sprintf("ppid=%d name=%q uid=%d gid=%d cmd=%q exe=%q", st.PPID, st.Comm, status.UIDs[0], status.GIDs[0], cmd, strings.TrimSuffix(exe, " (deleted)"))
	got := fmt.Sprintf("ppid=%d name=%q uid=%d gid=%d cmd=%q exe=%q", r.GetPpid(), r.GetName(), r.GetUid(), r.GetGid(), r.GetCommandLine(), r.GetExecutablePath())
	if err4 != nil {
		t.Logf("procfs cannot read pid %d's executable: %v", pid, err4)
	} else if got != want {
		t.Errorf("pid %d:\n got %s\nwant %s", pid, got, want)
	}
	if n := len(status.NSpids); n > 0 && r.GetNamespacePid() != uint32(status.NSpids[n-1]) {
		t.Errorf("pid %d: namespace pid %d, procfs %v", pid, r.GetNamespacePid(), status.NSpids)
	}
	if wd, err := p.Cwd(); err == nil && r.GetCwd() != wd {
		t.Errorf("pid %d: cwd %q, procfs %q", pid, r.GetCwd(), wd)
	}
	if r.GetTty() != ttyOfStat(uint64(st.TTY)) {
		t.Errorf("pid %d: tty %q, procfs %d", pid, r.GetTty(), st.TTY)
	}
	if ns, err := p.Namespaces(); err == nil && (uint64(ns["pid"].Inode) != r.GetPidNamespace() || uint64(ns["mnt"].Inode) != r.GetMountNamespace()) {
		t.Errorf("pid %d: namespaces pid %d mnt %d, procfs %+v", pid, r.GetPidNamespace(), r.GetMountNamespace(), ns)
	}
	if !r.GetAccessible() || r.GetStartTime() == nil || (pid != os.Getpid() && r.GetMemoryVmsBytes() != uint64(st.VSize)) {
		t.Errorf("pid %d: accessible %v, start %v, vms %d (procfs %d)", pid, r.GetAccessible(), r.GetStartTime(), r.GetMemoryVmsBytes(), st.VSize)
	}
}

func errorsJoin(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// The helper process of TestScanSeesUIDChange: it changes its uids as
// told on stdin, one line per change.
func init() {
	if os.Getenv("PROCESS_TEST_HELPER") != "setuid" {
		return
	}
	in := bufio.NewScanner(os.Stdin)
	fmt.Println("ready")
	for in.Scan() {
		var err error
		switch in.Text() {
		case "real nobody": // real uid nobody, effective still root
			err = syscall.Setresuid(65534, 0, 0)
		case "root":
			err = syscall.Setresuid(0, 0, 0)
		case "nobody":
			err = syscall.Setuid(65534)
		}
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		fmt.Println("done")
	}
	os.Exit(0)
}

// A process that changes its uid is seen doing so at the next scan when
// its /proc directory changes owner (its effective uid), or when its real
// uid differs from that owner, as in a setuid-root program; a root process
// that changes only its real uid is seen within statusRefresh scans.
func TestScanSeesUIDChange(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to change a process's uid")
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^$")
	cmd.Env = append(os.Environ(), "PROCESS_TEST_HELPER=setuid")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	out := bufio.NewScanner(stdout)
	if !out.Scan() || out.Text() != "ready" {
		t.Fatalf("helper: %q", out.Text())
	}
	s, err := NewScanner(ScannerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Scan(time.Now())
	prev, _ := s.Scan(time.Now()) // the second scan takes the shared path
	if r := find(prev, cmd.Process.Pid); r.GetUid() != 0 {
		t.Fatalf("before: %v", r)
	}
	for _, step := range []struct {
		tell  string
		uid   uint32
		scans int // within
	}{{"real nobody", 65534, statusRefresh}, {"root", 0, 1}, {"nobody", 65534, 1}} {
		fmt.Fprintln(stdin, step.tell)
		if !out.Scan() || out.Text() != "done" {
			t.Fatalf("helper after %q: %q", step.tell, out.Text())
		}
		var cur map[Key]*eventbusv1.ProcessRecord
		for range step.scans {
			if cur = mustScan(t, s); find(cur, cmd.Process.Pid).GetUid() == step.uid {
				break
			}
		}
		if r := find(cur, cmd.Process.Pid); r.GetUid() != step.uid || r.GetGid() != 0 {
			t.Errorf("after %q: uid %d gid %d, want uid %d within %d scans", step.tell, r.GetUid(), r.GetGid(), step.uid, step.scans)
		}
		changes := Diff(prev, cur)
		if i := slices.IndexFunc(changes, func(c Change) bool { return c.Record.GetPid() == uint32(cmd.Process.Pid) }); i < 0 || !slices.Contains(changes[i].Changed, "uid") {
			t.Errorf("after %q: changes %v", step.tell, changes)
		}
		prev = cur
	}
}

// A process that execs a new file at its own path (the old one renamed
// over) gets the new file's hash, though its exe link reads the same.
func TestScanSeesExecOfReplacedFile(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile("/bin/sh")
	if err != nil {
		t.Skip("no /bin/sh")
	}
	sh, sh2 := filepath.Join(dir, "sh"), filepath.Join(dir, "sh2")
	if err := os.WriteFile(sh, src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sh2, append(src, 0), 0o755); err != nil { // another file, another hash
		t.Fatal(err)
	}
	newSum := sha256.Sum256(append(src, 0))
	cmd := exec.Command(sh, "-c", "read x; exec "+sh+" -c 'read y'")
	stdin, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	s, err := NewScanner(ScannerOptions{Hashes: &HashCache{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Scan(time.Now())
	if r := find(mustScan(t, s), cmd.Process.Pid); r.GetExecutablePath() != sh || len(r.GetExecutableHash()) == 0 {
		t.Fatalf("before: %v", r)
	}
	fi2, err := os.Stat(sh2)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(sh2, sh); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(stdin, "go")
	// Wait for the exec without scanning, so that the link reads as before.
	exe := fmt.Sprintf("/proc/%d/exe", cmd.Process.Pid)
	cmdline := fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid)
	wait.For(t, 5*time.Second, "the process to exec the new file, its arguments in place", func() error {
		if fi, err := os.Stat(exe); err != nil || !os.SameFile(fi, fi2) {
			return fmt.Errorf("%s is not the new file (%v)", exe, err)
		}
		if args, err := os.ReadFile(cmdline); err != nil || string(args) != sh+"\x00-c\x00read y\x00" {
			return fmt.Errorf("arguments %q (%v)", args, err)
		}
		return nil
	})
	r := find(mustScan(t, s), cmd.Process.Pid)
	if r.GetExecutablePath() != sh || r.GetExecutableDeleted() || string(r.GetExecutableHash()) != string(newSum[:]) {
		t.Errorf("after the exec: deleted %v, hash %x, want %x", r.GetExecutableDeleted(), r.GetExecutableHash(), newSum)
	}
}

func mustScan(t *testing.T, s *Scanner) map[Key]*eventbusv1.ProcessRecord {
	t.Helper()
	cur, err := s.Scan(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return cur
}

// A process that execs another program is seen with its new executable
// and command line at the next scan.
func TestScanSeesExec(t *testing.T) {
	bin := copySleep(t, t.TempDir())
	cmd := exec.Command("/bin/sh", "-c", "read x; exec "+bin+" 31")
	stdin, _ := cmd.StdinPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Process.Kill(); cmd.Wait() })
	s, err := NewScanner(ScannerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Scan(time.Now())
	prev, _ := s.Scan(time.Now())
	before := find(prev, cmd.Process.Pid)
	if before == nil || before.GetCommandLine()[0] != "/bin/sh" {
		t.Fatalf("before: %v", before)
	}
	fmt.Fprintln(stdin, "go")
	// The exec shows in one scan, or over several if scans catch it half
	// done (the new executable, the old name and arguments): changes are
	// collected until it is whole.
	var changed []string
	wait.For(t, 5*time.Second, "the exec in a scan", func() error {
		cur, _ := s.Scan(time.Now())
		for _, c := range Diff(prev, cur) {
			if c.Record.GetPid() == uint32(cmd.Process.Pid) {
				changed = append(changed, c.Changed...)
			}
		}
		prev = cur
		r := find(cur, cmd.Process.Pid)
		if r.GetExecutablePath() != bin || !slices.Equal(r.GetCommandLine(), []string{bin, "31"}) || r.GetName() != "sleepy" {
			return fmt.Errorf("no exec seen: %v", r)
		}
		return nil
	})
	if !slices.Contains(changed, "executable_path") || !slices.Contains(changed, "command_line") || !slices.Contains(changed, "name") {
		t.Errorf("changes %v", changed)
	}
}

// decimal matches a number as the kernel writes it in stat: no leading
// zeros. procfs reads with fmt.Sscan, which takes "09" as octal 0 followed
// by 9, so it is no oracle for such input.
var decimal = regexp.MustCompile(`^(0|-?[1-9][0-9]*)$`)

// FuzzProcFiles checks the parsers of stat, status and cmdline against
// procfs reading the same bytes from a file, and parseStat against a
// naive split as well.
func FuzzProcFiles(f *testing.F) {
	f.Add([]byte("4242 (sleepy (x)) S 1 4242 4242 0 -1 4194560 97 0 0 0 1 2 0 0 20 0 1 0 123456 8192000 250 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0 0 0 0 0 0 0 0 0\n"),
		[]byte("Name:\tsleepy\nUid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\nNSpid:\t4242\t1\n"), []byte("sleepy\x0030\x00"))
	f.Add([]byte("1 () R 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0"), []byte("Uid: 0\nGid: 0"), []byte("\x00"))
	root := f.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "1"), 0o755); err != nil {
		f.Fatal(err)
	}
	pfs, err := procfs.NewFS(root)
	if err != nil {
		f.Fatal(err)
	}
	write := func(t *testing.T, name string, data []byte) procfs.Proc {
		if err := os.WriteFile(filepath.Join(root, "1", name), data, 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := pfs.Proc(1)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// procfs panics on some malformed input (")(" in stat): no oracle then.
	safely := func(f func() error) (err error) {
		defer func() {
			if recover() != nil {
				err = errMalformed
			}
		}()
		return f()
	}
	f.Fuzz(func(t *testing.T, stat, status, cmdline []byte) {
		got, err := parseStat(stat)
		if err == nil {
			// The naive reading: fields split on white space after the last
			// ')', numbered from 1 as in proc(5).
			end := bytes.LastIndexByte(stat, ')')
			fields := append([]string{"", "pid", "comm"}, strings.Fields(string(stat[end+1:]))...)
			num := func(i int) int64 {
				v, err := strconv.ParseInt(fields[i], 10, 64)
				if err != nil {
					u, _ := strconv.ParseUint(fields[i], 10, 64)
					return int64(u)
				}
				return v
			}
			if string(got.comm) != string(stat[bytes.IndexByte(stat, '(')+1:end]) || num(4) != got.ppid ||
				uint64(num(14)) != got.utime || uint64(num(22)) != got.starttime || num(24) != got.rss || uint64(num(28)) != got.image[2] ||
				got.ttyNr != uint64(uint32(num(7))) {
				t.Errorf("parseStat(%q) = %+v; fields %q", stat, got, fields)
			}
		}
		var want procfs.ProcStat
		if perr := safely(func() (err error) { want, err = write(t, "stat", stat).Stat(); return err }); perr == nil {
			end := bytes.LastIndexByte(stat, ')')
			canonical := len(stat) > end+1 && stat[end+1] == ' '
			for i, tok := range strings.Fields(string(stat[end+1:])) {
				canonical = canonical && (i == 0 || decimal.MatchString(tok))
			}
			if canonical {
				if err != nil {
					t.Fatalf("parseStat(%q) = %v; procfs reads it", stat, err)
				}
				if string(got.comm) != want.Comm || got.ppid != int64(want.PPID) || got.flags != uint64(want.Flags) || got.utime != uint64(want.UTime) ||
					got.stime != uint64(want.STime) || got.starttime != want.Starttime || got.vsize != uint64(want.VSize) || got.rss != int64(want.RSS) ||
					got.image[0] != want.StartCode || got.image[1] != want.EndCode || got.image[2] != want.StartStack ||
					got.ttyNr != uint64(uint32(want.TTY)) {
					t.Errorf("parseStat(%q) = %+v; procfs %+v", stat, got, want)
				}
			}
		}

		uid, gid, err := parseStatusIDs(status)
		var wantStatus procfs.ProcStatus
		if perr := safely(func() (err error) { wantStatus, err = write(t, "status", status).NewStatus(); return err }); perr == nil && err == nil {
			want := wantStatus
			if uint64(uid) != want.UIDs[0] || uint64(gid) != want.GIDs[0] {
				t.Errorf("parseStatusIDs(%q) = %d, %d; procfs %d, %d", status, uid, gid, want.UIDs[0], want.GIDs[0])
			}
			// procfs takes the last NSpid line, parseNSPid the first (the
			// kernel writes one); compare when there is one.
			if nspid, ok := parseNSPid(status); ok && bytes.Count(status, []byte("\nNSpid:"))+btoi(bytes.HasPrefix(status, []byte("NSpid:"))) == 1 {
				if n := len(want.NSpids); n == 0 || want.NSpids[n-1] != uint64(nspid) {
					t.Errorf("parseNSPid(%q) = %d; procfs %v", status, nspid, want.NSpids)
				}
			}
		}

		wantCmd, perr := write(t, "cmdline", cmdline).CmdLine()
		if perr != nil {
			t.Fatal(perr)
		}
		if got := splitCmdline(cmdline); !slices.Equal(got, wantCmd) {
			t.Errorf("splitCmdline(%q) = %q; procfs %q", cmdline, got, wantCmd)
		}
	})
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// A file bind-mounted over a running executable's path is seen as a
// replacement within pathRefresh scans, and the replacement's end as well.
func TestScanSeesExecutableReplacedByBindMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	dir := t.TempDir()
	bin := copySleep(t, dir)
	other := filepath.Join(dir, "other")
	if err := os.WriteFile(other, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	child := startChild(t, bin)
	s, err := NewScanner(ScannerOptions{Hashes: &HashCache{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.Scan(time.Now())
	if r := find(mustScan(t, s), child.Process.Pid); r.GetExecutablePath() != bin || r.GetExecutableDeleted() || !r.GetFileExists() {
		t.Fatalf("before: %v", r)
	}
	if out, err := exec.Command("mount", "--bind", other, bin).CombinedOutput(); err != nil {
		t.Skipf("mount --bind: %v: %s", err, out)
	}
	mounted := true
	unmount := func() {
		if mounted {
			exec.Command("umount", bin).Run()
			mounted = false
		}
	}
	defer unmount()
	for _, mountedNow := range []bool{true, false} {
		if !mountedNow {
			unmount()
		}
		seen := false
		for range pathRefresh {
			if r := find(mustScan(t, s), child.Process.Pid); r.GetExecutableDeleted() == mountedNow {
				seen = true
				break
			}
		}
		if !seen {
			t.Errorf("mounted %v: executable_deleted is not %v within %d scans", mountedNow, mountedNow, pathRefresh)
		}
	}
}

func TestKthreadName(t *testing.T) {
	for _, tc := range []struct{ comm, want string }{
		{"kworker/1:0-events", "kworker/1:0"},
		{"kworker/u8:0-kvfree_rcu_reclaim", "kworker/u8:0"},
		{"kworker/0:1H", "kworker/0:1H"},
		{"ksoftirqd/0", "ksoftirqd/0"},
		{"rcu-gp", "rcu-gp"},
	} {
		if got := string(kthreadName([]byte(tc.comm))); got != tc.want {
			t.Errorf("kthreadName(%q) = %q, want %q", tc.comm, got, tc.want)
		}
	}
}

// A process in another mount namespace (a container) whose executable's
// path names a different file on the host is not reported replaced: its
// path is checked through its own root.
func TestScanChecksPathInTheProcessNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a mount namespace")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("no unshare")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "sleepy")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n# the host's file at that path\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep")
	}
	// In its own mount namespace, a tmpfs over dir holds a copy of sleep at
	// the same path.
	cmd := exec.Command(unshare, "--mount", "--propagation", "private", "/bin/sh", "-c",
		"mount -t tmpfs none "+dir+" && cp "+sleep+" "+bin+" && exec "+bin+" 30")
	if out, err := exec.Command(unshare, "--mount", "true").CombinedOutput(); err != nil {
		t.Skipf("unshare --mount: %v: %s", err, out)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	s, err := NewScanner(ScannerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var r *eventbusv1.ProcessRecord
	wait.For(t, 5*time.Second, "the process to run "+bin, func() error {
		if r = find(mustScan(t, s), cmd.Process.Pid); r.GetExecutablePath() != bin || r.GetName() != "sleepy" {
			return fmt.Errorf("the process runs %v", r)
		}
		return nil
	})
	if r.GetExecutableDeleted() || !r.GetFileExists() {
		t.Errorf("deleted %v, file exists %v: the host's file was taken for the process's", r.GetExecutableDeleted(), r.GetFileExists())
	}
}
