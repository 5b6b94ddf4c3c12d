package procmond

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"github.com/daemoneye/daemoneye/client"
	eventbusv1 "github.com/daemoneye/daemoneye/gen/daemoneye/eventbus/v1"
	"google.golang.org/protobuf/proto"
)

// With --source ebpf, what the kernel says reaches the events: a fork+exec
// and an exec that replaced a shell's image are both created, with
// kernel_event exec and image_replaced false and true; exits carry their
// code or signal; records carry the exec's working directory and the
// namespace and cgroup ids.
func TestSourceEBPFKernelFields(t *testing.T) {
	events := startEBPF(t, "events.process.lifecycle.#")

	prog := copyBinary(t, "/bin/sleep") // its own path, to tell its events
	work := t.TempDir()
	pidNS, err := os.Readlink("/proc/self/ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	// A cgroup named as Docker names a container's, when cgroup2 is here.
	const cid = "3f4e1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7"
	cg := ""
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		var st syscall.Statfs_t
		if syscall.Statfs(root, &st) == nil && st.Type == 0x63677270 && os.Mkdir(root+"/docker-"+cid+".scope", 0o755) == nil {
			cg = root + "/docker-" + cid + ".scope"
			t.Cleanup(func() {
				if err := os.Remove(cg); err != nil {
					t.Errorf("remove the test cgroup: %v", err)
				}
			})
			break
		}
	}
	const (
		exec_ = eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_EXEC
		exit_ = eventbusv1.ProcessKernelEvent_PROCESS_KERNEL_EVENT_EXIT
	)
	type want struct {
		replaced     bool
		code, signal int32 // -1: unset
		container    string
	}
	type kcase struct {
		name string
		cmd  *exec.Cmd
		kill bool // once its exec was published
		want want
	}
	cases := []kcase{
		{"fork and exec", exec.Command(prog, "0"), false, want{false, 0, -1, ""}},
		{"shell exec", exec.Command("/bin/sh", "-c", `exec "$0" 0`, prog), false, want{true, 0, -1, ""}},
		{"exit code", exec.Command("/bin/sh", "-c", `exec "$0" x`, prog), false, want{true, 1, -1, ""}}, // sleep: invalid time interval
		{"killed", exec.Command(prog, "60"), true, want{false, -1, int32(syscall.SIGKILL), ""}},
	}
	if cg != "" {
		// It runs long enough to be read from /proc, which gives the path.
		cases = append(cases, kcase{"container", exec.Command("/bin/sh", "-c", `echo $$ > "$1/cgroup.procs" && exec "$0" 0.3`, prog, cg), false, want{true, 0, -1, cid}})
	} else {
		t.Log("no cgroup2 file system to make a container's cgroup in: container ids not checked")
	}
	byPID := map[uint32]int{}
	for i, tc := range cases {
		tc.cmd.Dir = work
		if err := tc.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		byPID[uint32(tc.cmd.Process.Pid)] = i
	}
	got := make([]lifecycle, len(cases))
	done := 0
	for i, tc := range cases {
		if tc.kill {
			// Killed once its exec was published, so that the exec's
			// record (cwd) is the one checked.
			for got[i].created == nil {
				select {
				case m := <-events.C():
					done += record(t, m, prog, byPID, got)
				case <-time.After(15 * time.Second):
					t.Fatalf("%s: no created event within 15 s", tc.name)
				}
			}
			tc.cmd.Process.Kill()
		}
	}
	for _, tc := range cases {
		tc.cmd.Wait()
	}
	for timeout := time.After(15 * time.Second); done < 2*len(cases); {
		select {
		case m := <-events.C():
			done += record(t, m, prog, byPID, got)
		case <-timeout:
			t.Fatalf("%d of %d events within 15 s: %+v", done, 2*len(cases), got)
		}
	}
	opt := func(p *int32) int32 {
		if p == nil {
			return -1
		}
		return *p
	}
	for i, tc := range cases {
		c, x := got[i].created, got[i].terminated
		p := c.GetProcess()
		if c.GetKernelEvent() != exec_ || c.GetImageReplaced() != tc.want.replaced {
			t.Errorf("%s: created with kernel event %v, image replaced %v; want EXEC, %v", tc.name, c.GetKernelEvent(), c.GetImageReplaced(), tc.want.replaced)
		}
		ctx := fmt.Sprintf("cwd=%q pidns=pid:[%d] nspid=%d cgroup=%v", p.GetCwd(), p.GetPidNamespace(), p.GetNamespacePid(), p.GetCgroupId() != 0)
		if wantCtx := fmt.Sprintf("cwd=%q pidns=%s nspid=%d cgroup=true", work, pidNS, p.GetPid()); ctx != wantCtx || p.NamespacePid == nil {
			t.Errorf("%s: created with %s, want %s", tc.name, ctx, wantCtx)
		}
		if p.GetContainerId() != tc.want.container || (tc.want.container != "" && p.GetCgroupPath() != "/docker-"+cid+".scope") {
			t.Errorf("%s: created in cgroup %q, container %q; want container %q", tc.name, p.GetCgroupPath(), p.GetContainerId(), tc.want.container)
		}
		if x.GetKernelEvent() != exit_ || opt(x.ExitCode) != tc.want.code || opt(x.ExitSignal) != tc.want.signal {
			t.Errorf("%s: terminated with kernel event %v, exit code %d, signal %d (-1: unset); want EXIT, %d, %d",
				tc.name, x.GetKernelEvent(), opt(x.ExitCode), opt(x.ExitSignal), tc.want.code, tc.want.signal)
		}
	}
}

// lifecycle is the created and terminated events of one process.
type lifecycle struct{ created, terminated *eventbusv1.ProcessEventData }

// record keeps a process event of prog's processes in got, by the index
// byPID gives, and returns 1 if it was one of them.
func record(t *testing.T, m client.Msg, prog string, byPID map[uint32]int, got []lifecycle) int {
	t.Helper()
	e := new(eventbusv1.EventBusMessage)
	if err := proto.Unmarshal(m.Payload, e); err != nil {
		t.Fatal(err)
	}
	d := e.GetCollectionEvent().GetProcess()
	i, ok := byPID[d.GetProcess().GetPid()]
	if !ok || d.GetProcess().GetExecutablePath() != prog {
		return 0
	}
	switch d.GetSubtype() {
	case eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_CREATED:
		if got[i].created != nil {
			t.Errorf("pid %d created twice", d.GetProcess().GetPid())
			return 0
		}
		got[i].created = d
	case eventbusv1.ProcessEventSubtype_PROCESS_EVENT_SUBTYPE_TERMINATED:
		if got[i].terminated != nil {
			t.Errorf("pid %d terminated twice", d.GetProcess().GetPid())
			return 0
		}
		got[i].terminated = d
	default:
		return 0
	}
	return 1
}
